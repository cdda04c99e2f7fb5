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
def quantize_axe(model: nn.Module, algorithm: str, acc_bits: int, layer_names: set[str], calibration: torch.Tensor,
                 batch_size: int = 64) -> None:
    """Quantize ``model``'s weights in place with AXE (``algorithm``: "axe-gpfq" or "axe-gptq") at ``acc_bits``
    for the layers named in ``layer_names``, from the ``calibration`` inputs. The model's activation quantizers
    must already be calibrated (their bit widths and signs give AXE the input range)."""
    from brevitas_examples.common import axe

    if algorithm not in ALGORITHMS:
        raise FlowError(f"unknown AXE algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}", option="quantizer")
    modules = dict(model.named_modules())
    missing = sorted(set(layer_names) - set(modules))
    if missing:
        raise FlowError(f"AXE targets name no layer of {type(model).__name__}: {missing}")
    constrained = {id(modules[name]) for name in layer_names}
    mode = getattr(axe, ALGORITHMS[algorithm])
    model.eval()
    with mode(model, a2q_layer_filter_fnc=lambda module: id(module) in constrained,
              max_accumulator_bit_width=acc_bits) as context:
        for index in range(context.num_layers):
            for batch in calibration.split(batch_size):
                context.model(batch)
            context.update()
            log(f"[axe] {algorithm} P={acc_bits}: layer {index + 1}/{context.num_layers}")
    for module in model.modules():  # GPxQ keeps each layer's float weights beside it; the model does not need them
        if hasattr(module, "weight_orig"):
            del module.weight_orig
