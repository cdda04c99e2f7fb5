"""Data sets the flow trains and evaluates on, read from local files only (nothing is downloaded).

MNIST-format IDX files (gzipped or raw): Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package
by default, or any folder holding the four standard files (real MNIST works unchanged).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from flow.errors import FlowError

DEFAULT_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into an array of its stored shape and type."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise FlowError(f"cannot read IDX file {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise FlowError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise FlowError(f"{path} is truncated: header needs {header_len} bytes, file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_len != expected:
        raise FlowError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"file has {len(raw) - header_len} bytes of data"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FlowError(
        f"data set folder {folder} lacks {stem}[.gz]; an MNIST-format folder needs "
        + ", ".join(f"{s}[.gz]" for pair in MNIST_FILES.values() for s in pair)
        + (
            ". Fashion-MNIST comes with `apt-get install dataset-fashion-mnist`."
            if folder == DEFAULT_FASHION_MNIST
            else ""
        )
    )


def load_mnist_format(folder: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of ``split`` ("train"/"test") from ``folder``."""
    folder = Path(folder) if folder else DEFAULT_FASHION_MNIST
    if split not in MNIST_FILES:
        raise FlowError(f"unknown split {split!r}; valid: {', '.join(MNIST_FILES)}")
    if not folder.is_dir():
        hint = " (install it with `apt-get install dataset-fashion-mnist`)" if folder == DEFAULT_FASHION_MNIST else ""
        raise FlowError(f"data set folder {folder} does not exist{hint}")
    image_stem, label_stem = MNIST_FILES[split]
    images = read_idx(_find_idx(folder, image_stem))
    labels = read_idx(_find_idx(folder, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise FlowError(
            f"{folder}: {split} images {images.shape} and labels {labels.shape} do not form an "
            "MNIST-format split (N,H,W) + (N,)"
        )
    return images.astype(np.uint8), labels.astype(np.int64)


def binarize(images: np.ndarray) -> np.ndarray:
    """Flatten uint8 images to float32 {0, 1} features (pixel >= 128 -> 1), shape (N, H*W)."""
    return (images.reshape(len(images), -1) >= 128).astype(np.float32)


def load_binary_mnist(folder: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Binarized, flattened MNIST-format split: features (N, 784) in {0, 1}, labels (N,)."""
    images, labels = load_mnist_format(folder, split)
    return binarize(images), labels
