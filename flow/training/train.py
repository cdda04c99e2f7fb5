"""Training and evaluation of registry models, with the A2Q regularizer and resumable checkpoints.

The regularizer follows the A2Q paper and Brevitas' reference recipe: for every accumulator-aware
pre-scaling module, ``lambda * sum(relu(g - T * s))`` pushes the learned norm ``g`` under the
l1 budget ``T * s`` instead of relying on the hard clamp alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from brevitas.core.scaling.pre_scaling import AccumulatorAwareParameterPreScaling
from brevitas.graph.calibrate import quantization_status_manager
from torch import nn

from flow.core.errors import FlowError
from flow.core.log import log as default_log
from flow.training import data
from flow.training.checkpoints import CHECKPOINT_FORMAT, check_identity, load_checkpoint, save_checkpoint
from flow.training.device import check_device  # noqa: F401  (part of this module's interface)


def load_dataset(name: str, data_dir: str | None, split: str, input_shape: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of a named data set split as tensors (whole split in memory).

    ``input_shape`` (one sample, C x H x W) sets the low-resolution patch size of super-resolution.
    """
    if name == "binary-mnist":
        inputs, targets = data.load_binary_mnist(data_dir, split)
    elif name == "image-classification":
        inputs, targets = data.load_image_classification(data_dir, split)
    elif name == "super-resolution":
        lr_size = input_shape[-1] if input_shape else 16
        inputs, targets = data.load_super_resolution(data_dir, split, lr_size=lr_size)
    else:
        raise FlowError(f"unknown data set {name!r}; valid: {', '.join(data.DATASETS)}")
    return torch.from_numpy(inputs), torch.from_numpy(targets)


class A2QRegularizer:
    """Collects ``sum(relu(g - T*s))`` over all A2Q/A2Q+ pre-scaling modules during a forward pass."""

    def __init__(self, model: nn.Module):
        self.penalty = torch.zeros(())
        self._hooks = [
            module.register_forward_hook(self._hook)
            for module in model.modules()
            if isinstance(module, AccumulatorAwareParameterPreScaling)
        ]

    @property
    def active(self) -> bool:
        return bool(self._hooks)

    def _hook(self, module, inputs, output):
        if not module.training:  # evaluation passes are no training steps: nothing to penalize
            return
        weights, input_bit_width, input_is_signed = inputs
        scale = module.scaling_impl(weights)
        norm = module.restrict_clamp_scaling(module.value)
        budget = module.calc_max_l1_norm(input_bit_width, input_is_signed)
        self.penalty = self.penalty + torch.relu(norm - budget * scale).sum()

    def pop(self) -> torch.Tensor:
        penalty, self.penalty = self.penalty, torch.zeros(())
        return penalty

    def remove(self):
        for hook in self._hooks:
            hook.remove()


@torch.no_grad()
def evaluate_psnr(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, device: str = "cpu", batch_size: int = 64) -> float:
    """Mean PSNR in dB of a super-resolution model's outputs (clamped to [0, 1]) against the targets."""
    model.eval()
    psnrs = []
    for start in range(0, len(inputs), batch_size):
        output = model(inputs[start : start + batch_size].to(device))
        output = (output.value if hasattr(output, "value") else output).clamp(0, 1).cpu()
        mse = ((output - targets[start : start + batch_size]) ** 2).flatten(1).mean(1).clamp_min(1e-10)
        psnrs.append(10 * torch.log10(1.0 / mse))
    return float(torch.cat(psnrs).mean())


def evaluate(model: nn.Module, task: str, inputs, targets, device: str = "cpu") -> dict:
    """The task's metric: ``test_top1`` (fraction) for classification, ``test_psnr`` (dB) otherwise."""
    if task == "classification":
        return {"test_top1": evaluate_top1(model, inputs, targets, device)}
    return {"test_psnr": evaluate_psnr(model, inputs, targets, device)}


@torch.no_grad()
def evaluate_top1(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, device: str = "cpu", batch_size: int = 1000) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on a classification split."""
    model.eval()
    correct = 0
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start : start + batch_size].to(device))
        logits = logits.value if hasattr(logits, "value") else logits
        correct += int((logits.argmax(1).cpu() == targets[start : start + batch_size]).sum())
    return correct / len(inputs)


def train_model(
    spec,
    model: nn.Module,
    identity: dict,
    checkpoint_path: Path,
    data_dir: str | None = None,
    epochs: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    max_steps_per_epoch: int | None = None,
    log=default_log,
) -> dict:
    """Train ``model`` with ``spec.recipe``; resumes from ``checkpoint_path`` if it holds fewer epochs.

    Writes the checkpoint after every epoch and returns the metrics dict: ``test_top1`` (fraction)
    for classification, ``test_psnr`` (dB) for super-resolution, ``epochs``. A resumed run continues
    exactly as an uninterrupted one would: the checkpoint holds the data-order generator, the global
    RNG states and the state of Brevitas's statistics collectors (:func:`stats_collectors_state`).
    """
    recipe = dict(spec.recipe)
    if identity.get("seed", seed) != seed:
        raise FlowError(f"training seed {seed} differs from the checkpoint identity's seed {identity['seed']}")
    epochs = recipe["epochs"] if epochs is None else epochs
    torch.manual_seed(seed)
    np.random.seed(seed)
    train_x, train_y = load_dataset(spec.dataset, data_dir, "train", spec.input_shape)
    test_x, test_y = load_dataset(spec.dataset, data_dir, "test", spec.input_shape)
    model.to(device)

    start_epoch, history, payload = 0, [], None
    if checkpoint_path.is_file() and load_checkpoint(checkpoint_path).get("recipe") != recipe:
        log(f"[train] {checkpoint_path.name} was trained with another recipe: starting over")
        checkpoint_path.unlink()
    if checkpoint_path.is_file():
        payload = load_checkpoint(checkpoint_path)
        check_identity(payload, identity, checkpoint_path)
        # before the optimizer exists: Brevitas's loading can replace a quantizer's Parameter object
        model.load_state_dict(payload["state_dict"])
        start_epoch, history = payload["epoch"], payload.get("history", [])
        log(f"[train] resuming {checkpoint_path.name} after epoch {start_epoch}/{epochs}")

    params = [p for p in model.parameters() if p.requires_grad]
    lr = recipe.get("lr_by_quantizer", {}).get(identity.get("quantizer"), recipe["lr"])
    if recipe["optimizer"] == "adam":
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=recipe["weight_decay"])
    elif recipe["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=recipe["weight_decay"])
    else:
        raise FlowError(f"recipe of {spec.name} names unknown optimizer {recipe['optimizer']!r}; valid: adam, sgd")
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe["lr_step_epochs"], gamma=recipe["lr_gamma"])
    if payload is not None and "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])

    regularizer = A2QRegularizer(model)
    loss_fn = nn.CrossEntropyLoss() if spec.task == "classification" else nn.MSELoss()
    batch_size = recipe["batch_size"]
    steps = math.ceil(len(train_x) / batch_size)
    if max_steps_per_epoch:
        steps = min(steps, max_steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    if payload is not None and "rng" in payload:
        restore_rng_state(payload["rng"], generator)
        restore_stats_collectors(model, payload["stats_collectors"])
    # "float" trains the same layers with every quantizer switched off
    quantization = float_mode(model) if identity.get("quantizer") == "float" else contextlib.nullcontext()
    with quantization:
        for epoch in range(start_epoch, epochs):
            model.train()
            order = torch.randperm(len(train_x), generator=generator)
            t0, loss_sum, reg_sum = time.time(), 0.0, 0.0
            for step in range(steps):
                idx = order[step * batch_size : (step + 1) * batch_size]
                outputs = model(train_x[idx].to(device))
                outputs = outputs.value if hasattr(outputs, "value") else outputs
                loss = loss_fn(outputs, train_y[idx].to(device))
                penalty = regularizer.pop()
                total = loss + recipe["reg_lambda"] * penalty
                optimizer.zero_grad()
                total.backward()
                optimizer.step()
                loss_sum += float(loss.detach())
                reg_sum += float(penalty.detach()) if torch.is_tensor(penalty) else float(penalty)
                if (step + 1) % max(1, steps // 5) == 0 or step + 1 == steps:
                    log(f"[train] epoch {epoch + 1}/{epochs} step {step + 1}/{steps} loss {loss_sum / (step + 1):.4f} "
                        f"a2q_penalty {reg_sum / (step + 1):.4g} ({time.time() - t0:.1f} s)")
            scheduler.step()
            metrics = evaluate(model, spec.task, test_x, test_y, device)
            history.append({"epoch": epoch + 1, "train_loss": loss_sum / steps, **metrics})
            log(f"[train] epoch {epoch + 1}/{epochs} " + format_metrics(metrics))
            save_checkpoint(
                checkpoint_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "seed": seed,
                    **identity,
                    "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "metrics": metrics,
                    "recipe": recipe,
                    "rng": rng_state(generator),
                    "stats_collectors": stats_collectors_state(model),
                },
            )
    regularizer.remove()
    model.cpu().eval()
    if not history:
        raise FlowError(f"no epoch was trained (epochs={epochs}, checkpoint at epoch {start_epoch})")
    metrics = {k: v for k, v in history[-1].items() if k.startswith("test_")}
    metrics["epochs"] = history[-1]["epoch"]
    (checkpoint_path.with_suffix(".metrics.json")).write_text(json.dumps({**identity, **metrics, "history": history}, indent=2))
    return metrics


def float_mode(model: nn.Module):
    """Every quantizer of ``model`` switched off: the model computes in float (quantizer "float")."""
    return quantization_status_manager(model, disable_act_quant=True, disable_weight_quant=True,
                                       disable_bias_quant=True, is_training=True)


def rng_state(generator: torch.Generator) -> dict:
    """The random state a training run depends on: its data-order generator, torch's and NumPy's."""
    return {"data_order": generator.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state()}


def restore_rng_state(state: dict, generator: torch.Generator) -> None:
    generator.set_state(state["data_order"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])


def _stats_collectors(model: nn.Module) -> dict[str, nn.Module]:
    """Brevitas modules that collect runtime statistics for their first steps (an int ``counter``)."""
    return {name: module for name, module in model.named_modules() if isinstance(getattr(module, "counter", None), int)}


def stats_collectors_state(model: nn.Module) -> dict:
    """The raw state of Brevitas's statistics collectors. Their ``state_dict`` folds the running statistics
    into the learned value and marks collection finished on load, so a resumed run would otherwise stop
    collecting early and train differently."""
    return {
        name: {
            "counter": module.counter,
            "tensors": {k: v.detach().clone() for k, v in [*module._parameters.items(), *module._buffers.items()]
                        if v is not None},
        }
        for name, module in _stats_collectors(model).items()
    }


@torch.no_grad()
def restore_stats_collectors(model: nn.Module, state: dict) -> None:
    modules = _stats_collectors(model)
    for name, saved in state.items():
        module = modules.get(name)
        if module is None:
            continue
        module.counter = saved["counter"]
        for key, value in saved["tensors"].items():
            target = module._parameters.get(key)
            target = module._buffers.get(key) if target is None else target
            if target is not None:
                target.data.copy_(value.to(target.device))


def format_metrics(metrics: dict) -> str:
    parts = []
    if metrics.get("test_top1") is not None:
        parts.append(f"test top-1 {100 * metrics['test_top1']:.2f}%")
    if metrics.get("test_psnr") is not None:
        parts.append(f"test PSNR {metrics['test_psnr']:.2f} dB")
    return ", ".join(parts) or "no metric"
