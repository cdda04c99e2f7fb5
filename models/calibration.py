"""Calibration of an untrained model for a build: batch-norm statistics and quantizer scales from real
data, and (for image-to-image models) the output level."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def calibrate_statistics(model: nn.Module, inputs: torch.Tensor, batch_size: int = 32) -> None:
    """Forward ``inputs`` in train mode without gradients: batch-norm running statistics become the
    exact average over these batches (and statistics-based quantizer scales follow the data).
    Leaves the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average instead of an exponential one
    model.train()
    for start in range(0, len(inputs), batch_size):
        model(inputs[start : start + batch_size])
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


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
