"""ESPCN for x3 single-image super-resolution, with a nearest-neighbour resize convolution (NNRC).

The original ESPCN layer configuration (Shi et al. 2016): a 5x5 convolution to 64 channels, a 3x3
convolution to 32 channels, then the upsampling layer. As in the A2Q paper, the sub-pixel convolution
is replaced by a nearest-neighbour resize convolution: upsample x``upscale`` (nearest), then a 3x3
convolution to the output channel(s). Channel widths are scaled by ``width``.

Quantization: the input (``ImageInputQuant``: 8-bit pixels) and output layers keep 8-bit weights outside
A2Q (the usual choice; FINN then sizes their accumulators exactly); the hidden layer uses the chosen
weight quantizer at ``weight_bits`` with target accumulator width P, and ``act_bits`` unsigned
activations. The output is quantized to 8 bits unsigned with the constant scale 1/255, so the hardware's
output stream is the 8-bit pixel value. Every activation returns a quant tensor so that A2Q sees the
bit width and signedness of each layer's input.
"""

from __future__ import annotations

from torch import nn

from models.blocks import image_input_quant, io_conv, pixel_output_quant, quant_conv, quant_relu, scaled_channels

LR_SIZE = 16  # low-resolution side of the built-in training patches


class ESPCN(nn.Module):
    """Input (B, in_channels, H, W) floats in [0, 1]; output (B, in_channels, upscale*H, upscale*W)."""

    def __init__(self, quantizer: str = "a2q", acc_bits: int | None = 16, weight_bits: int = 4, act_bits: int = 4,
                 width: float = 1.0, in_channels: int = 1, upscale: int = 3):
        super().__init__()
        self.input_shape = (in_channels, LR_SIZE, LR_SIZE)
        c1, c2 = scaled_channels(64, width), scaled_channels(32, width)
        self.input_quant = image_input_quant()
        self.conv1 = io_conv(in_channels, c1, 5)
        self.bn1 = nn.BatchNorm2d(c1)
        self.act1 = quant_relu(act_bits)
        self.conv2 = quant_conv(c1, c2, 3, quantizer, weight_bits, acc_bits)
        self.bn2 = nn.BatchNorm2d(c2)
        self.act2 = quant_relu(act_bits)
        self.upsample = nn.Upsample(scale_factor=upscale, mode="nearest")
        self.conv3 = io_conv(c2, in_channels, 3, bias=True)
        self.output_quant = pixel_output_quant()

    def forward(self, x):
        x = self.input_quant(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.conv3(self.upsample(x))  # nearest-neighbour resize convolution
        return self.output_quant(x)


def build_espcn(quantizer: str, acc_bits: int | None, weight_bits: int = 4, act_bits: int = 4, width: float = 1.0,
                in_channels: int = 1, upscale: int = 3) -> ESPCN:
    """Registry factory (``models.espcn:build_espcn``)."""
    return ESPCN(quantizer, acc_bits, weight_bits=weight_bits, act_bits=act_bits, width=width,
                 in_channels=in_channels, upscale=upscale)
