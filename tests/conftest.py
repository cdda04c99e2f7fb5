import os
import tempfile
from pathlib import Path

import pytest

# Under pytest-xdist (make test runs two workers on two cores) each worker computes on one thread:
# torch's default of one thread per core would oversubscribe the machine.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)

# FINN wants a build folder before any of its modules is imported.
os.environ.setdefault("FINN_BUILD_DIR", str(Path(tempfile.gettempdir()) / "finn_build_tests"))

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_mnist() -> Path:
    if not FASHION_MNIST.is_dir():
        pytest.fail("Fashion-MNIST is not installed; `make setup` installs dataset-fashion-mnist")
    return FASHION_MNIST
