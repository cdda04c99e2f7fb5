"""ResNet18 and MobileNetV1 through the whole flow (registry builds), and the A2Q initialization.

Tiny (1/16 width), untrained models with the A2Q-aware initialization and batch-norm/activation statistics
from real Fashion-MNIST images (padded to 32x32, one channel: the default image-classification data):
exact export -> FINN with the model's step list -> FINN-vs-QONNX check of the integer logits -> summary.
"""

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from zoo_helpers import check_zoo_build, zoo_build

from flow.finn.reference import float64_model, run_float64
from flow.finn.transformations import to_graph_input
from flow.training.data import load_image_classification

P = 16
WIDTH = 1 / 16


@pytest.fixture(scope="module")
def images(fashion_mnist):
    inputs, _ = load_image_classification(str(fashion_mnist), "test")
    return torch.from_numpy(inputs[:64])


def check_classifier(summary, sidecar, final, plan, images, expected_ops, a2q_layers):
    ops = [op.rsplit("_", 1)[0] for op in check_zoo_build(summary, sidecar, final, plan, P)]
    assert ops[-1] == "LabelSelect"
    for op, count in expected_ops.items():
        assert ops.count(op) == count, f"{op}: {ops.count(op)} in the final graph, expected {count}"
    assert sum(layer.acc_bits_target == P for layer in sidecar.layers) == a2q_layers
    # the FINN graph's integer logits equal the QONNX logits, and they vary between images
    assert summary["finn_check"]["compared"] == "integer logits"
    reference = ModelWrapper(str(plan.work_dir / "model.onnx"))
    reference64 = float64_model(reference)
    logits = {tuple(run_float64(reference64, to_graph_input(reference, image[None])).reshape(-1))
              for image in images[:3].numpy()}
    assert len(logits) > 1, "the calibrated untrained network gives the same logits for every image"


def test_resnet18_tiny_build(images, tmp_path):
    summary, sidecar, final, plan = zoo_build("resnet18", tmp_path, acc_bits=P, width=WIDTH, board="pynq-z2",
                                              target_fps=1000)
    check_classifier(summary, sidecar, final, plan, images,
                     {"MVAU": 21, "ElementwiseAdd": 8, "DuplicateStreams": 8, "Pool": 1}, a2q_layers=19)


@pytest.mark.slow  # 80 s of CI time; VVAU conversion and accumulators keep fast unit tests (test_transformations)
def test_mobilenetv1_tiny_build(images, tmp_path):
    summary, sidecar, final, plan = zoo_build("mobilenetv1", tmp_path, acc_bits=P, width=WIDTH, board="pynq-z2",
                                              target_fps=1000)
    assert sum(layer.depthwise for layer in sidecar.layers) == 13
    check_classifier(summary, sidecar, final, plan, images, {"MVAU": 15, "VVAU": 13, "Pool": 1}, a2q_layers=26)


def test_factories_follow_the_papers_shapes():
    from models.mobilenetv1 import build_mobilenetv1
    from models.resnet18 import build_resnet18

    resnet = build_resnet18("a2q", P, width=1 / 32, in_channels=3, num_classes=7)
    assert resnet.conv1.stride == (1, 1) and resnet.conv1.in_channels == 3 and resnet.fc.out_features == 7
    assert [resnet.layer1[0].conv1.out_channels, resnet.layer4[0].conv1.out_channels] == [2, 16]
    assert [block.shortcut is None for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
            for block in layer] == [True, True, False, True, False, True, False, True]
    mobilenet = build_mobilenetv1("a2q", P, width=1 / 32, in_channels=1)
    assert mobilenet.conv1.stride == (2, 2) and mobilenet.pool.stride == 2 and mobilenet.pool.kernel_size == 2
    dw = [block.dw_conv for block in mobilenet.features]
    assert all(conv.groups == conv.in_channels == conv.out_channels for conv in dw) and len(dw) == 13
    assert mobilenet.features[-1].pw_conv.out_channels == 32  # 1024 / 32
    for model, shape in ((resnet, (2, 3, 32, 32)), (mobilenet, (2, 1, 32, 32))):
        model.eval()
        with torch.no_grad():
            assert model(torch.rand(shape)).shape[0] == 2


def test_a2q_projection_keeps_long_dot_products_alive():
    """With PyTorch's default (uniform) initialization, plain A2Q scaling zeroes a K=4608 layer at P=16
    with 4-bit inputs; the projection keeps the full integer range inside the l1 budget."""
    from models.a2q_init import project_for_a2q

    torch.manual_seed(0)
    weights = torch.rand(8, 4608) * 2 - 1
    budget = (2 ** (P - 1) - 1) * 2.0 ** -4  # A2Q bound for unsigned 4-bit inputs
    scale = weights.abs().amax(dim=1, keepdim=True) / 7
    norm = weights.abs().sum(dim=1, keepdim=True)
    uniformly_scaled = weights / norm * torch.clamp(norm / scale, max=budget)  # what A2Q computes, in units of s
    assert not torch.trunc(uniformly_scaled).any()  # round-to-zero leaves nothing
    projected = project_for_a2q(weights, budget, 7)
    new_scale = projected.abs().amax(dim=1, keepdim=True) / 7
    assert torch.allclose(projected.abs().sum(dim=1, keepdim=True) / new_scale, torch.full((8, 1), budget), rtol=1e-4)
    ints = torch.trunc(projected / new_scale)
    assert (ints.abs().amax(dim=1) >= 6).all() and (ints.abs().sum(dim=1) <= budget).all()
    assert (ints != 0).float().mean() > 0.05
    small = torch.rand(4, 9) - 0.5
    assert torch.equal(project_for_a2q(small, budget, 7), small)  # within budget: unchanged


@pytest.mark.parametrize("name,quantizer,acc_bits", [("resnet18", "a2q", 12), ("espcn", "a2q+", 8),
                                                      ("unet", "a2q", 10), ("mobilenetv1", "a2q+", 14)])
def test_a2q_initialization_gives_nonzero_integers_in_every_channel(name, quantizer, acc_bits):
    from models import get_model_spec
    from models.inspect import default_sample

    spec = get_model_spec(name)
    torch.manual_seed(0)
    model = spec.make(quantizer, acc_bits, width=1 / 8)
    report = spec.apply_init_for_a2q(model, default_sample(model))
    assert report and all(r["zero_channels"] == 0 and r["l1_max"] > 0 for r in report.values()), report
    assert np.mean([r["nonzero"] for r in report.values()]) > 0.02
