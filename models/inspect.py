"""What a Brevitas model holds: its quantized layers, their quantizers, their integer weights.

Used by the export (exact integers, sidecar records) and by the A2Q initialization; nothing here
changes a model.
"""

from __future__ import annotations

import numpy as np
import torch
from brevitas.quant.base import AccumulatorAwareWeightQuant, AccumulatorAwareZeroCenterWeightQuant
from torch import nn

from flow.core.errors import FlowError


def layer_quantizer(layer: nn.Module) -> str:
    """"a2q+", "a2q" or "baseline": the kind of a Brevitas layer's weight quantizer."""
    injector = layer.weight_quant.quant_injector
    if issubclass(injector, AccumulatorAwareZeroCenterWeightQuant):
        return "a2q+"
    if issubclass(injector, AccumulatorAwareWeightQuant):
        return "a2q"
    return "baseline"


def layer_acc_bits(layer: nn.Module) -> int | None:
    """The target accumulator width P of an A2Q/A2Q+ layer (None for other quantizers)."""
    if layer_quantizer(layer) == "baseline":
        return None
    return int(layer.weight_quant.quant_injector.accumulator_bit_width)


def quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Brevitas layers with a weight quantizer (QuantLinear, QuantConv2d, ...), by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if hasattr(module, "weight_quant") and hasattr(module, "quant_weight") and module.weight_quant.is_quant_enabled
    }


@torch.no_grad()
def forward_once(model: nn.Module, sample: torch.Tensor, hooks: list) -> None:
    """One eval-mode forward pass of ``sample`` to feed ``hooks`` (handles); afterwards the hooks are
    removed and the model's training mode is restored, also when the pass fails."""
    was_training = model.training
    model.eval()
    try:
        model(sample)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)


@torch.no_grad()
def capture_quant_layers(model: nn.Module, sample: torch.Tensor) -> dict[str, dict]:
    """Run ``sample`` through ``model`` (eval mode) and record, per quantized layer: ``layer``,
    ``weights_int`` (the integer weights, int64, the layer's weight shape), ``weight_value`` (their
    quantized float value), ``weight_bits``, ``input_bits`` and ``input_signed`` of its quantized input."""
    layers = quant_layers(model)
    if not layers:
        raise FlowError("the model has no Brevitas quantized layer (QuantLinear/QuantConv2d with weight_quant)")
    seen: dict[str, object] = {}
    hooks = []

    def input_hook(name):
        def hook(module, inputs, output):
            if not hasattr(output, "bit_width") or output.bit_width is None:
                raise FlowError(
                    f"layer {name} receives an unquantized input: give it input_quant= or let the previous "
                    "activation return a quant tensor (return_quant_tensor=True)"
                )
            seen[name] = output

        return hook

    for name, layer in layers.items():
        hooks.append(layer.input_quant.register_forward_hook(input_hook(name)))
    forward_once(model, sample, hooks)
    records = {}
    for name, layer in layers.items():
        if name not in seen:
            raise FlowError(f"layer {name} was not used by the forward pass")
        quant_input = seen[name]
        quant_weight = layer.quant_weight(quant_input=quant_input)
        weights_ratio = (quant_weight.value / quant_weight.scale).detach().cpu().numpy()
        if not np.isfinite(weights_ratio).all():
            raise FlowError(f"layer {name}: quantized weights are not finite (are its float weights all zero?)")
        records[name] = {
            "layer": layer,
            "weights_int": np.round(weights_ratio).astype(np.int64),
            "weight_value": quant_weight.value.detach().clone(),
            "weight_bits": int(quant_weight.bit_width),
            "input_bits": int(quant_input.bit_width),
            "input_signed": bool(quant_input.signed),
        }
    return records


def default_sample(model: nn.Module, batch: int = 2) -> torch.Tensor:
    """Random inputs of the model's ``input_shape`` (every zoo model declares one), seeded."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise FlowError(f"{type(model).__name__} declares no input_shape; give a sample input")
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
