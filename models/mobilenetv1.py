"""MobileNetV1 for 32x32 images (CIFAR-10, or Fashion-MNIST padded to 32x32), as in the A2Q paper.

The original layer configuration (a 3x3 stem convolution with 32 channels, then 13 depthwise-separable
blocks: a 3x3 depthwise convolution and a 1x1 pointwise convolution, each with batch norm and ReLU,
up to 1024 channels, times ``width``), adapted to 32x32 inputs as the paper's supplementary material
describes: stride 2 in the stem convolution and in the final average pool. The total down-sampling
stays 32 as in the original; since 32x32 inputs reach 2x2 after the stem and three stride-2 blocks,
the 1024-channel block runs at stride 1 and the average pool (2x2, stride 2) takes the last
down-sampling step. ``STRIDES`` records this choice.

Quantization as in ``models.resnet18``: 8-bit pixel input, 8-bit baseline stem convolution and
classifier, every depthwise and pointwise convolution with the chosen weight quantizer (A2Q/A2Q+
with target P; depthwise layers become FINN VVAUs) and ``act_bits`` unsigned per-tensor activations,
an average pool that sums without a shift where the sum fits 8 bits, and an 8-bit output quantizer.
"""

from __future__ import annotations

import brevitas.nn as qnn
from brevitas.quant import TruncTo8bit
from torch import nn

from models.blocks import IO_BITS, LOGIT_BITS, image_input_quant, pool_bits, quant_relu, scaled_channels
from models.quant import SignedActQuant, weight_kwargs

STEM_CHANNELS = 32
STEM_STRIDE = 2
# (output channels, depthwise stride) of the 13 depthwise-separable blocks
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 1), (1024, 1))
POOL_STRIDE = 2

class DepthwiseSeparable(nn.Module):
    """3x3 depthwise convolution + BN + ReLU, then 1x1 pointwise convolution + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, conv_kwargs: dict, act_bits: int):
        super().__init__()
        self.dw_conv = qnn.QuantConv2d(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels,
                                       bias=False, **conv_kwargs)
        self.dw_bn = nn.BatchNorm2d(in_channels)
        self.dw_act = quant_relu(act_bits)
        self.pw_conv = qnn.QuantConv2d(in_channels, out_channels, 1, stride=1, padding=0, bias=False, **conv_kwargs)
        self.pw_bn = nn.BatchNorm2d(out_channels)
        self.pw_act = quant_relu(act_bits)

    def forward(self, x):
        x = self.dw_act(self.dw_bn(self.dw_conv(x)))
        return self.pw_act(self.pw_bn(self.pw_conv(x)))


class QuantMobileNetV1(nn.Module):
    """Input (batch, in_channels, 32, 32) floats in [0, 1]; output (batch, num_classes) logits."""

    def __init__(self, quantizer: str = "a2q", acc_bits: int | None = 16, weight_bits: int = 4, act_bits: int = 4,
                 width: float = 1.0, in_channels: int = 3, num_classes: int = 10, input_size: int = 32):
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        conv_kwargs = weight_kwargs(quantizer, weight_bits, acc_bits)
        stem = scaled_channels(STEM_CHANNELS, width)

        self.input_quant = image_input_quant()
        self.conv1 = qnn.QuantConv2d(in_channels, stem, 3, stride=STEM_STRIDE, padding=1, bias=False,
                                     **weight_kwargs("baseline", IO_BITS, None))
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = quant_relu(act_bits)

        size = (input_size - 1) // STEM_STRIDE + 1
        blocks, channels = [], stem
        for out_channels, stride in BLOCKS:
            out_channels = scaled_channels(out_channels, width)
            blocks.append(DepthwiseSeparable(channels, out_channels, stride, conv_kwargs, act_bits))
            channels, size = out_channels, (size - 1) // stride + 1
        self.features = nn.Sequential(*blocks)
        if size % POOL_STRIDE:
            raise ValueError(f"a {input_size}x{input_size} input reaches the average pool at {size}x{size}, "
                             f"which a stride-{POOL_STRIDE} pool cannot cover")
        self.pool = qnn.TruncAvgPool2d(kernel_size=size, stride=size, trunc_quant=TruncTo8bit,
                                       bit_width=pool_bits(act_bits, size * size), float_to_int_impl_type="FLOOR")
        self.fc = qnn.QuantLinear(channels, num_classes, bias=True, **weight_kwargs("baseline", IO_BITS, None))
        self.output_quant = qnn.QuantIdentity(act_quant=SignedActQuant, bit_width=LOGIT_BITS)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(self.input_quant(x))))
        out = self.pool(self.features(out))
        out = out.reshape(out.shape[0], -1)
        return self.output_quant(self.fc(out))


def build_mobilenetv1(quantizer: str, acc_bits: int | None, weight_bits: int = 4, act_bits: int = 4,
                      width: float = 1.0, in_channels: int = 3, num_classes: int = 10) -> QuantMobileNetV1:
    """Registry factory (``models.mobilenetv1:build_mobilenetv1``)."""
    return QuantMobileNetV1(quantizer=quantizer, acc_bits=acc_bits, weight_bits=weight_bits, act_bits=act_bits,
                            width=width, in_channels=in_channels, num_classes=num_classes)
