"""Data sets the flow trains and evaluates on, read from local files only (nothing is downloaded).

MNIST-format IDX files (gzipped or raw): Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package
by default, or any folder holding the four standard files (real MNIST works unchanged).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from flow.core.errors import FlowError

DEFAULT_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("binary-mnist", "image-classification", "super-resolution")
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


# --- image classification: CIFAR-10 (python pickle batches) or Fashion-MNIST padded to 32x32 ---------

CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def load_cifar10(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the standard ``cifar-10-batches-py`` folder: images (N, 3, 32, 32) uint8, labels."""
    import pickle

    folder = Path(folder)
    if split not in CIFAR10_FILES:
        raise FlowError(f"unknown split {split!r}; valid: {', '.join(CIFAR10_FILES)}")
    images, labels = [], []
    for name in CIFAR10_FILES[split]:
        path = folder / name
        if not path.is_file():
            raise FlowError(f"CIFAR-10 folder {folder} lacks {name}; expected the python-pickle batches "
                            f"{', '.join(CIFAR10_FILES['train'] + CIFAR10_FILES['test'])} (cifar-10-batches-py)")
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            batch_labels = np.asarray(batch[b"labels"], dtype=np.int64)
        except Exception as err:
            raise FlowError(f"{path} is not a CIFAR-10 python batch: {err}") from err
        if len(data) != len(batch_labels):
            raise FlowError(f"{path}: {len(data)} images but {len(batch_labels)} labels")
        images.append(data)
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def is_cifar10_folder(folder: Path) -> bool:
    return (Path(folder) / "test_batch").is_file() or (Path(folder) / "data_batch_1").is_file()


def load_image_classification(folder: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Float images (N, C, 32, 32) in [0, 1] and labels: CIFAR-10 when ``folder`` holds its batches,
    else an MNIST-format folder (default Fashion-MNIST) padded from 28x28 to 32x32, one channel."""
    if folder is not None and is_cifar10_folder(Path(folder)):
        images, labels = load_cifar10(folder, split)
    else:
        images, labels = load_mnist_format(folder, split)
        images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[:, None]
    return images.astype(np.float32) / 255.0, labels


def image_classification_channels(folder: str | Path | None) -> int:
    return 3 if folder is not None and is_cifar10_folder(Path(folder)) else 1


# --- super-resolution: BSD300 folders or the photographs shipped with scikit-image ---------------------

SKIMAGE_TEST_PHOTOS = ("astronaut", "camera", "coffee")


def _luminance(image: np.ndarray) -> np.ndarray:
    """Float luminance in [0, 1] of an RGB(A) or grey image."""
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    image = img_as_float(image)
    if image.ndim == 3:
        image = rgb2gray(image[..., :3])
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def skimage_photos(split: str) -> list[np.ndarray]:
    """Luminance of scikit-image's bundled photographs; three fixed ones form the test split."""
    import skimage.data

    names = sorted(
        name for name in ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins", "grass",
                          "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "motorcycle_left",
                          "page", "retina", "rocket", "text")
        if hasattr(skimage.data, name)
    )
    chosen = [n for n in names if (n in SKIMAGE_TEST_PHOTOS) == (split == "test")]
    photos = []
    for name in chosen:
        try:
            photos.append(_luminance(getattr(skimage.data, name)()))
        except Exception:  # a photo that needs a download (pooch) is skipped, never fetched
            continue
    if not photos:
        raise FlowError("no scikit-image photographs could be loaded; install scikit-image or give a BSD300 data folder", option="data")
    return photos


def bsd300_photos(folder: str | Path, split: str) -> list[np.ndarray]:
    """Luminance of the BSD300 images of ``split`` (``images/train`` or ``images/test`` under ``folder``)."""
    from skimage.io import imread

    folder = Path(folder)
    candidates = [folder / "images" / split, folder / split, folder / "BSDS300" / "images" / split]
    split_dir = next((c for c in candidates if c.is_dir()), None)
    if split_dir is None:
        raise FlowError(f"BSD300 folder {folder} has no {split} images; expected one of "
                        + ", ".join(str(c) for c in candidates))
    files = sorted(p for p in split_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if not files:
        raise FlowError(f"{split_dir} holds no .jpg/.png images")
    photos = []
    for path in files:
        try:
            photos.append(_luminance(imread(path)))
        except Exception as err:
            raise FlowError(f"cannot read image {path}: {err}") from err
    return photos


def super_resolution_patches(photos: list[np.ndarray], lr_size: int, upscale: int, count: int, seed: int):
    """``count`` random aligned patch pairs: low-res (N, 1, lr, lr) by area-downscaling high-res
    (N, 1, lr*upscale, lr*upscale) crops by ``upscale``."""
    from skimage.transform import downscale_local_mean

    hr_size = lr_size * upscale
    usable = [p for p in photos if min(p.shape) >= hr_size]
    if not usable:
        raise FlowError(f"no image is at least {hr_size}x{hr_size} pixels for {lr_size}x{lr_size} patches")
    rng = np.random.default_rng(seed)
    low, high = [], []
    for i in range(count):
        photo = usable[i % len(usable)]
        top = rng.integers(0, photo.shape[0] - hr_size + 1)
        left = rng.integers(0, photo.shape[1] - hr_size + 1)
        crop = photo[top : top + hr_size, left : left + hr_size]
        high.append(crop)
        low.append(downscale_local_mean(crop, (upscale, upscale)))
    return np.stack(low)[:, None].astype(np.float32), np.stack(high)[:, None].astype(np.float32)


def load_super_resolution(folder: str | Path | None, split: str, lr_size: int = 16, upscale: int = 3,
                          count: int | None = None, seed: int = 0):
    """Patch pairs for x``upscale`` super-resolution from BSD300 (``folder``) or scikit-image photos."""
    photos = bsd300_photos(folder, split) if folder else skimage_photos(split)
    count = count or (2048 if split == "train" else 256)
    return super_resolution_patches(photos, lr_size, upscale, count, seed + (0 if split == "train" else 1))


# --- identity of a data set: what a checkpoint was trained on and a report was measured on ------------


@dataclass(frozen=True)
class DataIdentity:
    """A data set as used by a build: its loader, the resolved folder (None: built-in photographs) and a
    content digest (sha256 of its files' names and bytes, or of the package that ships the data)."""

    dataset: str
    path: str | None
    digest: str

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "path": self.path, "digest": self.digest}


@lru_cache(maxsize=32)
def _folder_digest(folder: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def folder_digest(folder: Path) -> str:
    """Content digest of every file under ``folder`` (memoized per process by names, sizes and times)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _folder_digest(str(Path(folder).resolve()), stamp)


def data_identity(dataset: str, data_dir: str | None) -> DataIdentity:
    """The :class:`DataIdentity` of ``dataset`` read from ``data_dir`` (None: the built-in data).

    Checks that the folder exists, so a bad ``data`` option fails before any work starts."""
    if dataset not in DATASETS:
        raise FlowError(f"unknown data set {dataset!r}; valid: {', '.join(DATASETS)}")
    if data_dir is None and dataset == "super-resolution":
        return DataIdentity(dataset, None, f"scikit-image-{importlib.metadata.version('scikit-image')}")
    folder = Path(data_dir) if data_dir else DEFAULT_FASHION_MNIST
    if not folder.is_dir():
        hint = " (install it with `apt-get install dataset-fashion-mnist`)" if folder == DEFAULT_FASHION_MNIST else ""
        raise FlowError(f"data set folder {folder} does not exist{hint}", option="data")
    return DataIdentity(dataset, str(folder.resolve()), folder_digest(folder))
