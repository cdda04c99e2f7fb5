"""Accumulator-aware post-training quantization (AXE) of a float-trained model at a target accumulator width P.

AXE (Colbert et al., accumulator-aware GPFQ and GPTQ) ships with Brevitas in ``brevitas_examples.common.axe``.
It rounds a layer's weights one input column at a time, correcting the error the earlier columns left, and
clamps every weight so that the running sums of its positive and negative integers stay inside the P-bit
range for the layer's input type: the result is a set of ordinary per-channel integer weights whose exact
accumulator range fits P, reached without retraining. The export checks that range like any A2Q layer's.

The layers AXE constrains are the ones the model's A2Q variant constrains (the zoo keeps its first and last
layers at 8 bits, outside the accumulator target); the others get plain GPFQ/GPTQ.
"""

from __future__ import annotations

import torch
from torch import nn

from flow.core.errors import FlowError
from flow.core.log import log

ALGORITHMS = {"axe-gpfq": "a2gpfq_mode", "axe-gptq": "a2gptq_mode"}


@torch.no_grad()
def quantize_axe(model: nn.Module, algorithm: str, acc_bits_by_layer: dict[str, int], calibration: torch.Tensor,
                 batch_size: int = 64) -> None:
    """Quantize ``model``'s weights in place with AXE (``algorithm``: "axe-gpfq" or "axe-gptq"), each layer named
    in ``acc_bits_by_layer`` at its own accumulator width P (bits), from the ``calibration`` inputs. The model's
    activation quantizers must already be calibrated (their bit widths and signs give AXE the input range)."""
    from brevitas_examples.common import axe

    if algorithm not in ALGORITHMS:
        raise FlowError(f"unknown AXE algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}", option="quantizer")
    modules = dict(model.named_modules())
    missing = sorted(set(acc_bits_by_layer) - set(modules))
    if missing:
        raise FlowError(f"AXE targets name no layer of {type(model).__name__}: {missing}")
    acc_bits_of = {id(modules[name]): int(p) for name, p in acc_bits_by_layer.items()}
    widths = sorted(set(acc_bits_of.values()))
    label = f"P={widths[0]}" if len(widths) == 1 else f"P={widths[0]}-{widths[-1]}"
    model.eval()
    with per_layer_mode(getattr(axe, ALGORITHMS[algorithm]), acc_bits_of)(model, max_accumulator_bit_width=widths[-1]) \
            as context:
        for index in range(context.num_layers):
            for batch in calibration.split(batch_size):
                context.model(batch)
            context.update()
            log(f"[axe] {algorithm} {label}: layer {index + 1}/{context.num_layers}")
    for module in model.modules():  # GPxQ keeps each layer's float weights beside it; the model does not need them
        if hasattr(module, "weight_orig"):
            del module.weight_orig


def per_layer_mode(mode: type, acc_bits_of: dict[int, int]) -> type:
    """Brevitas's AXE ``mode`` with one accumulator width per layer (``acc_bits_of``: id(module) -> P) where it
    takes one for the whole model; layers not in ``acc_bits_of`` get plain GPFQ/GPTQ."""

    class PerLayer(mode):
        def is_valid_a2q_layer(self, layer) -> bool:
            return id(layer) in acc_bits_of and super().is_valid_a2q_layer(layer)

        def initialize_module_optimizer(self, layer, name, len_parallel_layers, create_weight_orig):
            # the mode hands its one width to each layer's optimizer as it creates it: set it per layer first
            self.max_accumulator_bit_width = acc_bits_of.get(id(layer), self.max_accumulator_bit_width)
            return super().initialize_module_optimizer(layer, name, len_parallel_layers, create_weight_orig)

    PerLayer.__name__ = f"per_layer_{mode.__name__}"
    return PerLayer
