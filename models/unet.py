"""A small UNet for x3 single-image super-resolution, in the A2Q paper's FPGA-friendly form.

Three encoders and three decoders around a bottleneck: transposed convolutions are replaced by
nearest-neighbour resize convolutions (upsample x2, then a 3x3 convolution), concatenations by additions
(so each decoder convolution takes the channels of one branch, not two), and a final x``upscale``
nearest-neighbour resize convolution produces the output. Down-sampling is a stride-2 3x3 convolution
(FINN's sliding-window generator supports strides; no separate pooling layer is needed).

    x (H)  -> in_conv  -> s0 (C0, H)
    s0     -> enc1 /2  -> s1 (C1, H/2)
    s1     -> enc2 /2  -> s2 (C2, H/4)
    s2     -> enc3 /2  -> s3 (C3, H/8)          bottleneck
    s3     -> up2 dec3 -> + s2 -> d2 (C2, H/4)
    d2     -> up2 dec2 -> + s1 -> d1 (C1, H/2)
    d1     -> up2 dec1 -> + s0 -> d0 (C0, H)
    d0     -> up3 out_conv -> y (1, 3H)

H must be a multiple of 8. Channels (C0..C3) = (32, 64, 128, 256) times ``width``.

Quantization: the first and last convolutions keep 8-bit weights outside A2Q, the input is the 8-bit
pixel (``ImageInputQuant``) and the output an 8-bit unsigned pixel (constant scale 1/255); the six
encoder/decoder convolutions use the chosen quantizer at ``weight_bits`` and target P, with
``act_bits`` unsigned activations. An addition needs both operands on the same scale: the decoder's
activation *is* the skip branch's activation module (one ``QuantReLU`` called twice), so both integers
share one scale and the sum is exact, one bit wider; A2Q sees that wider input on the next decoder.
Every ReLU feeds exactly one quantizer (a ReLU feeding two quantizers is deleted by FINN's QONNX
conversion, see :mod:`flow.finn.rewrites`).
"""

from __future__ import annotations

from torch import nn

from flow.core.errors import FlowError
from models.blocks import image_input_quant, io_conv, pixel_output_quant, quant_conv, quant_relu, scaled_channels
from models.espcn import LR_SIZE

CHANNELS = (32, 64, 128, 256)
DOWNSAMPLE = 8  # three stride-2 encoders


class UNet(nn.Module):
    """Input (B, in_channels, H, W) floats in [0, 1] (H, W multiples of 8); output (B, in_channels, 3H, 3W)."""

    def __init__(self, quantizer: str = "a2q", acc_bits: int | None = 16, weight_bits: int = 4, act_bits: int = 4,
                 width: float = 1.0, in_channels: int = 1, upscale: int = 3, channels: tuple = CHANNELS):
        super().__init__()
        self.input_shape = (in_channels, LR_SIZE, LR_SIZE)
        c0, c1, c2, c3 = (scaled_channels(c, width) for c in channels)

        def conv(cin, cout, stride=1):
            return quant_conv(cin, cout, 3, quantizer, weight_bits, acc_bits, stride=stride)

        self.input_quant = image_input_quant()
        self.in_conv = io_conv(in_channels, c0, 3)
        self.in_bn = nn.BatchNorm2d(c0)
        self.act0 = quant_relu(act_bits)  # s0, and the activation of dec1 (shared scale for the addition)
        self.enc1, self.enc1_bn, self.act1 = conv(c0, c1, 2), nn.BatchNorm2d(c1), quant_relu(act_bits)
        self.enc2, self.enc2_bn, self.act2 = conv(c1, c2, 2), nn.BatchNorm2d(c2), quant_relu(act_bits)
        self.enc3, self.enc3_bn, self.act3 = conv(c2, c3, 2), nn.BatchNorm2d(c3), quant_relu(act_bits)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec3, self.dec3_bn = conv(c3, c2), nn.BatchNorm2d(c2)
        self.dec2, self.dec2_bn = conv(c2, c1), nn.BatchNorm2d(c1)
        self.dec1, self.dec1_bn = conv(c1, c0), nn.BatchNorm2d(c0)
        self.up_out = nn.Upsample(scale_factor=upscale, mode="nearest")
        self.out_conv = io_conv(c0, in_channels, 3, bias=True)
        self.output_quant = pixel_output_quant()

    def forward(self, x):
        if x.shape[-1] % DOWNSAMPLE or x.shape[-2] % DOWNSAMPLE:
            raise FlowError(f"UNet input {tuple(x.shape[-2:])}: height and width must be multiples of {DOWNSAMPLE}")
        x = self.input_quant(x)
        s0 = self.act0(self.in_bn(self.in_conv(x)))
        s1 = self.act1(self.enc1_bn(self.enc1(s0)))
        s2 = self.act2(self.enc2_bn(self.enc2(s1)))
        s3 = self.act3(self.enc3_bn(self.enc3(s2)))
        d2 = self.act2(self.dec3_bn(self.dec3(self.up2(s3)))) + s2
        d1 = self.act1(self.dec2_bn(self.dec2(self.up2(d2)))) + s1
        d0 = self.act0(self.dec1_bn(self.dec1(self.up2(d1)))) + s0
        return self.output_quant(self.out_conv(self.up_out(d0)))


def build_unet(quantizer: str, acc_bits: int | None, weight_bits: int = 4, act_bits: int = 4, width: float = 1.0,
               in_channels: int = 1, upscale: int = 3) -> UNet:
    """Registry factory (``models.unet:build_unet``)."""
    return UNet(quantizer, acc_bits, weight_bits=weight_bits, act_bits=act_bits, width=width,
                in_channels=in_channels, upscale=upscale)
