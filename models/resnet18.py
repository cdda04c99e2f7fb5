"""ResNet18 for 32x32 images (CIFAR-10, or Fashion-MNIST padded to 32x32), as in the A2Q paper.

The CIFAR variant: a 3x3 stride-1 stem convolution, no max-pool, basic blocks [2, 2, 2, 2] with
64/128/256/512 channels (times ``width``), 1x1-convolution shortcuts on the down-sampling blocks,
identity shortcuts elsewhere, batch norm, a 4x4 average pool and a linear classifier.

Quantization: the image input is the 8-bit pixel integer (``ImageInputQuant``). The stem convolution
and the classifier have 8-bit baseline weights (outside A2Q) and 8-bit inputs; every other
convolution, shortcuts included, uses the chosen weight quantizer (A2Q/A2Q+ with target P) and
``act_bits`` unsigned inputs. Residual additions add two quant tensors of the same scale: the
branch's last activation is the very module that quantized the block input (the previous block's
output activation, or the shortcut's activation on down-sampling blocks). The average pool sums
without a shift where the sum fits 8 bits (FLOOR truncation otherwise, the only kind FINN takes),
and the logits get an 8-bit output quantizer, so FINN folds every scale into thresholds and ends the
graph in TopK -> LabelSelect.
"""

from __future__ import annotations

import brevitas.nn as qnn
from brevitas.quant import TruncTo8bit
from torch import nn

from models.blocks import IO_BITS, LOGIT_BITS, image_input_quant, pool_bits, quant_relu, scaled_channels
from models.quant import SignedActQuant, weight_kwargs

STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_BLOCKS = (2, 2, 2, 2)
STAGE_STRIDES = (1, 2, 2, 2)
class BasicBlock(nn.Module):
    """Two 3x3 convolutions; the shortcut is the identity or a 1x1 convolution (down-sampling)."""

    def __init__(self, in_planes: int, planes: int, stride: int, conv_kwargs: dict, act_bits: int,
                 input_act: nn.Module):
        super().__init__()
        self.conv1 = qnn.QuantConv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False, **conv_kwargs)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = quant_relu(act_bits)
        self.conv2 = qnn.QuantConv2d(planes, planes, 3, stride=1, padding=1, bias=False, **conv_kwargs)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                qnn.QuantConv2d(in_planes, planes, 1, stride=stride, padding=0, bias=False, **conv_kwargs),
                nn.BatchNorm2d(planes),
                quant_relu(act_bits),
            )
            shared = self.shortcut[-1]
        else:
            self.shortcut = None
            shared = input_act  # the identity shortcut carries the block input's quantization
        # registered under a second name only; the module is owned by whoever created it
        self.branch_act = shared
        self.relu_out = quant_relu(act_bits)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.branch_act(self.bn2(self.conv2(out)))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu_out(out + skip)


class QuantResNet18(nn.Module):
    """Input (batch, in_channels, 32, 32) floats in [0, 1]; output (batch, num_classes) logits."""

    def __init__(self, quantizer: str = "a2q", acc_bits: int | None = 16, weight_bits: int = 4, act_bits: int = 4,
                 width: float = 1.0, in_channels: int = 3, num_classes: int = 10, input_size: int = 32):
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        conv_kwargs = weight_kwargs(quantizer, weight_bits, acc_bits)
        stem_kwargs = weight_kwargs("baseline", IO_BITS, None)
        channels = [scaled_channels(c, width) for c in STAGE_CHANNELS]

        self.input_quant = image_input_quant()
        self.conv1 = qnn.QuantConv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False, **stem_kwargs)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = quant_relu(act_bits)

        stages, act, in_planes, size = [], self.relu, channels[0], input_size
        for planes, blocks, stride in zip(channels, STAGE_BLOCKS, STAGE_STRIDES):
            stage = []
            for index in range(blocks):
                block = BasicBlock(in_planes, planes, stride if index == 0 else 1, conv_kwargs, act_bits, act)
                stage.append(block)
                act, in_planes = block.relu_out, planes
            size = (size + 1) // stride if stride > 1 else size
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        self.pool = qnn.TruncAvgPool2d(kernel_size=size, stride=size, trunc_quant=TruncTo8bit,
                                       bit_width=pool_bits(act_bits, size * size), float_to_int_impl_type="FLOOR")
        self.fc = qnn.QuantLinear(in_planes, num_classes, bias=True, **weight_kwargs("baseline", IO_BITS, None))
        self.output_quant = qnn.QuantIdentity(act_quant=SignedActQuant, bit_width=LOGIT_BITS)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(self.input_quant(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.pool(out)
        out = out.reshape(out.shape[0], -1)
        return self.output_quant(self.fc(out))


def build_resnet18(quantizer: str, acc_bits: int | None, weight_bits: int = 4, act_bits: int = 4, width: float = 1.0,
                   in_channels: int = 3, num_classes: int = 10) -> QuantResNet18:
    """Registry factory (``models.resnet18:build_resnet18``)."""
    return QuantResNet18(quantizer=quantizer, acc_bits=acc_bits, weight_bits=weight_bits, act_bits=act_bits,
                         width=width, in_channels=in_channels, num_classes=num_classes)
