"""The linear classifier end to end: checkpoint -> exact export -> FINN -> summary; what makes builds
distinct; bad input answered in one line that changes nothing."""

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from flow.artifacts import Summary
from flow.core.errors import FlowError
from flow.options import BuildOptions, resolve_plan
from flow.pipeline import build, ensure_checkpoint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def roots(tmp_path_factory, fashion_mnist):
    root = tmp_path_factory.mktemp("build")
    roots = {"checkpoint_root": root / "ckpt", "reports_root": root / "reports", "work_root": root / "work"}
    for p in (12, 16):
        # a short real training run (20 steps) so the weights are trained, not random
        ensure_checkpoint(resolve_plan(BuildOptions(acc_bits=p, epochs=1, max_steps_per_epoch=20, **roots)))
    return roots


def run_build(roots, **kwargs) -> Summary:
    return build(BuildOptions(**{"epochs": 1, "max_steps_per_epoch": 20, **roots, **kwargs}))


def layers_of(summary, prefix):
    return [layer for layer in summary["layers"] if layer["op_type"].startswith(prefix)]


@pytest.fixture(scope="module")
def default_build(roots):
    """The default build (P=16, exact accumulators) with synthesis and RTL simulation of its RTL layers."""
    return run_build(roots, acc_bits=16)


def test_default_linear_build(roots, default_build):
    summary = default_build
    plan = resolve_plan(BuildOptions(acc_bits=16, epochs=1, max_steps_per_epoch=20, **roots))
    report = plan.report_dir
    assert report.name.startswith("linear_P16_a2q_pynq-z2-") and summary["build"] == report.name
    assert json.loads((report / "summary.json").read_text()) == summary.to_dict()
    markdown = (report / "summary.md").read_text()
    assert markdown.startswith("# linear — a2q P=16 on pynq-z2")
    # the 1-bit-input MVAU stays HLS: the report says its model figure is that of the RTL form, and what FINN says
    assert "P-aware resource model" in markdown and "1 of them are HLS layers in this build" in markdown
    assert (report / "finn_reports" / "estimate_layer_resources.json").is_file()
    assert summary["export_check"]["max_abs_diff"] < 1e-5 and summary["export_check"]["l1_bound_ok"]
    # the FINN graph's integer logits equal the QONNX logits / output step, every one of them
    check = summary["finn_check"]
    assert check["compared"] == "integer logits" and check["passed"] and check["mismatches"] == 0
    assert summary["weights"] == "trained" and 0.15 < summary["test_top1"] <= 1.0
    ops = [layer["op_type"] for layer in summary["layers"]]
    assert ops[-1].startswith("LabelSelect") and ops[0].startswith("MVAU")
    (mvau,) = layers_of(summary, "MVAU")
    assert (mvau["mw"], mvau["mh"], mvau["k"], mvau["input_bits"], mvau["weight_bits"]) == (784, 10, 784, 1, 8)
    # exact mode (the default): the smallest width the trained integers need, never above P
    assert mvau["acc_bits_target"] == 16 and mvau["acc_source"] == "exact" and summary["acc_mode"] == "exact"
    assert mvau["acc_bits_exact"] <= 16 and mvau["acc_datatype"] == f"INT{mvau['acc_bits_exact']}"
    assert mvau["acc_bits_datatype_bound"] == 19
    (thresholds,) = layers_of(summary, "Thresholding")
    # standalone thresholds read the accumulator; their values are clipped into its range
    assert thresholds["input_datatype"] == mvau["acc_datatype"]
    assert mvau["weight_memory_depth"] == 784 * 10 // (mvau["pe"] * mvau["simd"])
    assert thresholds["threshold_rows"] in (1, thresholds["mh"])
    assert int(thresholds["threshold_datatype"].replace("INT", "")) <= mvau["acc_bits_exact"] + 1
    assert thresholds["op_type"] == "Thresholding_rtl" and thresholds["resource_source"] == "open_synthesis"
    assert thresholds["lut_synth"] > 0 and thresholds["ff_synth"] > 0
    assert mvau["resource_source"] == "finn_estimate"  # 1-bit inputs: FINN has no RTL MVU for them
    assert summary["totals"]["lut_synth"] == thresholds["lut_synth"] + mvau["lut"]
    assert thresholds["rtlsim_check"]["samples"] == 8 and thresholds["rtlsim_check"]["samples_exact"] is True
    assert mvau["lut"] > 0 and mvau["cycles"] == 784 // mvau["simd"] * 10 // mvau["pe"]
    assert summary["totals"]["max_cycles"] == mvau["cycles"]
    assert summary["totals"]["fps_at_clock"] == pytest.approx(1e9 / 10.0 / mvau["cycles"])
    assert summary["board_fit"]["fits"] is True
    identity = summary["identity"]
    assert identity["data"]["path"] == str(Path("/usr/share/datasets/fashion-mnist").resolve())
    checkpoint = Path(identity["checkpoint"]["path"])
    assert identity["checkpoint"]["digest"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]


def test_target_mode_and_named_folding(roots):
    summary = run_build(roots, acc_bits=12, acc_mode="target", folding="linear_small", synth=False, rtlsim=False)
    (mvau,) = layers_of(summary, "MVAU")
    assert (mvau["pe"], mvau["simd"]) == (2, 4)
    assert mvau["acc_datatype"] == "INT12" and mvau["acc_source"] == "target" and mvau["acc_bits_exact"] <= 12
    assert "_linear_small-" in summary["build"] and (roots["reports_root"] / summary["build"] / "summary.json").is_file()


def test_onnx_without_sidecar_uses_the_exact_minimum(roots, default_build, tmp_path):
    exported = roots["work_root"] / default_build["build"] / "model.onnx"
    user_onnx = tmp_path / "user.onnx"
    user_onnx.write_bytes(exported.read_bytes())
    summary = run_build(roots, onnx=str(user_onnx), folding="linear_default", synth=False, rtlsim=False)
    assert summary["build"].startswith("user_exact_pynq-z2_linear_default-")  # P and quantizer: the file has none
    (mvau,) = layers_of(summary, "MVAU")
    assert mvau["acc_bits_target"] is None and mvau["acc_source"] == "exact"
    assert mvau["acc_datatype"] in (f"INT{mvau['acc_bits_exact']}", f"UINT{mvau['acc_bits_exact'] - 1}")
    assert summary["finn_check"]["passed"]


def test_onnx_with_sidecar_is_named_after_its_quantizer_and_p(roots, default_build, tmp_path):
    exported = roots["work_root"] / default_build["build"] / "model.onnx"
    for suffix in ("", ".a2q.json"):
        (tmp_path / f"mine.onnx{suffix}").write_bytes(Path(f"{exported}{suffix}").read_bytes())
    plan = resolve_plan(BuildOptions(onnx=str(tmp_path / "mine.onnx"), folding="linear_default", **roots))
    assert plan.tag.startswith("mine_P16_a2q_pynq-z2_linear_default-") and plan.acc_bits == 16


def test_every_setting_that_changes_the_result_gives_a_distinct_report(roots, tmp_path):
    base = BuildOptions(**roots)
    (tmp_path / "f.json").write_text(json.dumps({"Defaults": {}}))
    (tmp_path / "other.pt").write_bytes(b"a checkpoint's bytes")
    variants = [
        {}, {"target_fps": 5000}, {"acc_mode": "target"}, {"checkpoint": str(tmp_path / "other.pt")}, {"width": 0.5},
        {"weight_bits": 6}, {"synth": False}, {"folding": str(tmp_path / "f.json")}, {"seed": 1}, {"acc_bits": 15},
        {"board": "zcu104"}, {"quantizer": "a2q+"},
    ]
    tags = [resolve_plan(replace(base, **variant)).tag for variant in variants]
    assert len(set(tags)) == len(tags)
    assert resolve_plan(base).tag == resolve_plan(BuildOptions(**roots)).tag  # and equal settings: the same report


def test_data_set_is_part_of_the_checkpoint_and_the_report(roots, tmp_path):
    # a different MNIST-format data set (the first 200 Fashion-MNIST images, raw IDX files)
    from flow.training.data import read_idx

    source = Path("/usr/share/datasets/fashion-mnist")
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        array = read_idx(source / f"{stem}.gz")[:200]
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
        (tmp_path / stem).write_bytes(header + array.astype(np.uint8).tobytes())
    default = resolve_plan(BuildOptions(acc_bits=16, **roots))
    other = resolve_plan(BuildOptions(acc_bits=16, data=str(tmp_path), **roots))
    assert other.data.digest != default.data.digest and other.tag != default.tag
    from flow.pipeline import default_checkpoint

    assert default_checkpoint(other) != default_checkpoint(default)


def test_baseline_takes_no_p(roots):
    plan = resolve_plan(BuildOptions(quantizer="baseline", **roots))
    assert plan.acc_bits is None and "_P" not in plan.tag and plan.tag.startswith("linear_baseline_pynq-z2-")
    with pytest.raises(FlowError, match="baseline quantizer has no target accumulator width \\(P=12 given\\)"):
        resolve_plan(BuildOptions(quantizer="baseline", acc_bits=12, **roots))


def test_checkpoint_errors_leave_no_work_folder(roots, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(FlowError, match="corrupt or not a checkpoint"):
        run_build(roots, acc_bits=16, checkpoint=str(bad))
    plan = resolve_plan(BuildOptions(acc_bits=16, checkpoint=str(bad), epochs=1, max_steps_per_epoch=20, **roots))
    assert not plan.work_dir.exists()
    p12 = resolve_plan(BuildOptions(acc_bits=12, epochs=1, max_steps_per_epoch=20, **roots))
    from flow.pipeline import default_checkpoint

    with pytest.raises(FlowError, match="acc_bits: checkpoint 12 vs requested 16"):
        run_build(roots, acc_bits=16, checkpoint=str(default_checkpoint(p12)))


def test_corrupt_or_float_onnx_is_a_clear_error(roots, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(FlowError, match="not a readable ONNX model"):
        run_build(roots, onnx=str(bad), folding="linear_default")
    float_model = tmp_path / "float.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), torch.rand(1, 4), str(float_model), dynamo=False, opset_version=13)
    with pytest.raises(FlowError, match="has no quantization nodes .* not QONNX"):
        run_build(roots, onnx=str(float_model), folding="linear_default")


def test_folding_entries_must_name_layers_of_the_graph(roots, tmp_path):
    folding = tmp_path / "wrong.json"
    folding.write_text(json.dumps({"Defaults": {}, "MVAU_hls_99": {"PE": 2, "SIMD": 4}}))
    with pytest.raises(FlowError, match=r"entries \['MVAU_hls_99'\] name no layer of this graph; its layers: MVAU_hls_0"):
        run_build(roots, acc_bits=16, folding=str(folding), synth=False, rtlsim=False)
    folding.write_text(json.dumps({"MVAU_hls_0": {"PE": 2.5, "SIMD": 4}}))
    with pytest.raises(FlowError, match=r"MVAU_hls_0.PE must be a whole number >= 1, got 2.5"):
        run_build(roots, acc_bits=16, folding=str(folding), synth=False, rtlsim=False)


def test_a_running_build_holds_its_report_folder(roots):
    plan = resolve_plan(BuildOptions(acc_bits=16, epochs=1, max_steps_per_epoch=20, **roots))
    plan.report_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(plan.report_dir.parent / f".{plan.tag}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 4242 on a host since noon")
        lock.flush()
        with pytest.raises(FlowError, match=r"already running \(pid 4242 on a host since noon\)"):
            build(plan.options)


def test_a_failed_rebuild_leaves_no_summary_that_looks_valid(roots, default_build, monkeypatch):
    import flow.pipeline

    report = roots["reports_root"] / default_build["build"]
    assert (report / "summary.json").is_file()

    def fail(*args, **kwargs):
        raise FlowError("the FINN stage failed")

    monkeypatch.setattr(flow.pipeline, "finn_stage", fail)
    with pytest.raises(FlowError, match="the FINN stage failed"):
        run_build(roots, acc_bits=16)
    assert not (report / "summary.json").exists() and not (report / "summary.md").exists()
    assert Summary.read(report / "previous_summary.json").build == default_build["build"]  # set aside, not lost


def test_interrupt_in_a_finn_step_is_an_interrupt(roots, default_build, tmp_path):
    from flow.artifacts import Sidecar
    from flow.core.config import get_board
    from flow.finn.run import FinnRun, run_finn

    def step_interrupted(model, cfg):
        raise KeyboardInterrupt

    exported = roots["work_root"] / default_build["build"] / "model.onnx"
    run = FinnRun(board=get_board("pynq-z2"), folding=None, target_fps=1000, acc_mode="exact",
                  steps=("step_qonnx_to_finn", step_interrupted))
    with pytest.raises(KeyboardInterrupt):
        run_finn(exported, Sidecar.read(exported), run, tmp_path / "finn")


def test_bitfile_build_without_vivado_stops_after_the_estimates(roots):
    from flow.finn.env import missing_xilinx_tools

    if not missing_xilinx_tools():
        pytest.skip("the Xilinx tools are installed here")
    with pytest.raises(FlowError, match=r"(?s)outputs 'bitfile' need the Xilinx tools.*lacks: vivado") as err:
        run_build(roots, acc_bits=16, outputs="bitfile", synth=False, rtlsim=False)
    plan = resolve_plan(BuildOptions(acc_bits=16, outputs="bitfile", synth=False, rtlsim=False, epochs=1,
                                     max_steps_per_epoch=20, **roots))
    assert str(plan.report_dir / "summary.json") in str(err.value)
    assert json.loads((plan.report_dir / "summary.json").read_text())["finn_check"]["passed"]


def test_deployment_folder_validates_against_the_torch_model(roots, default_build):
    """The deployment's expected outputs agree with an independent computation (the trained torch model's
    labels for the same integer inputs), and validate.py's comparison counts a wrong output."""
    from finn.util.data_packing import finnpy_to_packed_bytearray as finn_pack
    from finn_plus_driver.packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
    from qonnx.core.datatype import DataType

    from flow.pipeline import make_model

    deploy = roots["work_root"] / default_build["build"] / "deploy"
    shapes = json.loads((deploy / "driver" / "settings.json").read_text())["driver_information"]["io_shape_dict"]
    inputs = np.load(deploy / "validation" / "input.npy")
    expected = np.load(deploy / "validation" / "expected_output.npy")
    assert shapes["idt"] == ["BINARY"] and shapes["ishape_normal"] == [[1, 784]] and len(inputs) == len(expected) == 8
    plan = resolve_plan(BuildOptions(acc_bits=16, epochs=1, max_steps_per_epoch=20, **roots))
    model = make_model(plan)
    model.load_state_dict(torch.load(default_build["identity"]["checkpoint"]["path"], weights_only=False)["state_dict"])
    with torch.no_grad():
        labels = model.eval()(torch.as_tensor(inputs.reshape(len(inputs), 784))).argmax(1).numpy()
    assert np.array_equal(expected.reshape(-1), labels)

    spec = importlib.util.spec_from_file_location("validate", deploy / "validate.py")
    validate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(validate)
    from flow.hw.deploy import BITFILE_PATTERNS

    assert validate.BITFILE_PATTERNS == BITFILE_PATTERNS  # the script looks for the bitfiles the flow copies
    table = dict(zip(map(bytes, inputs.astype(np.uint8)), expected))
    assert validate.count_mismatches(lambda x: table[bytes(x[0].astype(np.uint8))], inputs, expected) == 0
    wrong = expected.copy()
    wrong[3] = (wrong[3] + 1) % 10
    assert validate.count_mismatches(lambda x: table[bytes(x[0].astype(np.uint8))], inputs, wrong) == 1

    for value, kind in ((inputs[0], "i"), (expected[0], "o")):  # the board driver's packing of these shapes
        dtype, folded_shape = DataType[shapes[f"{kind}dt"][0]], shapes[f"{kind}shape_folded"][0]
        folded = value.reshape(folded_shape)
        packed = finnpy_to_packed_bytearray(folded, dtype, reverse_endian=True, reverse_inner=True)
        assert list(packed.shape) == shapes[f"{kind}shape_packed"][0]
        assert np.array_equal(packed, finn_pack(folded, dtype, reverse_endian=True, reverse_inner=True))
        assert np.array_equal(packed_bytearray_to_finnpy(packed, dtype, folded_shape, reverse_endian=True,
                                                         reverse_inner=True), folded)
    readme = (deploy / "README.md").read_text()
    assert "had no Xilinx tools" in readme and "On the board (PYNQ image)" in readme
    assert json.loads((deploy / "driver" / "settings.json").read_text())["driver_information"]["platform"] == "zynq-iodma"


def test_zoo_fit_reads_back_the_default_build_and_reports_its_board_fit(roots, tmp_path):
    """`make zoo-fit` judges each model's default build by the build's own fit check; a finished build with
    the same inputs is read back, not rebuilt."""
    from flow.experiments.zoo_fit import run_zoo_fit

    default_build = run_build(roots, acc_bits=16)  # as it is now: other tests of this module rebuild its folder
    messages = []
    template = BuildOptions(epochs=1, max_steps_per_epoch=20, **roots)
    (fit,) = run_zoo_fit(["linear"], tmp_path / "zoo", template=template, log=messages.append)
    assert any("reusing" in m for m in messages)
    assert fit.build == default_build["build"] and fit.board == "pynq-z2" and fit.acc_bits == 16
    board_fit = default_build["board_fit"]
    assert (fit.fits, fit.source, fit.utilization) == (board_fit["fits"], board_fit["source"], board_fit["utilization"])
    # the linear default synthesizes its RTL thresholds; its 1-bit-input MVAU stays HLS (FINN's estimate)
    assert fit.source == "open_synthesis+finn_estimate" and fit.fits
    table = (tmp_path / "zoo" / "zoo_fit.md").read_text()
    assert f"| linear | pynq-z2 | linear_default | 16 | yes | {100 * board_fit['utilization']['lut']:.1f} % |" in table
    assert "Every zoo model's default build fits" in table
    assert json.loads((tmp_path / "zoo" / "zoo_fit.json").read_text())[0]["build"] == fit.build


def test_summary_json_matches_the_documented_schema(default_build):
    """Every field the README documents for summary.json is in a real summary, and every field there is documented."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("* `summary.json`", 1)[1].split("```", 2)[1]
    block = re.sub(r"\([^)]*\)", "", block)  # remarks in parentheses
    documented = set(re.findall(r"([A-Za-z_]\w*)\s*(?=[,:{}\]\n|])", block)) - {"null"}
    summary = default_build.to_dict()
    present = set(summary) | set(summary["totals"]) | set(summary["layers"][0]) | set(summary["finn_check"]) \
        | set(summary["export_check"]) | set(summary["board_fit"]) | set(summary["board_fit"]["utilization"]) \
        | set(summary["identity"]) \
        | set(summary["identity"]["data"]) | set(summary["identity"]["checkpoint"])
    for layer in summary["layers"]:
        if layer["rtlsim_check"]:
            present |= set(layer["rtlsim_check"])
    assert not {name for name in present if name not in documented and not name.endswith("_vivado")} - {"fmax_mhz", "wns_ns"}
    missing = {name for name in documented if name not in present}
    # fields that only a bitfile build or an MVAU RTL simulation has
    # (and a board fit's FF, which only synthesis or Vivado give; a layer's synthesis_error)
    assert missing <= {"lut_vivado", "ff_vivado", "bram18_vivado", "dsp_vivado", "wns_ns", "fmax_mhz", "acc_bits",
                       "exact_at_p", "overflow_detected_at_p_minus_1", "ff", "synthesis_error"}


def cli(cwd, *args, env=None):
    # `make test` exports A2Q_FLOW_VIA_MAKE: a direct call must not inherit it
    inherited = {k: v for k, v in os.environ.items() if k != "A2Q_FLOW_VIA_MAKE"}
    environment = {**inherited, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "flow", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=environment)


def tree_digest(folder: Path) -> str:
    digest = hashlib.md5()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize(
    "args,message",
    [
        (["build", "--model", "nosuch"], "unknown model 'nosuch'; valid: "),
        (["build", "--P", "3"], "P=3 is out of range: with 8-bit weights and 1-bit unsigned inputs"),
        (["build", "--model", "resnet18", "--weight-bits", "2", "--P", "4"], "with 2-bit weights and 4-bit unsigned"),
        (["build", "--P", "abc"], "argument --P/--acc-bits: expected a whole number, got 'abc'"),
        (["build", "--quant", "a3q"], "unknown quantizer 'a3q'; valid: baseline, a2q, a2q+"),
        (["build", "--quant", "baseline", "--P", "12"], "baseline quantizer has no target accumulator width"),
        (["build", "--board", "zedboard"], "unknown board 'zedboard'; valid: "),
        (["build", "--folding", "nosuch"], "unknown folding 'nosuch'"),
        (["build", "--data", "/nonexistent/mnist", "--P", "13"], "data set folder /nonexistent/mnist does not exist"),
        (["build", "--fps", "0"], "target throughput (frames per second) must be a positive whole number, got 0"),
        (["build", "--fps", "-5"], "must be a positive whole number, got -5"),
        (["build", "--width", "0"], "width multiplier must be in (0, 4], got 0.0"),
        (["build", "--width", "-1"], "width multiplier must be in (0, 4], got -1.0"),
        (["build", "--device", "foo"], "unknown torch device 'foo'"),
        (["build", "--synth", "maybe"], "expected one of 1/yes/true/on or 0/no/false/off, got 'maybe'"),
        (["build", "--acc-mode", "widest"], "unknown accumulator mode 'widest'; valid: exact, target"),
        (["build", "--outputs", "asic"], "unknown outputs 'asic'; valid: estimates, bitfile"),
        (["sweep", "--ps", "15", "3"], "P=3 is out of range"),
        (["compare", "nowhere"], "report path nowhere is neither a folder nor a summary.json"),
    ],
)
def test_cli_bad_input_is_one_line_and_changes_nothing(args, message, tmp_path, monkeypatch, capsys):
    from flow.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "hw_reports").mkdir()
    before = tree_digest(tmp_path)
    assert main(args) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert tree_digest(tmp_path) == before and not (tmp_path / "checkpoints").exists() and not (tmp_path / "build").exists()


def test_the_command_line_process_exits_2_with_one_line(tmp_path):
    direct = cli(tmp_path, "build", "--fps", "0")
    via_make = cli(tmp_path, "build", "--fps", "0", env={"A2Q_FLOW_VIA_MAKE": "1"})
    assert direct.returncode == via_make.returncode == 2 and "Traceback" not in direct.stderr
    assert direct.stderr.strip().splitlines() == ["error: the target throughput (frames per second) must be a positive "
                                                  "whole number, got 0 [--fps]"]
    assert via_make.stderr.strip().endswith("[FPS=]")


def test_compare_refuses_a_summary_that_is_not_one(tmp_path, monkeypatch, capsys):
    from flow.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "summary.json").write_text("[]")
    assert main(["compare", "x"]) == 2
    assert "does not hold a build summary (a JSON object); got list" in capsys.readouterr().err
