"""ESPCN and UNet (x3 super-resolution, nearest-neighbour resize convolutions) through the whole flow.

Tiny, untrained registry builds (A2Q init, statistics and output level from the built-in photographs):
exact export -> FINN with the model's step list -> FINN-vs-QONNX check of the 8-bit output pixels -> summary.
"""

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from zoo_helpers import check_zoo_build, zoo_build

from flow.core.errors import FlowError
from flow.finn.reference import float64_model, run_float64
from flow.finn.transformations import to_graph_input
from flow.training.data import load_super_resolution

P = 16
WIDTH = 1 / 8


def check_sr(summary, sidecar, final, plan, acc_bits=P, acc_mode="exact"):
    ops = check_zoo_build(summary, sidecar, final, plan, acc_bits, acc_mode)
    assert summary["finn_check"]["compared"] == "output"
    assert summary["test_psnr"] is None  # untrained: no measured quality
    # the comparison sees real pixels, not an all-black image
    low, _ = load_super_resolution(None, "test", lr_size=16, count=2)
    reference = ModelWrapper(str(plan.work_dir / "model.onnx"))
    out = run_float64(float64_model(reference), to_graph_input(reference, low[:1]))
    assert len(np.unique(out)) >= 8
    return ops


def test_espcn_tiny_untrained_through_the_flow(tmp_path):
    summary, sidecar, final, plan = zoo_build("espcn", tmp_path, acc_bits=P, width=WIDTH)
    ops = check_sr(summary, sidecar, final, plan)
    assert ops.count("MVAU_hls") + ops.count("MVAU_rtl") == 3
    assert "UpsampleNearestNeighbour_hls" in ops
    assert {layer.name for layer in sidecar.layers} == {"conv1", "conv2", "conv3"}


def test_unet_tiny_untrained_through_the_flow(tmp_path):
    summary, sidecar, final, plan = zoo_build("unet", tmp_path, acc_bits=P, width=WIDTH)
    ops = check_sr(summary, sidecar, final, plan)
    assert ops.count("MVAU_hls") + ops.count("MVAU_rtl") == 8
    assert ops.count("UpsampleNearestNeighbour_hls") == 4
    assert ops.count("DuplicateStreams_hls") == 3 and ops.count("ElementwiseAdd_hls") == 3
    inputs = {layer.name: (layer.input_bits, layer.input_signed) for layer in sidecar.layers}
    assert inputs["dec3"] == (4, False) and inputs["dec2"] == (5, False)  # a skip sum is one bit wider


@pytest.mark.slow
@pytest.mark.parametrize("model,quantizer,acc_bits,options", [
    ("espcn", "a2q+", 12, {}), ("unet", "a2q+", 16, {"acc_mode": "target"}), ("unet", "a2q", 12, {}),
    ("espcn", "a2q", 16, {"synth": False, "rtlsim": True}), ("unet", "a2q", 16, {"synth": False, "rtlsim": True}),
])
def test_other_quantizers_p_and_rtl_layers(tmp_path, model, quantizer, acc_bits, options):
    summary, sidecar, final, plan = zoo_build(model, tmp_path, quantizer=quantizer, acc_bits=acc_bits, width=WIDTH,
                                              **options)
    ops = check_sr(summary, sidecar, final, plan, acc_bits, options.get("acc_mode", "exact"))
    if options.get("rtlsim"):
        assert "Thresholding_rtl" in ops and "MVAU_rtl" in ops
        checks = [layer["rtlsim_check"] for layer in summary["layers"] if layer["op_type"] == "MVAU_rtl"]
        assert checks and all(check["passed"] and check["exact_at_p"] for check in checks)


def test_relu_feeding_two_quantizers_is_split_and_the_check_catches_it(tmp_path):
    """FINN's QONNX conversion deletes a ReLU that feeds two quantizers (the second reads zeros):
    the FINN-vs-QONNX check must flag it, and SplitSharedRelu must prevent it."""
    import brevitas.nn as qnn
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from qonnx.util.cleanup import cleanup_model
    from torch import nn

    from flow.export import export_qonnx_exact
    from flow.finn.check import finn_check
    from flow.finn.rewrites import SplitSharedRelu
    from models.blocks import image_input_quant, io_conv, pixel_output_quant
    from models.quant import UnsignedActQuant

    class SharedRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.conv, self.relu = image_input_quant(), io_conv(1, 4, 3), nn.ReLU()
            self.qa = qnn.QuantIdentity(act_quant=UnsignedActQuant, bit_width=4, return_quant_tensor=True)
            self.qb = qnn.QuantIdentity(act_quant=UnsignedActQuant, bit_width=4, return_quant_tensor=True)
            self.ca, self.cb, self.out = io_conv(4, 1, 3), io_conv(4, 1, 3), pixel_output_quant()

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
        check, _, _ = finn_check(tmp_path / f"finn_{split}.onnx", tmp_path / "model.onnx", x.numpy(), "super_resolution")
        passed[split] = check.passed
    assert passed == {False: False, True: True}


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


def test_unet_rejects_sizes_that_are_not_multiples_of_8():
    from models.unet import build_unet

    with pytest.raises(FlowError, match="multiples of 8"):
        build_unet("a2q", 16, width=0.125)(torch.rand(1, 1, 12, 12))
