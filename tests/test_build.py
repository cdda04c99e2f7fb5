"""The linear classifier end to end: checkpoint -> exact export -> FINN -> summary, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flow.build import BuildOptions, build
from flow.core.errors import FlowError
from flow.train import model_identity, train_classifier
from models import get_model_spec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def roots(tmp_path_factory, fashion_mnist):
    root = tmp_path_factory.mktemp("build")
    spec = get_model_spec("linear")
    for p in (12, 16):
        model = spec.make("a2q", p)
        identity = model_identity(spec, "a2q", p, spec.weight_bits, spec.act_bits, 1.0)
        # a short real training run (20 steps) so the weights are trained, not random
        train_classifier(spec, model, identity, root / "ckpt" / f"linear_a2q_P{p}.pt", epochs=1, max_steps_per_epoch=20,
                         log=lambda line: None)
    return {"checkpoint_root": root / "ckpt", "reports_root": root / "reports", "work_root": root / "work"}


def run_build(roots, **kwargs):
    return build(BuildOptions(epochs=1, **roots, **kwargs))


@pytest.mark.parametrize("p", [12, 16])
def test_linear_build_sets_every_accumulator_to_p(roots, p):
    # the default build (P=16) also synthesizes and simulates its RTL layers; P=12 skips that to save time
    hardware_checks = p == 16
    summary = run_build(roots, acc_bits=p, synth=hardware_checks, rtlsim=hardware_checks)
    report = roots["reports_root"] / f"linear_P{p}_a2q_pynq-z2"
    assert json.loads((report / "summary.json").read_text()) == summary
    assert (report / "summary.md").read_text().startswith(f"# linear — a2q P={p}")
    assert (report / "finn_reports" / "estimate_layer_resources.json").is_file()
    assert summary["export_check"]["max_abs_diff"] == 0.0 and summary["export_check"]["l1_bound_ok"]
    assert summary["finn_check"]["passed"] and summary["finn_check"]["max_abs_diff"] == 0.0
    assert summary["weights"] == "trained" and 0.1 < summary["test_top1"] <= 1.0
    ops = [layer["op_type"] for layer in summary["layers"]]
    assert ops[-1].startswith("LabelSelect") and ops[0].startswith("MVAU")
    (mvau,) = [layer for layer in summary["layers"] if layer["op_type"].startswith("MVAU")]
    assert (mvau["mw"], mvau["mh"], mvau["k"], mvau["input_bits"], mvau["weight_bits"]) == (784, 10, 784, 1, 8)
    assert mvau["acc_bits_target"] == p and mvau["acc_datatype"] == f"INT{p}"
    assert mvau["acc_bits_exact"] <= p and mvau["acc_bits_datatype_bound"] == 19
    (thresholds,) = [layer for layer in summary["layers"] if layer["op_type"].startswith("Thresholding")]
    # standalone thresholds read the P-bit accumulator; their values are clipped into its range
    assert thresholds["input_datatype"] == f"INT{p}"
    assert int(thresholds["threshold_datatype"].replace("INT", "")) <= p + 1
    if hardware_checks:
        assert thresholds["op_type"] == "Thresholding_rtl" and thresholds["resource_source"] == "open_synthesis"
        assert thresholds["lut_synth"] > 0 and thresholds["ff_synth"] > 0
        assert mvau["resource_source"] == "finn_estimate"  # 1-bit inputs: FINN has no RTL MVU for them
        assert summary["totals"]["lut_synth"] == thresholds["lut_synth"] + mvau["lut"]
        assert thresholds["rtlsim_check"] == {"samples": 8, "samples_exact": True, "passed": True}
    assert mvau["lut"] > 0 and mvau["cycles"] == 784 // mvau["simd"] * 10 // mvau["pe"]
    assert summary["totals"]["max_cycles"] == mvau["cycles"]
    assert summary["totals"]["fps_at_clock"] == pytest.approx(1e9 / 10.0 / mvau["cycles"])
    assert summary["board_fit"]["fits"] is True


def test_exact_mode_and_named_folding(roots):
    summary = run_build(roots, acc_bits=16, acc_mode="exact", folding="linear_small", synth=False, rtlsim=False)
    (mvau,) = [layer for layer in summary["layers"] if layer["op_type"].startswith("MVAU")]
    assert (mvau["pe"], mvau["simd"]) == (2, 4)
    assert mvau["acc_datatype"] == f"INT{mvau['acc_bits_exact']}" and mvau["acc_bits_exact"] <= 16
    assert (roots["reports_root"] / "linear_P16_a2q_pynq-z2_linear_small" / "summary.json").is_file()


def test_onnx_without_sidecar_uses_the_exact_minimum(roots, tmp_path):
    exported = roots["work_root"] / "linear_P16_a2q_pynq-z2" / "model.onnx"
    if not exported.is_file():
        run_build(roots, acc_bits=16)
    user_onnx = tmp_path / "user.onnx"
    user_onnx.write_bytes(exported.read_bytes())
    summary = run_build(roots, onnx=str(user_onnx), acc_bits=None, folding="linear_default", synth=False, rtlsim=False)
    (mvau,) = [layer for layer in summary["layers"] if layer["op_type"].startswith("MVAU")]
    assert mvau["acc_bits_target"] is None and mvau["acc_source"] == "exact"
    assert mvau["acc_datatype"] in (f"INT{mvau['acc_bits_exact']}", f"UINT{mvau['acc_bits_exact'] - 1}")
    assert summary["finn_check"]["passed"]


def test_corrupt_checkpoint_is_a_clear_error(roots, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(FlowError, match="corrupt or not a checkpoint"):
        run_build(roots, acc_bits=16, checkpoint=str(bad))


def test_checkpoint_of_another_configuration_is_refused(roots):
    with pytest.raises(FlowError, match="acc_bits: checkpoint 12 vs requested 16"):
        run_build(roots, acc_bits=16, checkpoint=str(roots["checkpoint_root"] / "linear_a2q_P12.pt"))


def test_corrupt_onnx_is_a_clear_error(roots, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(FlowError, match="not a readable ONNX model"):
        run_build(roots, onnx=str(bad), acc_bits=None, folding="linear_default")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "flow", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args,message",
    [
        (["build", "--model", "nosuch"], "unknown model 'nosuch'; valid: "),
        (["build", "--P", "3"], "P=3 is out of range for model 'linear'"),
        (["build", "--P", "abc"], "P must be an integer number of bits"),
        (["build", "--quant", "a3q"], "unknown quantizer 'a3q'; valid: baseline, a2q, a2q+"),
        (["build", "--board", "zedboard"], "unknown board 'zedboard'; valid: "),
        (["build", "--folding", "nosuch"], "unknown folding 'nosuch'"),
        (["build", "--data", "/nonexistent/mnist", "--P", "13"], "data set folder /nonexistent/mnist does not exist"),
    ],
)
def test_cli_bad_input_fails_fast_without_traceback(args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bitfile_build_without_vivado_stops_after_the_estimates(roots):
    from flow.finn.env import missing_xilinx_tools

    if not missing_xilinx_tools():
        pytest.skip("the Xilinx tools are installed here")
    with pytest.raises(FlowError, match=r"(?s)OUTPUTS=bitfile needs the Xilinx tools.*lacks: vivado") as err:
        run_build(roots, acc_bits=16, outputs="bitfile", synth=False, rtlsim=False)
    report = roots["reports_root"] / "linear_P16_a2q_pynq-z2"
    assert str(report / "summary.json") in str(err.value)
    assert json.loads((report / "summary.json").read_text())["finn_check"]["passed"]


def test_pynq_driver_packing_round_trips_the_finn_datatypes(roots):
    """The deployment folder's driver settings, with the real driver's packing (finn-plus-driver):
    inputs and FINN's Python-execution outputs pack to the declared shapes and unpack unchanged."""
    from finn.util.data_packing import finnpy_to_packed_bytearray as finn_pack
    from finn_plus_driver.packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from flow.build import python_executable_copy

    work = roots["work_root"] / "linear_P16_a2q_pynq-z2"
    if not (work / "deploy").is_dir():
        run_build(roots, acc_bits=16)
    deploy = work / "deploy"
    shapes = json.loads((deploy / "driver" / "settings.json").read_text())["driver_information"]["io_shape_dict"]
    inputs = np.load(deploy / "validation" / "input.npy")
    expected = np.load(deploy / "validation" / "expected_output.npy")
    assert len(inputs) == len(expected) >= 1
    final = python_executable_copy(ModelWrapper(str(work / "finn" / "intermediate_models" / "step_generate_estimate_reports.onnx")))
    for x, y in zip(inputs, expected):
        produced = execute_onnx(final, {final.graph.input[0].name: x})[final.graph.output[0].name]
        assert np.array_equal(produced, y)
        for value, kind in ((x, "i"), (y, "o")):
            dtype = DataType[shapes[f"{kind}dt"][0]]
            folded_shape = shapes[f"{kind}shape_folded"][0]
            folded = value.reshape(folded_shape)
            packed = finnpy_to_packed_bytearray(folded, dtype, reverse_endian=True, reverse_inner=True)
            assert list(packed.shape) == shapes[f"{kind}shape_packed"][0]
            assert np.array_equal(packed, finn_pack(folded, dtype, reverse_endian=True, reverse_inner=True))
            unpacked = packed_bytearray_to_finnpy(packed, dtype, folded_shape, reverse_endian=True, reverse_inner=True)
            assert np.array_equal(unpacked, folded)
    assert shapes["idt"] == ["BINARY"] and shapes["ishape_normal"] == [[1, 784]]
    assert (deploy / "validate.py").is_file() and "no Vivado" in (deploy / "README.md").read_text()
