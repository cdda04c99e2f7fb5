"""Accumulator-aware post-training quantization (QUANT=axe-gptq / axe-gpfq): a float model quantized at a P
its plainly rounded weights would overflow, with the export's certificate holding and FINN's check passing."""

import pytest

from flow.core.accumulator import exact_acc_bits
from flow.core.errors import FlowError
from flow.options import BuildOptions, resolve_plan
from flow.pipeline import build, ensure_checkpoint, load_float_init, make_model, sample_inputs
from models.calibration import calibrate_statistics
from models.inspect import capture_quant_layers

P = 12


@pytest.fixture(scope="module")
def float_checkpoint(tmp_path_factory, fashion_mnist):
    roots = tmp_path_factory.mktemp("axe")
    plan = resolve_plan(BuildOptions(quantizer="float", epochs=1, max_steps_per_epoch=30, checkpoint_root=roots / "c",
                                     reports_root=roots / "r", work_root=roots / "w"), training=True)
    path, metrics = ensure_checkpoint(plan, train=True)
    assert metrics["test_top1"] > 0.6
    return roots, path


def test_plainly_rounded_float_weights_would_overflow_p(float_checkpoint):
    roots, path = float_checkpoint
    plan = resolve_plan(BuildOptions(quantizer="baseline", reports_root=roots / "r", work_root=roots / "w",
                                     checkpoint_root=roots / "c"))
    model = make_model(plan)
    load_float_init(model, path)
    calibrate_statistics(model, sample_inputs(plan, 256, "train"))
    (fc,) = capture_quant_layers(model, sample_inputs(plan, 1)).values()
    assert exact_acc_bits(fc["weights_int"], 1, False) > P  # what AXE must avoid at P


@pytest.mark.parametrize("algorithm", ["axe-gptq", "axe-gpfq"])
def test_axe_at_a_binding_p_passes_the_certificate_and_finn(float_checkpoint, algorithm):
    roots, path = float_checkpoint
    opts = BuildOptions(quantizer=algorithm, acc_bits=P, init_checkpoint=str(path), synth=False, rtlsim=False,
                        reports_root=roots / "r", work_root=roots / "w", checkpoint_root=roots / "c")
    summary = build(opts)
    (mvau,) = [layer for layer in summary["layers"] if layer["op_type"].startswith("MVAU")]
    assert mvau["quantizer"] == algorithm and mvau["acc_bits_target"] == P and mvau["acc_bits_datatype_bound"] == 19
    assert mvau["acc_bits_exact"] <= P and mvau["acc_datatype"] == f"INT{mvau['acc_bits_exact']}"
    assert summary["export_check"]["l1_bound_ok"] and summary["export_check"]["weights_exact"]
    assert summary["finn_check"]["passed"] and summary["finn_check"]["mismatches"] == 0
    # a 12-bit budget over 784 inputs leaves about 2.6 per 8-bit weight: far from float, far above chance (10 %)
    assert summary["test_top1"] > 0.25 and summary["quantizer"] == algorithm
    assert "axe" in summary["build"]


def test_axe_without_a_float_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(FlowError, match="axe-gptq quantizes a trained float model without retraining"):
        resolve_plan(BuildOptions(quantizer="axe-gptq", reports_root=tmp_path, work_root=tmp_path,
                                  checkpoint_root=tmp_path))
