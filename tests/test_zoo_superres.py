"""ESPCN and UNet (x3 super-resolution, nearest-neighbour resize convolutions) through the whole flow.

Tiny, untrained (calibrated) models on real image patches: exact export -> FINN with the model's own step
list -> FINN-vs-QONNX Python check -> summary. Asserted for every build: only HW layers remain, every A2Q
layer's accumulator is at most its P, and the FINN graph reproduces the QONNX outputs.
"""

import inspect
import json

import numpy as np
import pytest
import torch

from flow.training.data import load_super_resolution
from flow.core.errors import FlowError

P = 16
WIDTH = 1 / 8
LR_SIZE = 16  # low-resolution patch (UNet needs a multiple of 8)


@pytest.fixture(scope="module")
def patches():
    low, _ = load_super_resolution(None, "test", lr_size=LR_SIZE, count=16)
    return torch.from_numpy(low)


def build_tiny(factory, steps, name, patches, tmp_path, quantizer="a2q", acc_bits=P, width=WIDTH, **driver_options):
    """Drive a build like ``flow.build.build_module`` does, with the model's own FINN step list."""
    from flow import build as driver
    from flow.core.config import get_board
    from flow.export import export_qonnx_exact
    from models.espcn import calibrate_activations

    torch.manual_seed(0)
    model = factory(quantizer, acc_bits, width=width)
    calibrate_activations(model, patches)
    work_dir, report_dir = tmp_path / "work" / name, tmp_path / "reports" / name
    work_dir.mkdir(parents=True)
    checks = patches[:2]
    sidecar = export_qonnx_exact(model, patches[:1], work_dir / "model.onnx", check_inputs=checks,
                                 extra_meta={"model": name, "quantizer": quantizer, "acc_bits_target": acc_bits,
                                             "task": "super_resolution", "weights": "untrained", "test_top1": None})
    args = (work_dir / "model.onnx", sidecar, checks.numpy(), get_board("pynq-z2"), None, 1000, "target", work_dir,
            report_dir, {"model": name})
    parameters = inspect.signature(driver.finn_and_report).parameters
    if any(option not in parameters for option in driver_options):
        pytest.skip(f"this driver's finn_and_report lacks {sorted(driver_options)}")
    if "steps" in parameters:
        summary = driver.finn_and_report(*args, steps=steps, **driver_options)
    else:  # older driver: the step list is the module constant
        saved = driver.ESTIMATE_STEPS
        driver.ESTIMATE_STEPS = steps
        try:
            summary = driver.finn_and_report(*args)
        finally:
            driver.ESTIMATE_STEPS = saved
    # the comparison must see real pixels, not an all-black image
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from flow.transformations import to_graph_input

    reference = ModelWrapper(str(work_dir / "model.onnx"))
    out = execute_onnx(reference, {reference.graph.input[0].name: to_graph_input(reference, checks[:1].numpy())})
    assert len(np.unique(out[reference.graph.output[0].name])) >= 8
    final = work_dir / "finn" / "intermediate_models" / "step_generate_estimate_reports.onnx"
    return summary, sidecar, final


def check_build(summary, sidecar, final_path, acc_bits=P):
    from qonnx.core.modelwrapper import ModelWrapper

    final = ModelWrapper(str(final_path))
    not_hw = [f"{n.op_type} ({n.domain})" for n in final.graph.node
              if not n.domain.startswith("finn.custom_op.fpgadataflow")]
    assert not not_hw, f"non-HW nodes left: {not_hw}"
    assert summary["finn_check"]["passed"] and summary["finn_check"]["max_abs_diff"] <= 1e-4
    assert summary["finn_check"]["compared"] == "output"
    assert sidecar["export_check"]["max_abs_diff"] <= 1e-4 and sidecar["export_check"]["l1_bound_ok"]
    decisions = json.loads(final.get_metadata_prop("a2q_accumulators"))
    a2q = {d["layer"]: d for d in decisions.values() if d["acc_bits_target"] is not None}
    expected = {layer["name"] for layer in sidecar["layers"] if layer["quantizer"] != "baseline"}
    assert set(a2q) == expected and expected
    for name, decision in a2q.items():
        bits = int(decision["acc_datatype"].replace("UINT", "").replace("INT", ""))
        assert bits <= acc_bits and decision["acc_bits_exact"] <= acc_bits, (name, decision)
    io_layers = [d for d in decisions.values() if d["acc_bits_target"] is None]
    assert len(io_layers) == 2 and all(d["acc_source"] == "exact" for d in io_layers)  # 8-bit first/last layers
    return [n.op_type for n in final.graph.node]


def test_espcn_tiny_untrained_through_the_flow(patches, tmp_path):
    from flow.model_steps.espcn import STEPS
    from models.espcn import build_espcn

    summary, sidecar, final = build_tiny(build_espcn, STEPS, "espcn_tiny", patches, tmp_path)
    ops = check_build(summary, sidecar, final)
    assert ops.count("MVAU_hls") + ops.count("MVAU_rtl") == 3
    assert "UpsampleNearestNeighbour_hls" in ops
    assert {layer["name"] for layer in sidecar["layers"]} == {"conv1", "conv2", "conv3"}


def test_unet_tiny_untrained_through_the_flow(patches, tmp_path):
    from flow.model_steps.unet import STEPS
    from models.unet import build_unet

    summary, sidecar, final = build_tiny(build_unet, STEPS, "unet_tiny", patches, tmp_path)
    ops = check_build(summary, sidecar, final)
    assert ops.count("MVAU_hls") + ops.count("MVAU_rtl") == 8
    assert ops.count("UpsampleNearestNeighbour_hls") == 4
    assert ops.count("DuplicateStreams_hls") == 3 and ops.count("ElementwiseAdd_hls") == 3
    inputs = {layer["name"]: (layer["input_bits"], layer["input_signed"]) for layer in sidecar["layers"]}
    assert inputs["dec3"] == (4, False) and inputs["dec2"] == (5, False)  # a skip sum is one bit wider


@pytest.mark.slow
@pytest.mark.parametrize("model,quantizer,acc_bits,standalone", [
    ("espcn", "a2q+", 12, False), ("unet", "a2q+", 16, False), ("unet", "a2q", 12, False),
    ("espcn", "a2q", 16, True), ("unet", "a2q", 16, True),  # MVAU_rtl + Thresholding_rtl
])
def test_other_quantizers_p_and_standalone_thresholds(patches, tmp_path, model, quantizer, acc_bits, standalone):
    import importlib

    factory = getattr(importlib.import_module(f"models.{model}"), f"build_{model}")
    steps = importlib.import_module(f"flow.model_steps.{model}").STEPS
    options = {"standalone_thresholds": True} if standalone else {}
    summary, sidecar, final = build_tiny(factory, steps, f"{model}_{quantizer}_{acc_bits}", patches, tmp_path,
                                         quantizer=quantizer, acc_bits=acc_bits, **options)
    ops = check_build(summary, sidecar, final, acc_bits=acc_bits)
    if standalone:
        assert "Thresholding_rtl" in ops and "MVAU_rtl" in ops


@pytest.mark.parametrize("quantizer", ["a2q", "a2q+"])
@pytest.mark.parametrize("acc_bits", [8, 10, 16])
def test_init_for_a2q_gives_nonzero_integers_in_every_channel(quantizer, acc_bits):
    from models.espcn import a2q_weight_stats, build_espcn

    torch.manual_seed(0)
    model = build_espcn(quantizer, acc_bits)  # full width: K = 9 * 64 = 576
    stats = a2q_weight_stats(model, torch.rand(1, 1, 16, 16))
    assert set(stats) == {"conv2"}
    assert stats["conv2"]["zero_channels"] == 0 and stats["conv2"]["l1_max"] > 0


def test_models_shapes_and_widths():
    from models.espcn import build_espcn
    from models.unet import build_unet

    x = torch.rand(2, 1, 16, 16)
    for factory in (build_espcn, build_unet):
        model = factory("a2q", 16, width=0.25).eval()
        y = model(x)
        assert tuple(y.shape) == (2, 1, 48, 48)
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0  # 8-bit pixel output
    assert build_unet("baseline", None, width=0.5).dec3.out_channels == 64


def test_relu_feeding_two_quantizers_is_split_and_the_check_catches_it(tmp_path):
    """FINN's QONNX conversion deletes a ReLU that feeds two quantizers (the second reads zeros):
    flow.build.finn_check must flag it, and SplitSharedRelu must prevent it."""
    import brevitas.nn as qnn
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model
    from torch import nn

    from flow.build import finn_check
    from flow.export import export_qonnx_exact
    from flow.model_steps.unet import SplitSharedRelu
    from models.espcn import input_quant, io_conv, output_quant
    from models.quant import UnsignedActQuant

    class SharedRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.conv, self.relu = input_quant(), io_conv(1, 4, 3), nn.ReLU()
            self.qa = qnn.QuantIdentity(act_quant=UnsignedActQuant, bit_width=4, return_quant_tensor=True)
            self.qb = qnn.QuantIdentity(act_quant=UnsignedActQuant, bit_width=4, return_quant_tensor=True)
            self.ca, self.cb, self.out = io_conv(4, 1, 3), io_conv(4, 1, 3), output_quant()

        def forward(self, x):
            r = self.relu(self.conv(self.inp(x)))
            return self.out(self.ca(self.qa(r)) + self.cb(self.qb(r)))

    torch.manual_seed(0)
    model, x = SharedRelu(), torch.rand(4, 1, 8, 8)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    export_qonnx_exact(model.eval(), x[:1], tmp_path / "model.onnx", check_inputs=x)
    passed = {}
    for split in (False, True):
        graph = cleanup_model(ModelWrapper(str(tmp_path / "model.onnx")))
        assert sum(len(graph.find_consumers(n.output[0])) > 1 for n in graph.graph.node if n.op_type == "Relu") == 1
        if split:
            graph = graph.transform(SplitSharedRelu())
        graph = graph.transform(ConvertQONNXtoFINN())
        graph.save(str(tmp_path / f"finn_{split}.onnx"))
        result = finn_check(tmp_path / f"finn_{split}.onnx", tmp_path / "model.onnx", x.numpy(), "super_resolution")
        passed[split] = (result[0] if isinstance(result, tuple) else result)["passed"]
    assert passed == {False: False, True: True}


def test_unet_rejects_sizes_that_are_not_multiples_of_8():
    from models.unet import build_unet

    with pytest.raises(FlowError, match="multiples of 8"):
        build_unet("a2q", 16, width=0.125)(torch.rand(1, 1, 12, 12))
