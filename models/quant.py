"""Quantizer choice for Brevitas layers: ``baseline``, ``a2q`` (A2Q) or ``a2q+`` (A2Q+).

``weight_kwargs(quantizer, weight_bits, acc_bits)`` returns the keyword arguments of a Brevitas
``QuantConv2d``/``QuantLinear`` for that choice; activation quantizers are shared by all choices.
"""

from __future__ import annotations

from brevitas.core.scaling import ScalingImplType
from brevitas.quant import (
    Int8AccumulatorAwareWeightQuant,
    Int8AccumulatorAwareZeroCenterWeightQuant,
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Uint8ActPerTensorFloat,
)

from flow.core.errors import FlowError
from models.inspect import layer_quantizer, quant_layers

AXE_QUANTIZERS = ("axe-gpfq", "axe-gptq")
QUANTIZERS = ("baseline", "a2q", "a2q+", "float", *AXE_QUANTIZERS)
# "float": the baseline model's layers, trained with quantization switched off (a start for quantized
# training, as the A2Q paper starts from float weights); it has no hardware form.
# "axe-*": the baseline model's layers, quantized after training by accumulator-aware GPFQ/GPTQ at P
SCALING_MIN_VAL = 1e-8


class A2QWeightQuant(Int8AccumulatorAwareWeightQuant):
    """A2Q: per-channel l1 budget from the target accumulator width P (round-to-zero)."""

    scaling_min_val = SCALING_MIN_VAL
    pre_scaling_min_val = SCALING_MIN_VAL


class A2QPlusWeightQuant(Int8AccumulatorAwareZeroCenterWeightQuant):
    """A2Q+: zero-centred weights and the relaxed l1 budget."""

    scaling_min_val = SCALING_MIN_VAL
    pre_scaling_min_val = SCALING_MIN_VAL


class BaselineWeightQuant(Int8WeightPerChannelFloat):
    """Ordinary per-channel QAT weights, no accumulator constraint."""

    scaling_min_val = SCALING_MIN_VAL


class AXEWeightQuant(Int8WeightPerChannelFloat):
    """Per-channel weights for accumulator-aware post-training quantization: the scale is taken from the
    weights once and then kept (AXE rounds and clamps on that grid; a scale recomputed from the changed
    weights would move every integer off it)."""

    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS
    scaling_min_val = SCALING_MIN_VAL


class BinaryInputQuant(Uint8ActPerTensorFloat):
    """1-bit unsigned input {0, 1} with a fixed scale of 1: the input *is* the integer."""

    bit_width = 1
    scaling_impl_type = ScalingImplType.CONST
    scaling_const = 1.0
    max_val = 1.0


class ImageInputQuant(Uint8ActPerTensorFloat):
    """8-bit unsigned image input in [0, 1] with the fixed scale 1/255: the integer is the pixel value."""

    bit_width = 8
    scaling_impl_type = ScalingImplType.CONST
    scaling_const = 1.0
    max_val = 1.0


class UnsignedActQuant(Uint8ActPerTensorFloat):
    """Unsigned activation (after ReLU) with a learned per-tensor scale."""


class SignedActQuant(Int8ActPerTensorFloat):
    """Signed activation with a learned per-tensor scale."""


def check_quantizer(quantizer: str) -> str:
    if quantizer not in QUANTIZERS:
        raise FlowError(f"unknown quantizer {quantizer!r}; valid: {', '.join(QUANTIZERS)}", option="quantizer")
    return quantizer


def weight_kwargs(quantizer: str, weight_bits: int, acc_bits: int | None) -> dict:
    """Brevitas layer kwargs for the weight quantizer; ``acc_bits`` (P) is needed for a2q/a2q+."""
    check_quantizer(quantizer)
    if quantizer in AXE_QUANTIZERS:
        return {"weight_quant": AXEWeightQuant, "weight_bit_width": weight_bits}
    if quantizer in ("baseline", "float"):
        return {"weight_quant": BaselineWeightQuant, "weight_bit_width": weight_bits}
    if acc_bits is None:
        raise FlowError(f"quantizer {quantizer!r} needs a target accumulator width P")
    weight_quant = A2QWeightQuant if quantizer == "a2q" else A2QPlusWeightQuant
    return {
        "weight_quant": weight_quant,
        "weight_bit_width": weight_bits,
        "weight_accumulator_bit_width": acc_bits,
    }


def a2q_layers(model) -> dict:
    """The layers of ``model`` whose weight quantizer has a target accumulator width, by module name."""
    return {name: module for name, module in quant_layers(model).items() if layer_quantizer(module) != "baseline"}


def set_acc_bits(model, acc_bits_by_layer: dict[str, int]) -> None:
    """Give each named A2Q/A2Q+ layer its own target accumulator width P (bits). Call it before training or
    loading a checkpoint: the layer's weight quantizer is rebuilt for the new P."""
    layers = a2q_layers(model)
    unknown = sorted(set(acc_bits_by_layer) - set(layers))
    if unknown:
        raise FlowError(f"per-layer accumulator widths name no A2Q layer of {type(model).__name__}: {unknown}; "
                        f"its A2Q layers: {', '.join(layers) or 'none'}", option="acc_bits_map")
    for name, acc_bits in acc_bits_by_layer.items():
        quant = layers[name].weight_quant
        quant.quant_injector = quant.quant_injector.let(accumulator_bit_width=int(acc_bits))
        quant.init_tensor_quant()
