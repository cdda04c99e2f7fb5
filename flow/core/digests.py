"""Digests that identify what a build was made from: files, settings, and the flow's own code."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from flow.core.config import CONFIG_DIR

DIGEST_CHARS = 8


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_digest(settings: dict, chars: int = DIGEST_CHARS) -> str:
    """Short digest of a settings dictionary (its JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:chars]


@lru_cache(maxsize=1)
def code_digest() -> str:
    """Digest of the flow's own code and configuration data (every ``.py`` of ``flow``/``models`` and
    every file of ``build_configs``): a report made by other code is not reused."""
    digest = hashlib.sha256()
    package_root = Path(__file__).resolve().parent.parent
    roots = [package_root, package_root.parent / "models", CONFIG_DIR]
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix in (".py", ".json", ".sv"))):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
