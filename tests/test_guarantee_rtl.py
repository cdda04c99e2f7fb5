"""The accumulator guarantee in hardware, at a P where A2Q binds.

A small convolutional model whose unconstrained 4-bit weights need 14 bits (K = 144, 4-bit unsigned inputs)
is initialized with A2Q for P = 12 and built into RTL layers (MVAU_rtl + Thresholding_rtl). Every MVAU is simulated (Verilator): bit-exact on the activations of real inputs, exact on
the inputs that reach its accumulator extremes at the width written, and wrong at one bit less where the
exact minimum is that width. The control: the same network with ordinary (baseline) weights claimed for
P = 12 stops with the accumulator error naming the layer; and the boundary: a claim of exactly the exact
minimum builds, one bit less does not.
"""

import brevitas.nn as qnn
import pytest
import torch
from torch import nn

from flow.artifacts import Sidecar
from flow.core import accumulator as acc
from flow.core.errors import FlowError
from flow.export import export_qonnx_exact
from flow.options import BuildOptions
from flow.pipeline import build, build_module
from models.a2q_init import init_for_a2q
from models.blocks import quant_conv, quant_relu
from models.calibration import calibrate_statistics
from models.quant import UnsignedActQuant

P = 12


class OneConv(nn.Module):
    """16 x 6 x 6 features (4-bit unsigned) -> 3x3 convolution to 8 channels -> batch norm -> 4-bit ReLU."""

    input_shape = (16, 6, 6)

    def __init__(self, quantizer: str, acc_bits):
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=UnsignedActQuant, bit_width=4, return_quant_tensor=True)
        self.conv1, self.bn1, self.act1 = quant_conv(16, 8, 3, quantizer, 4, acc_bits), nn.BatchNorm2d(8), quant_relu(4)

    def forward(self, x):
        return self.act1(self.bn1(self.conv1(self.inp(x))))


def make(quantizer: str):
    torch.manual_seed(0)
    model = OneConv(quantizer, P if quantizer != "baseline" else None)
    features = torch.rand(64, 16, 6, 6, generator=torch.Generator().manual_seed(1))
    if quantizer != "baseline":
        init_for_a2q(model, features[:2])
    calibrate_statistics(model, features)
    return model.eval(), features


def test_unconstrained_weights_would_need_more_than_p():
    model, features = make("baseline")
    from models.inspect import capture_quant_layers

    records = capture_quant_layers(model, features[:1])
    needs = {name: acc.exact_acc_bits(r["weights_int"].reshape(len(r["weights_int"]), -1), r["input_bits"], False)
             for name, r in records.items()}
    assert all(bits > P for bits in needs.values()), needs  # so A2Q binds at P: the claim below has teeth
    assert acc.datatype_bound_bits(144, 4, 4, False) == 16


@pytest.fixture(scope="module")
def rtl_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rtl")
    model, features = make("a2q")
    summary = build_module(model, features[:1], "oneconv", target_fps=100_000, task="super_resolution",
                           check_inputs=features[:3], rtlsim=True, reports_root=tmp / "reports", work_root=tmp / "work")
    return summary, tmp


def test_every_mvau_is_exact_in_rtl_at_p_and_wrong_one_bit_below(rtl_build):
    summary, _ = rtl_build
    assert summary["finn_check"]["passed"] and summary["finn_check"]["mismatches"] == 0
    mvaus = [layer for layer in summary["layers"] if layer["op_type"].startswith("MVAU")]
    assert [layer["op_type"] for layer in mvaus] == ["MVAU_rtl"]
    for layer in mvaus:
        check = layer["rtlsim_check"]
        assert layer["acc_bits_target"] == P and layer["acc_bits_exact"] <= P
        assert check["samples"] == 3 and check["samples_exact"] is True
        assert check["acc_bits"] == int(layer["acc_datatype"].replace("INT", "")) == layer["acc_bits_exact"]
        assert check["exact_at_p"] is True
        # exact mode writes the exact minimum: one bit less must overflow on the adversarial inputs
        assert check["overflow_detected_at_p_minus_1"] is True and check["passed"] is True
    thresholds = [layer for layer in summary["layers"] if layer["op_type"] == "Thresholding_rtl"]
    assert thresholds and all(layer["rtlsim_check"]["samples_exact"] for layer in thresholds)


def claimed(onnx_path, tmp_path, claims: dict) -> str:
    """A copy of an exported model whose sidecar claims the given P per layer."""
    target = tmp_path / f"claim_{'_'.join(map(str, claims.values()))}.onnx"
    target.write_bytes(onnx_path.read_bytes())
    sidecar = Sidecar.read(onnx_path)
    for layer in sidecar.layers:
        layer.acc_bits_target = claims.get(layer.name, layer.acc_bits_target)
    sidecar.write(target)
    return str(target)


def test_baseline_weights_claimed_for_p_stop_with_the_accumulator_error(tmp_path):
    model, features = make("baseline")
    export_qonnx_exact(model, features[:1], tmp_path / "base.onnx", check_inputs=features[:2],
                       meta={"task": "super_resolution"})
    onnx = claimed(tmp_path / "base.onnx", tmp_path, {"conv1": P})
    with pytest.raises(FlowError, match=r"layer MVAU_\w+ \(conv1\): its integer weights need a 1[3-9]-bit "
                                        r"accumulator .* but it was trained for P=12"):
        build(BuildOptions(onnx=onnx, target_fps=100_000, reports_root=tmp_path / "r", work_root=tmp_path / "w"))


def test_claim_of_exactly_the_exact_minimum_builds_and_one_bit_less_stops(rtl_build, tmp_path):
    summary, tmp = rtl_build
    exported = tmp / "work" / summary["build"] / "model.onnx"
    exact = {layer.name: layer.acc_bits_exact for layer in Sidecar.read(exported).layers}
    assert all(bits <= P for bits in exact.values())
    opts = {"target_fps": 100_000, "reports_root": tmp_path / "r", "work_root": tmp_path / "w"}
    at_exact = build(BuildOptions(onnx=claimed(exported, tmp_path, exact), acc_mode="target", **opts))
    widths = {layer["layer"]: layer["acc_datatype"] for layer in at_exact["layers"] if layer["layer"]}
    assert widths == {name: f"INT{bits}" for name, bits in exact.items()}
    tighter = {"conv1": exact["conv1"] - 1}
    with pytest.raises(FlowError, match=rf"\(conv1\): its integer weights need a {exact['conv1']}-bit accumulator"):
        build(BuildOptions(onnx=claimed(exported, tmp_path, tighter), **opts))
