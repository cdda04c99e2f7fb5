"""ResNet18 and MobileNetV1 (A2Q, P=16) through the whole flow, and their A2Q initialization.

Tiny (1/16 width), untrained models with A2Q-aware initialization and batch-norm/activation statistics
from real Fashion-MNIST images (padded to 32x32, one channel: the default image-classification data):
exact export -> FINN with the model's own step list -> FINN-vs-QONNX check -> summary. Asserted for
every build: only HW layers remain and the graph ends in LabelSelect, every A2Q layer's accumulator
is INT<P> and its exact range fits P, the 8-bit first/last layers get the exact width, and the FINN
graph reproduces the QONNX model's integer logits exactly (not only the label) on real images.
"""

import json

import numpy as np
import pytest
import torch

from flow.training.data import load_image_classification

P = 16
WIDTH = 1 / 16
HW_DOMAIN = "finn.custom_op.fpgadataflow"


@pytest.fixture(scope="module")
def images(fashion_mnist):
    inputs, _ = load_image_classification(str(fashion_mnist), "test")
    return torch.from_numpy(inputs[:64])


def build_tiny(name, images, tmp_path, checks=3):
    """Drive a build like ``flow.build.build_module`` does, with the model's own FINN step list."""
    import importlib

    from flow import build as driver
    from flow.core.config import get_board
    from flow.export import export_qonnx_exact

    module = importlib.import_module(f"models.{name}")
    steps = importlib.import_module(f"flow.model_steps.{name}").STEPS
    torch.manual_seed(0)
    model = getattr(module, f"build_{name}")("a2q", P, width=WIDTH, in_channels=images.shape[1])
    init_report = module.init_for_a2q(model)
    driver.calibrate_statistics(model, images)  # what an untrained registry build does
    work_dir, report_dir = tmp_path / "work" / name, tmp_path / "reports" / name
    work_dir.mkdir(parents=True)
    check_inputs = images[:checks]
    sidecar = export_qonnx_exact(model, images[:1], work_dir / "model.onnx", check_inputs=check_inputs,
                                 extra_meta={"model": name, "quantizer": "a2q", "acc_bits_target": P,
                                             "task": "classification", "weights": "untrained", "test_top1": None})
    summary = driver.finn_and_report(work_dir / "model.onnx", sidecar, check_inputs.numpy(), get_board("pynq-z2"),
                                     None, 1000, "target", work_dir, report_dir, {"model": name}, steps=steps)
    final = work_dir / "finn" / "intermediate_models" / "step_generate_estimate_reports.onnx"
    return summary, sidecar, init_report, work_dir, final


def finn_integer_logits(final_path, graph_input):
    """The FINN graph's integer logits (the LabelSelect input) for one integer NCHW graph input.

    Nodes the dataflow partition left outside (the NCHW->NHWC Transpose at the input) are applied first.
    """
    from onnx import helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from flow.build import python_executable_copy

    parent = ModelWrapper(str(final_path.parent / "dataflow_parent.onnx"))
    x = graph_input
    for node in parent.graph.node:
        if node.op_type == "StreamingDataflowPartition":
            break
        assert node.op_type == "Transpose", f"unexpected {node.op_type} ahead of the dataflow partition"
        x = np.transpose(x, helper.get_attribute_value(node.attribute[0]))
    model = python_executable_copy(ModelWrapper(str(final_path)))
    context = execute_onnx(model, {model.graph.input[0].name: x}, return_full_exec_context=True)
    (label_select,) = [n for n in model.graph.node if n.op_type.startswith("LabelSelect")]
    return context[label_select.input[0]].reshape(-1), context[model.graph.output[0].name].reshape(-1)


def check_build(summary, sidecar, init_report, work_dir, final_path, images, expected_ops):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from flow.transformations import to_graph_input

    final = ModelWrapper(str(final_path))
    not_hw = [f"{n.op_type} ({n.domain})" for n in final.graph.node if not n.domain.startswith(HW_DOMAIN)]
    assert not not_hw, f"non-HW nodes left: {not_hw}"
    ops = [n.op_type.rsplit("_", 1)[0] for n in final.graph.node]
    assert ops[-1] == "LabelSelect"
    for op, count in expected_ops.items():
        assert ops.count(op) == count, f"{op}: {ops.count(op)} in the final graph, expected {count}"

    assert sidecar["export_check"] == {"max_abs_diff": 0.0, "l1_bound_ok": True, "weights_exact": True}
    assert summary["finn_check"]["passed"] and summary["finn_check"]["max_abs_diff"] == 0.0

    # every A2Q layer: initialized to non-zero integers, accumulator INT<P>, exact range within P
    a2q_layers = {layer["name"] for layer in sidecar["layers"] if layer["quantizer"] == "a2q"}
    assert set(init_report) == a2q_layers
    assert all(r["zero_channels"] == 0 and r["nonzero"] > 0.3 for r in init_report.values()), init_report
    decisions = json.loads(final.get_metadata_prop("a2q_accumulators"))
    by_layer = {d["layer"]: d for d in decisions.values()}
    assert set(by_layer) == {layer["name"] for layer in sidecar["layers"]}
    for name, decision in by_layer.items():
        if name in a2q_layers:
            assert decision["acc_bits_target"] == P and decision["acc_datatype"] == f"INT{P}"
            assert decision["acc_bits_exact"] <= P, decision
        else:  # 8-bit stem convolution and classifier: outside A2Q, exact width
            assert decision["acc_bits_target"] is None and decision["acc_source"] == "exact"
            assert decision["acc_datatype"] == f"INT{decision['acc_bits_exact']}"
    rows = {row["layer"]: row for row in summary["layers"] if row["layer"]}
    assert all(rows[name]["acc_datatype"] == f"INT{P}" for name in a2q_layers)

    # stronger than the label check: the integer logits agree exactly, and they vary between images
    reference = ModelWrapper(str(work_dir / "model.onnx"))
    (output_quant,) = [n for n in reference.graph.node if reference.graph.output[0].name in n.output]
    assert output_quant.op_type == "Quant"
    out_scale = float(reference.get_initializer(output_quant.input[1]))
    seen = set()
    for image in images[:3].numpy():
        graph_input = to_graph_input(reference, image[None])
        expected = execute_onnx(reference, {reference.graph.input[0].name: graph_input})[reference.graph.output[0].name]
        expected = np.round(expected.reshape(-1) / out_scale)
        logits, label = finn_integer_logits(final_path, graph_input)
        np.testing.assert_array_equal(logits, expected)
        assert int(label[0]) == int(np.argmax(expected))
        seen.add(tuple(expected))
    assert len(seen) > 1, "the untrained network gives the same logits for every image: the check would be weak"


def test_resnet18_tiny_build(images, tmp_path):
    summary, sidecar, init_report, work_dir, final = build_tiny("resnet18", images, tmp_path)
    assert len(init_report) == 19  # 16 3x3 + 3 shortcut convolutions
    check_build(summary, sidecar, init_report, work_dir, final, images,
                {"MVAU": 21, "ElementwiseAdd": 8, "DuplicateStreams": 8, "Pool": 1})


def test_mobilenetv1_tiny_build(images, tmp_path):
    summary, sidecar, init_report, work_dir, final = build_tiny("mobilenetv1", images, tmp_path)
    assert len(init_report) == 26  # 13 depthwise + 13 pointwise convolutions
    assert sum(layer["depthwise"] for layer in sidecar["layers"]) == 13
    check_build(summary, sidecar, init_report, work_dir, final, images, {"MVAU": 15, "VVAU": 13, "Pool": 1})


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
    from models.resnet18 import project_for_a2q

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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenetv1"])
def test_registry_build_untrained(name, tmp_path, fashion_mnist, images):
    """The same models through ``flow.build.build`` (registry entry, default data, A2Q init, its calibration)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from flow.transformations import to_graph_input

    from flow.build import BuildOptions, build
    from models import get_model_spec

    spec = get_model_spec(name)
    assert spec.finn_steps == f"flow.model_steps.{name}:STEPS"
    summary = build(BuildOptions(model=name, acc_bits=P, width=WIDTH, board="pynq-z2", target_fps=1000, train=False,
                                 data=str(fashion_mnist), reports_root=tmp_path / "reports", work_root=tmp_path / "work",
                                 checkpoint_root=tmp_path / "ckpt"))
    assert summary["weights"] == "untrained"
    assert summary["finn_check"]["passed"] and summary["finn_check"]["max_abs_diff"] == 0.0
    (work_dir,) = (tmp_path / "work").iterdir()
    final = ModelWrapper(str(work_dir / "finn" / "intermediate_models" / "step_generate_estimate_reports.onnx"))
    assert all(n.domain.startswith(HW_DOMAIN) for n in final.graph.node)
    decisions = json.loads(final.get_metadata_prop("a2q_accumulators")).values()
    a2q = [d for d in decisions if d["acc_bits_target"] is not None]
    assert len(a2q) == (19 if name == "resnet18" else 26)
    assert all(d["acc_datatype"] == f"INT{P}" and d["acc_bits_exact"] <= P for d in a2q)
    reference = ModelWrapper(str(work_dir / "model.onnx"))
    logits = {tuple(execute_onnx(reference, {reference.graph.input[0].name: to_graph_input(reference, image[None])})[
        reference.graph.output[0].name].reshape(-1)) for image in images[:3].numpy()}
    assert len(logits) > 1, "the calibrated untrained network gives the same logits for every image"
