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

This module also holds the A2Q initialization ``init_for_a2q`` that the zoo's classifiers share for
untrained builds (batch-norm calibration is ``flow.build.calibrate_statistics``).
"""

from __future__ import annotations

import brevitas.nn as qnn
import numpy as np
import torch
from brevitas.quant import TruncTo8bit
from torch import nn

from flow.export import forward_once
from models.quant import ImageInputQuant, SignedActQuant, UnsignedActQuant, weight_kwargs

STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_BLOCKS = (2, 2, 2, 2)
STAGE_STRIDES = (1, 2, 2, 2)
FIRST_LAST_BITS = 8
OUTPUT_BITS = 8


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width``, rounded, at least one channel."""
    return max(int(round(channels * width)), 1)


def relu(act_bits: int) -> qnn.QuantReLU:
    return qnn.QuantReLU(act_quant=UnsignedActQuant, bit_width=act_bits, return_quant_tensor=True)


def pool_bits(input_bits: int, window: int, max_bits: int = FIRST_LAST_BITS) -> int:
    """Output bit width of a truncating average pool over ``window`` inputs of ``input_bits``:
    the exact sum when it fits ``max_bits`` (no shift at all), else ``max_bits`` (a right shift).
    Never wider than the sum: FINN's QuantAvgPool2d can only shift right."""
    sum_bits = input_bits + (window - 1).bit_length()
    return min(sum_bits, max_bits)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; the shortcut is the identity or a 1x1 convolution (down-sampling)."""

    def __init__(self, in_planes: int, planes: int, stride: int, conv_kwargs: dict, act_bits: int,
                 input_act: nn.Module):
        super().__init__()
        self.conv1 = qnn.QuantConv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False, **conv_kwargs)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = relu(act_bits)
        self.conv2 = qnn.QuantConv2d(planes, planes, 3, stride=1, padding=1, bias=False, **conv_kwargs)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                qnn.QuantConv2d(in_planes, planes, 1, stride=stride, padding=0, bias=False, **conv_kwargs),
                nn.BatchNorm2d(planes),
                relu(act_bits),
            )
            shared = self.shortcut[-1]
        else:
            self.shortcut = None
            shared = input_act  # the identity shortcut carries the block input's quantization
        # registered under a second name only; the module is owned by whoever created it
        self.branch_act = shared
        self.relu_out = relu(act_bits)

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
        stem_kwargs = weight_kwargs("baseline", FIRST_LAST_BITS, None)
        channels = [scaled_channels(c, width) for c in STAGE_CHANNELS]

        self.input_quant = qnn.QuantIdentity(act_quant=ImageInputQuant, return_quant_tensor=True)
        self.conv1 = qnn.QuantConv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False, **stem_kwargs)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = relu(act_bits)

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
        self.fc = qnn.QuantLinear(in_planes, num_classes, bias=True, **weight_kwargs("baseline", FIRST_LAST_BITS, None))
        self.output_quant = qnn.QuantIdentity(act_quant=SignedActQuant, bit_width=OUTPUT_BITS)

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


# --- A2Q initialization (shared by the zoo's classifiers) ------------------------------------------


def _a2q_prescaling(layer: nn.Module):
    """The A2Q/A2Q+ pre-scaling module of a Brevitas layer, or None for other quantizers."""
    from brevitas.core.scaling.pre_scaling import AccumulatorAwareParameterPreScaling

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
    "zero_channels": channels whose integers are all zero}``; raises RuntimeError if a layer ends
    up all-zero.
    """
    from brevitas.core.scaling.pre_scaling import AccumulatorAwareZeroCenterParameterPreScaling

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
        sample = torch.rand(2, *getattr(model, "input_shape", (3, 32, 32)), generator=torch.Generator().manual_seed(0))
    was_training = model.training
    forward_once(model, sample, hooks)

    report = {}
    for name, layer in layers.items():
        if name not in seen:
            raise RuntimeError(f"A2Q layer {name} was not used by the forward pass")
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

    from flow.export import capture_quant_layers

    records = capture_quant_layers(model, sample[:1])
    for name in layers:
        ints = records[name]["weights_int"].reshape(len(records[name]["weights_int"]), -1)
        report[name]["nonzero"] = float((ints != 0).mean())
        report[name]["zero_channels"] = int((np.abs(ints).sum(axis=1) == 0).sum())
        report[name]["l1_max"] = int(np.abs(ints).sum(axis=1).max())
        if not ints.any():
            raise RuntimeError(f"A2Q layer {name}: every integer weight is zero after initialization")
    model.train(was_training)
    return report
