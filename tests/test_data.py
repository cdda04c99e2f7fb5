import gzip
import struct

import numpy as np
import pytest

from flow.core.errors import FlowError
from flow.training.data import binarize, load_binary_mnist, load_mnist_format, read_idx


def write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_mnist_folder(folder, n=5, compress=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for split, stem in (("train", "train"), ("test", "t10k")):
        images = rng.integers(0, 256, size=(n, 28, 28))
        labels = rng.integers(0, 10, size=n)
        write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", labels, compress)
    return images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    images, labels = make_mnist_folder(tmp_path, compress=compress)
    got_images, got_labels = load_mnist_format(tmp_path, "test")
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    features, _ = load_binary_mnist(tmp_path, "test")
    assert features.shape == (5, 784)
    assert np.array_equal(features, (images.reshape(5, -1) >= 128).astype(np.float32))


def test_real_fashion_mnist(fashion_mnist):
    images, labels = load_mnist_format(fashion_mnist, "test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert set(np.unique(labels)) == set(range(10))
    assert set(np.unique(binarize(images[:100]))) == {0.0, 1.0}


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(FlowError, match=str(tmp_path / "nope")):
        load_mnist_format(tmp_path / "nope", "train")


def test_missing_file_lists_expected_files(tmp_path):
    make_mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FlowError, match="t10k-labels-idx1-ubyte"):
        load_mnist_format(tmp_path, "test")


def test_truncated_file_is_a_clear_error(tmp_path):
    make_mnist_folder(tmp_path, compress=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(FlowError, match="truncated or corrupt"):
        read_idx(path)


def test_not_an_idx_file(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"hello world")
    with pytest.raises(FlowError, match="not an IDX file"):
        read_idx(path)


def test_unknown_split(tmp_path):
    make_mnist_folder(tmp_path)
    with pytest.raises(FlowError, match="unknown split"):
        load_mnist_format(tmp_path, "validation")
