"""The torch device a training runs on, checked before any work starts."""

from __future__ import annotations

import torch

from flow.core.errors import FlowError


def check_device(device: str) -> str:
    """A torch device this machine has (``cpu``, ``cuda``, ``cuda:N``, ``mps``); one clear error otherwise."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise FlowError(f"unknown torch device {device!r}; valid: cpu, cuda, cuda:N, mps", option="device") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise FlowError(f"device {device!r}: this torch ({torch.__version__}) has no CUDA device here; use cpu, or a "
                        "machine with a GPU and a CUDA build of torch", option="device")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise FlowError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here", option="device")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise FlowError(f"device {device!r}: no MPS device here; use cpu", option="device")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise FlowError(f"unsupported torch device {device!r}; valid: cpu, cuda, cuda:N, mps", option="device")
    return device
