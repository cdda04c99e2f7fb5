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

``init_for_a2q`` is the EP-init-like initialization for A2Q/A2Q+ layers (shared with :mod:`models.unet`).
"""

from __future__ import annotations

import brevitas.nn as qnn
import torch
from torch import nn

from flow.errors import FlowError
from flow.export import forward_once
from models.quant import ImageInputQuant, UnsignedActQuant, weight_kwargs

IO_BITS = 8  # first and last layers: 8-bit weights, 8-bit activations, outside A2Q


def scaled(channels: int, width: float) -> int:
    """``channels * width``, at least one channel."""
    return max(1, int(round(channels * width)))


def quant_conv(cin: int, cout: int, kernel: int, quantizer: str, weight_bits: int, acc_bits: int | None,
               stride: int = 1, bias: bool = False) -> qnn.QuantConv2d:
    """A 'same'-padded Brevitas convolution with the chosen weight quantizer."""
    return qnn.QuantConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias,
                           **weight_kwargs(quantizer, weight_bits, acc_bits))


def io_conv(cin: int, cout: int, kernel: int, bias: bool = False) -> qnn.QuantConv2d:
    """First/last layer: 8-bit per-channel weights, no accumulator constraint."""
    return quant_conv(cin, cout, kernel, "baseline", IO_BITS, None, bias=bias)


def quant_relu(act_bits: int) -> qnn.QuantReLU:
    return qnn.QuantReLU(act_quant=UnsignedActQuant, bit_width=act_bits, return_quant_tensor=True)


def input_quant() -> qnn.QuantIdentity:
    return qnn.QuantIdentity(act_quant=ImageInputQuant, return_quant_tensor=True)


def output_quant() -> qnn.QuantIdentity:
    """8-bit unsigned output with the constant scale 1/255: the output integer is the pixel value."""
    return qnn.QuantIdentity(act_quant=ImageInputQuant, return_quant_tensor=False)


class ESPCN(nn.Module):
    """Input (B, in_channels, H, W) floats in [0, 1]; output (B, in_channels, upscale*H, upscale*W)."""

    def __init__(self, quantizer: str = "a2q", acc_bits: int | None = 16, weight_bits: int = 4, act_bits: int = 4,
                 width: float = 1.0, in_channels: int = 1, upscale: int = 3):
        super().__init__()
        c1, c2 = scaled(64, width), scaled(32, width)
        self.input_quant = input_quant()
        self.conv1 = io_conv(in_channels, c1, 5)
        self.bn1 = nn.BatchNorm2d(c1)
        self.act1 = quant_relu(act_bits)
        self.conv2 = quant_conv(c1, c2, 3, quantizer, weight_bits, acc_bits)
        self.bn2 = nn.BatchNorm2d(c2)
        self.act2 = quant_relu(act_bits)
        self.upsample = nn.Upsample(scale_factor=upscale, mode="nearest")
        self.conv3 = io_conv(c2, in_channels, 3, bias=True)
        self.output_quant = output_quant()
        # PyTorch's default initialization is kept: the A2Q quantizers derive their scale s and norm g
        # from the weights at construction, so re-initializing the weights afterwards would desync them.

    def forward(self, x):
        x = self.input_quant(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.conv3(self.upsample(x))  # nearest-neighbour resize convolution
        return self.output_quant(x)


def build_espcn(quantizer: str, acc_bits: int | None, weight_bits: int = 4, act_bits: int = 4, width: float = 1.0,
                in_channels: int = 1, upscale: int = 3) -> ESPCN:
    """Registry factory: an ESPCN with A2Q-ready initial weights (see :func:`init_for_a2q`)."""
    model = ESPCN(quantizer, acc_bits, weight_bits=weight_bits, act_bits=act_bits, width=width,
                  in_channels=in_channels, upscale=upscale)
    init_for_a2q(model)
    return model


# --- A2Q initialization ----------------------------------------------------------------------------------


def _a2q_pre_scalings(model: nn.Module) -> dict[str, nn.Module]:
    """The A2Q/A2Q+ pre-scaling module of each constrained layer, by layer name."""
    from brevitas.core.scaling import AccumulatorAwareParameterPreScaling

    found = {}
    for name, layer in model.named_modules():
        if not isinstance(layer, (nn.Conv2d, nn.Linear)) or not hasattr(layer, "weight_quant"):
            continue
        for sub in layer.weight_quant.modules():
            if isinstance(sub, AccumulatorAwareParameterPreScaling):
                found[name] = sub
                break
    return found


def prune_to_l1_budget(rows: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Keep, per row, the largest-magnitude entries whose l1 norm fits ``radius`` and zero the rest
    (rows inside their budget are unchanged). If not even the largest entry fits, it alone is kept,
    shrunk to the radius."""
    out = rows.clone()
    for i in range(rows.shape[0]):
        v, z = rows[i], float(radius[i])
        mags = v.abs()
        if float(mags.sum()) <= z:
            continue
        ordered, index = torch.sort(mags, descending=True)
        keep = int((torch.cumsum(ordered, 0) <= z).sum())
        row = torch.zeros_like(v)
        if keep == 0:
            row[index[0]] = v[index[0]].sign() * z
        else:
            row[index[:keep]] = v[index[:keep]]
        out[i] = row
    return out


@torch.no_grad()
def init_for_a2q(model: nn.Module, sample: torch.Tensor | None = None, margin: float = 0.999) -> dict[str, dict]:
    """EP-init-like start for every A2Q/A2Q+ layer of ``model``, so that untrained (or float-initialized)
    layers give non-degenerate integer weights at any P.

    A2Q clamps each channel's norm parameter g to ``T * s`` (T: the l1 bound on the integers for the
    layer's P and input width; s: the channel's weight scale), which shrinks every weight of the channel
    by the same factor: at small P or long dot products all of them round (towards zero) to 0. Here each
    channel's float weights are first brought inside that l1 ball by keeping its largest-magnitude
    weights that fit the budget (a hard-threshold variant of EP-init's Euclidean projection: the
    projection's soft threshold spreads a small budget over many weights below one integer step, which
    round to zero as well), and g is set to the resulting norm. Layers within budget are unchanged.
    For A2Q+ the budget applies to the zero-centred weights.

    ``sample`` (one input batch) is run to learn each layer's input bit width and signedness.
    Returns, per layer, the share of zero integer weights and the largest integer l1 norm afterwards.
    Raises FlowError when a layer's integer weights are still all zero.
    """
    pre_scalings = _a2q_pre_scalings(model)
    if not pre_scalings:
        return {}
    sample = sample if sample is not None else default_sample(model)
    seen: dict[str, tuple] = {}

    def recorder(name):
        def hook(module, inputs, output):
            seen[name] = (inputs[1], inputs[2])  # input bit width, input signedness

        return hook

    was_training = model.training
    forward_once(model, sample, [module.register_forward_hook(recorder(name)) for name, module in pre_scalings.items()])
    layers = dict(model.named_modules())
    for name, pre in pre_scalings.items():
        if name not in seen:
            continue
        layer = layers[name]
        bit_width, signed = seen[name]
        weights = layer.weight.data
        rows = weights.reshape(weights.shape[0], -1)
        scale = pre.scaling_impl(pre.stats_input_view_shape_impl(weights)).reshape(-1)
        bound = pre.calc_max_l1_norm(bit_width, signed).reshape(-1)
        radius = scale * bound * margin
        centre = torch.zeros_like(rows[:, :1])
        if hasattr(pre, "pre_zero_point"):  # A2Q+: the budget applies to zero-centred weights
            centre = rows.mean(dim=1, keepdim=True)
        pruned = prune_to_l1_budget(rows - centre, radius)
        pruned = pruned - pruned.mean(dim=1, keepdim=True) if hasattr(pre, "pre_zero_point") else pruned
        layer.weight.data.copy_(pruned.reshape(weights.shape))
        # g: the l1 norm of the (centred) weights, never above the radius
        target = torch.minimum(pruned.abs().sum(dim=1), radius).clamp_min(1e-8)
        restrict = pre.restrict_clamp_scaling.restrict_value_impl
        value = restrict.restrict_init_tensor(target) if restrict is not None else target
        pre.value.data.copy_(value.reshape(pre.value.shape))
    model.train(was_training)
    stats = a2q_weight_stats(model, sample)
    dead = [name for name, s in stats.items() if s["zero_fraction"] >= 1.0]
    if dead:
        raise FlowError(f"A2Q layers {dead} have all-zero integer weights after initialization")
    return stats


def default_sample(model: nn.Module) -> torch.Tensor:
    """A random 16x16 image batch with as many channels as the first convolution takes."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return torch.rand(1, first.in_channels if first is not None else 1, 16, 16)


@torch.no_grad()
def a2q_weight_stats(model: nn.Module, sample: torch.Tensor | None = None) -> dict[str, dict]:
    """Per A2Q/A2Q+ layer: zero share of the integer weights, their largest per-channel l1 norm and the
    number of output channels whose integer weights are all zero."""
    from flow.export import capture_quant_layers

    records = capture_quant_layers(model, sample if sample is not None else default_sample(model))
    names = set(_a2q_pre_scalings(model))
    out = {}
    for name, record in records.items():
        if name not in names:
            continue
        q = record["weights_int"].reshape(record["weights_int"].shape[0], -1)
        l1 = abs(q).sum(axis=1)
        out[name] = {"zero_fraction": float((q == 0).mean()), "l1_max": int(l1.max()),
                     "zero_channels": int((l1 == 0).sum()), "input_bits": record["input_bits"]}
    return out


@torch.no_grad()
def center_output_level(model: nn.Module, inputs: torch.Tensor, batch_size: int = 16) -> nn.Module:
    """Shift the bias of the output convolution (the last convolution with a bias) so that the mean
    output before the 8-bit output quantizer equals the mean input pixel.

    For untrained builds: a random single-channel output layer often puts the whole image below zero,
    the unsigned output quantizer then makes it black, and a hardware-vs-software comparison of the
    outputs sees nothing. Run it after the batch-norm statistics are collected (eval mode)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is not None]
    if not convs:
        return model
    output_conv, seen = convs[-1], {}
    was_training = model.training
    model.eval()
    hook = output_conv.register_forward_hook(lambda module, args, out: seen.update(out=out))
    try:
        model(inputs[:batch_size])
    finally:
        hook.remove()
        model.train(was_training)
    out = seen["out"].value if hasattr(seen["out"], "value") else seen["out"]
    shift = float(inputs[:batch_size].mean()) - out.mean(dim=(0, 2, 3))
    output_conv.bias.data += shift.to(output_conv.bias.dtype)
    return model


@torch.no_grad()
def calibrate_activations(model: nn.Module, inputs: torch.Tensor, steps: int = 8, batch_size: int = 16) -> nn.Module:
    """Give an untrained model realistic activation scales, batch-norm statistics and output level:
    a few forward passes in train mode (no gradients) let Brevitas collect its activation statistics
    and batch norm its running statistics, then :func:`center_output_level`. Leaves eval mode."""
    model.train()
    for step in range(steps):
        start = (step * batch_size) % max(1, len(inputs))
        model(inputs[start : start + batch_size])
    model.eval()
    return center_output_level(model, inputs, batch_size)
