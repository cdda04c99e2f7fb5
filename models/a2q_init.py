"""The A2Q-aware initialization of every A2Q/A2Q+ layer (untrained builds and the start of training).

A2Q clamps each output channel's norm parameter g to ``T * s`` (T: the l1 budget on the integers for the
layer's P and input width; s: the channel's weight scale), which shrinks every weight of the channel by
the same factor: with a default initialization, long dot products at small P round (towards zero) to
all-zero integers. :func:`init_for_a2q` projects each channel's float weights onto the l1 ball whose
radius is tied to the scale the projection produces (:func:`project_for_a2q`, the A2Q+ paper's EP-init
with that radius): the largest weight then maps to the full integer range and the integers' l1 norm fits
T. The accumulator guarantee itself always comes from the quantizer's clamp.
"""

from __future__ import annotations

import numpy as np
import torch
from brevitas.core.scaling.pre_scaling import (
    AccumulatorAwareParameterPreScaling,
    AccumulatorAwareZeroCenterParameterPreScaling,
)
from torch import nn

from flow.core.errors import FlowError
from models.inspect import capture_quant_layers, default_sample, forward_once


def _a2q_prescaling(layer: nn.Module):
    """The A2Q/A2Q+ pre-scaling module of a Brevitas layer, or None for other quantizers."""
    tensor_quant = getattr(getattr(layer, "weight_quant", None), "tensor_quant", None)
    pre_scaling = getattr(tensor_quant, "pre_scaling_impl", None)
    return pre_scaling if isinstance(pre_scaling, AccumulatorAwareParameterPreScaling) else None


def _set_log_param(param: torch.nn.Parameter, owner: nn.Module, value: torch.Tensor):
    """Write ``value`` into a Brevitas scale parameter through its restriction (log2 domain here)."""
    restrict = owner.restrict_clamp_scaling.restrict_value_impl
    param.data.copy_(restrict.restrict_init_tensor(value.reshape(param.shape).to(param.dtype)))


def project_for_a2q(weights: torch.Tensor, l1_budget: float, max_int: int) -> torch.Tensor:
    """Soft-threshold each output channel so that its integers on a full-range scale fit the budget.

    ``weights`` is (channels, k). For each channel find theta >= 0 such that, with
    ``w' = sign(w) * max(|w| - theta, 0)`` and the per-channel scale ``s = max|w'| / max_int``,
    ``||w'||_1 / s == l1_budget``: the largest weight then maps to the full integer range and the
    l1 norm of the integers fits the A2Q budget T (a Euclidean projection onto the l1 ball, as in
    the A2Q+ paper's EP-init, with the radius tied to the scale it produces). Channels already
    within budget are unchanged.

    ``f(theta) = max_int * sum(max(|w| - theta, 0)) / (max|w| - theta)`` falls monotonically, and is
    a ratio of linear functions between consecutive sorted magnitudes, so the root is exact:
    with the j largest magnitudes u_1..u_j above theta (sum S_j), ``theta = (M S_j - T u_1) / (M j - T)``.
    """
    magnitude = weights.abs().to(torch.float64)
    u, _ = magnitude.sort(dim=1, descending=True)
    top = u[:, :1]
    count = torch.arange(1, u.shape[1] + 1, dtype=u.dtype)
    cumsum = u.cumsum(dim=1)
    # f at theta = u_j (the elements above u_j contribute S_j - j u_j); rises with j
    gap = top - u
    f_at = torch.where(gap > 0, max_int * (cumsum - count * u) / gap.clamp_min(1e-300), torch.zeros_like(u))
    within = f_at <= l1_budget
    j = within.sum(dim=1, keepdim=True).clamp(1, u.shape[1])  # theta lies in [u_{j+1}, u_j]
    s_j = cumsum.gather(1, j - 1)
    denominator = max_int * j.to(u.dtype) - l1_budget
    theta = (max_int * s_j - l1_budget * top) / torch.where(denominator.abs() > 1e-12, denominator,
                                                            torch.full_like(denominator, 1e-12))
    lower = torch.where(j < u.shape[1], u.gather(1, j.clamp(max=u.shape[1] - 1)), torch.zeros_like(top))
    theta = torch.minimum(torch.maximum(theta, lower), u.gather(1, j - 1))
    needs = max_int * cumsum[:, -1:] / top.clamp_min(1e-300) > l1_budget
    theta = torch.where(needs, theta, torch.zeros_like(theta))
    projected = weights.to(torch.float64).sign() * (magnitude - theta).clamp_min(0)
    return projected.to(weights.dtype)


@torch.no_grad()
def init_for_a2q(model: nn.Module, sample: torch.Tensor | None = None) -> dict:
    """A2Q-aware initialization of every A2Q/A2Q+ layer of ``model`` (untrained builds, training starts).

    A forward pass (``sample``, default random images of ``model.input_shape``) records each A2Q
    layer's input bit width and signedness, hence its l1 budget T. Each layer's float weights are
    then projected per channel (``project_for_a2q``) so that the integers use the full M-bit range
    while their l1 norm fits T, and the quantizer's post-scale s and norm parameter g are reset from
    the projected weights, as Brevitas initializes them at construction. Without this, A2Q scales
    the default initialization down uniformly and round-to-zero leaves long dot products
    almost all-zero. The accumulator guarantee itself always comes from the quantizer's clamp.

    Returns per layer ``{"k", "l1_budget", "nonzero": fraction of non-zero integer weights,
    "zero_channels": channels whose integers are all zero, "l1_max"}``; raises FlowError if a layer
    ends up all-zero.
    """
    layers = {name: layer for name, layer in model.named_modules() if _a2q_prescaling(layer) is not None}
    if not layers:
        return {}
    seen: dict[str, tuple] = {}
    hooks = []
    for name, layer in layers.items():
        def hook(module, inputs, output, name=name):
            seen.setdefault(name, (inputs[1], inputs[2]))  # (input_bit_width, input_is_signed)

        hooks.append(_a2q_prescaling(layer).register_forward_hook(hook))
    if sample is None:
        sample = default_sample(model)
    was_training = model.training
    forward_once(model, sample, hooks)

    report = {}
    for name, layer in layers.items():
        if name not in seen:
            raise FlowError(f"A2Q layer {name} was not used by the forward pass")
        pre_scaling = _a2q_prescaling(layer)
        input_bits, input_signed = seen[name]
        budget = float(pre_scaling.calc_max_l1_norm(input_bits, input_signed))
        weight_bits = int(layer.weight_quant.tensor_quant.msb_clamp_bit_width_impl())
        max_int = 2 ** (weight_bits - 1) - 1  # narrow range
        flat = layer.weight.detach().reshape(layer.weight.shape[0], -1).clone()
        if isinstance(pre_scaling, AccumulatorAwareZeroCenterParameterPreScaling):
            flat = flat - flat.mean(dim=1, keepdim=True)
        projected = project_for_a2q(flat, budget * (1 - 1e-4), max_int)
        layer.weight.data.copy_(projected.reshape(layer.weight.shape))
        scale = projected.abs().amax(dim=1).clamp_min(1e-8) / max_int
        post_scaling = layer.weight_quant.tensor_quant.scaling_impl
        _set_log_param(post_scaling.value, post_scaling, scale)
        _set_log_param(pre_scaling.scaling_impl.value, pre_scaling.scaling_impl, scale)
        norm = projected.abs().sum(dim=1).clamp_min(1e-8)
        _set_log_param(pre_scaling.value, pre_scaling, torch.minimum(norm, scale * budget))
        report[name] = {"k": int(flat.shape[1]), "l1_budget": budget}

    records = capture_quant_layers(model, sample[:1])
    for name in layers:
        ints = records[name]["weights_int"].reshape(len(records[name]["weights_int"]), -1)
        report[name]["nonzero"] = float((ints != 0).mean())
        report[name]["zero_channels"] = int((np.abs(ints).sum(axis=1) == 0).sum())
        report[name]["l1_max"] = int(np.abs(ints).sum(axis=1).max())
        if not ints.any():
            raise FlowError(f"A2Q layer {name}: every integer weight is zero after initialization")
    model.train(was_training)
    return report
