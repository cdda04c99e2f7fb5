"""Building blocks shared by the zoo's models: quantized convolutions, activations, I/O quantizers.

First and last layers keep :data:`IO_BITS`-bit weights and activations outside any accumulator
constraint (FINN sizes their accumulators exactly); hidden layers take the chosen weight quantizer.
"""

from __future__ import annotations

import brevitas.nn as qnn

from models.quant import ImageInputQuant, UnsignedActQuant, weight_kwargs

IO_BITS = 8
LOGIT_BITS = 8  # classifiers quantize their logits, so FINN folds every scale and ends in TopK


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width``, rounded, at least one channel."""
    return max(int(round(channels * width)), 1)


def quant_relu(act_bits: int) -> qnn.QuantReLU:
    """Unsigned ``act_bits`` activation with a learned per-tensor scale, returning a quant tensor."""
    return qnn.QuantReLU(act_quant=UnsignedActQuant, bit_width=act_bits, return_quant_tensor=True)


def quant_conv(cin: int, cout: int, kernel: int, quantizer: str, weight_bits: int, acc_bits: int | None,
               stride: int = 1, bias: bool = False, groups: int = 1) -> qnn.QuantConv2d:
    """A 'same'-padded Brevitas convolution with the chosen weight quantizer."""
    return qnn.QuantConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias, groups=groups,
                           **weight_kwargs(quantizer, weight_bits, acc_bits))


def io_conv(cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = False) -> qnn.QuantConv2d:
    """First/last layer: 8-bit per-channel weights, no accumulator constraint."""
    return quant_conv(cin, cout, kernel, "baseline", IO_BITS, None, stride=stride, bias=bias)


def image_input_quant() -> qnn.QuantIdentity:
    """8-bit unsigned image input in [0, 1] with the constant scale 1/255: the integer is the pixel value."""
    return qnn.QuantIdentity(act_quant=ImageInputQuant, return_quant_tensor=True)


def pixel_output_quant() -> qnn.QuantIdentity:
    """8-bit unsigned output with the constant scale 1/255: the output integer is the pixel value."""
    return qnn.QuantIdentity(act_quant=ImageInputQuant, return_quant_tensor=False)


def pool_bits(input_bits: int, window: int, max_bits: int = IO_BITS) -> int:
    """Output bit width of a truncating average pool over ``window`` inputs of ``input_bits``:
    the exact sum when it fits ``max_bits`` (no shift at all), else ``max_bits`` (a right shift).
    Never wider than the sum: FINN's QuantAvgPool2d can only shift right."""
    sum_bits = input_bits + (window - 1).bit_length()
    return min(sum_bits, max_bits)
