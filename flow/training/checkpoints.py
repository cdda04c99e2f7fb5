"""Checkpoints: the file format, what a checkpoint was trained for, and where a build finds its own.

A checkpoint records its identity (model, quantizer, P, bit widths, width, data set digest, seed) and its
training recipe; it is reused only for exactly that identity and recipe. Default checkpoints are named
after the identity, so builds of different configurations or data never share one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flow.core.errors import FlowError

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write atomically, so an interrupted save never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FlowError(f"checkpoint {path} does not exist", option="checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged file
        raise FlowError(f"checkpoint {path} is corrupt or not a checkpoint of this flow: {err}", option="checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT or "state_dict" not in payload:
        raise FlowError(f"checkpoint {path} is not a checkpoint of this flow (missing format/state_dict)", option="checkpoint")
    return payload


def model_identity(model: str, quantizer: str, acc_bits, weight_bits: int, act_bits: int, width: float,
                   data_digest: str | None = None, seed: int = 0, init_digest: str | None = None) -> dict:
    """What a checkpoint was trained for; ``data_digest`` is the content digest of its data set,
    ``init_digest`` that of the checkpoint its training started from (None: a fresh initialization)."""
    identity = {
        "model": model,
        "quantizer": quantizer,
        "acc_bits": acc_bits,
        "weight_bits": weight_bits,
        "act_bits": act_bits,
        "width": width,
        "data": data_digest,
        "seed": seed,
    }
    if init_digest is not None:  # absent otherwise, so that checkpoints of fresh trainings keep their identity
        identity["init"] = init_digest
    return identity


def check_identity(payload: dict, identity: dict, path: Path) -> None:
    stored = {k: payload.get(k) for k in identity}
    if stored != identity:
        diff = ", ".join(f"{k}: checkpoint {stored[k]!r} vs requested {identity[k]!r}" for k in identity if stored[k] != identity[k])
        raise FlowError(f"checkpoint {path} was trained for another configuration ({diff})", option="checkpoint")


def checkpoint_name(identity: dict, default_bits: tuple[int, int]) -> str:
    """File name of the default checkpoint of ``identity``: readable where it can be, the data set's digest
    always (``linear_a2q_P16_d1a2b3c4.pt``); non-default widths and seeds appear in the name."""
    width = "" if identity["width"] == 1.0 else f"_w{identity['width']:g}"
    p = f"_P{identity['acc_bits']}" if identity["acc_bits"] is not None else ""
    bits = "" if (identity["weight_bits"], identity["act_bits"]) == default_bits else \
        f"_w{identity['weight_bits']}a{identity['act_bits']}"
    seed = f"_s{identity['seed']}" if identity["seed"] else ""
    data = f"_d{identity['data'][:8]}" if identity["data"] else ""
    init = f"_i{identity['init'][:8]}" if identity.get("init") else ""
    per_layer = f"_m{identity['acc_bits_map'][:8]}" if identity.get("acc_bits_map") else ""
    return (f"{identity['model']}{width}_{identity['quantizer'].replace('+', 'plus')}{p}{per_layer}{bits}{seed}{data}"
            f"{init}.pt")
