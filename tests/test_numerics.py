"""Comparing two evaluations of one quantized network: exact up to rounding-tie flips, on every machine."""

import numpy as np
import pytest
import torch

from flow.core.numerics import TIE_FLIP_FRACTION, compare_quantized
from flow.export import export_qonnx_exact


def test_equal_outputs_pass_and_report_nothing():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) * 0.25
    result = compare_quantized(x, x.copy(), 0.25)
    assert result.passed and result.mismatches == 0 and result.max_abs_diff == 0.0


def test_a_few_one_step_flips_pass_and_are_counted():
    expected = np.zeros(4000)
    produced = expected.copy()
    produced[[5, 17, 300]] += 0.5  # three one-step differences (step 0.5), within 1e-3 of 4000 elements
    result = compare_quantized(produced, expected, 0.5)
    assert result.passed and result.one_step_diffs == result.mismatches == 3 and result.allowed_one_step_diffs == 4


def test_a_small_output_may_meet_one_tie_but_not_two():
    # 8 samples x 10 logits: one element one step off (a float-order rounding tie) passes, two do not
    expected = np.zeros((8, 10))
    produced = expected.copy()
    produced[3, 7] += 0.5
    result = compare_quantized(produced, expected, 0.5)
    assert result.passed and result.allowed_one_step_diffs == 1
    produced[5, 1] -= 0.5
    assert not compare_quantized(produced, expected, 0.5).passed


@pytest.mark.parametrize("change,why", [
    (lambda y: y.__setitem__(0, y[0] + 1.0), "two steps"),
    (lambda y: y.__setitem__(slice(0, 5), y[:5] + 0.5), "more flips than rounding ties explain"),
    (lambda y: y.__setitem__(0, y[0] + 0.2), "off the quantizer's grid"),
])
def test_real_differences_fail(change, why):
    expected = np.zeros(4000)
    produced = expected.copy()
    change(produced)
    assert not compare_quantized(produced, expected, 0.5).passed, why
    assert int(TIE_FLIP_FRACTION * 4000) == 4


def test_float_outputs_use_a_relative_tolerance():
    expected = np.linspace(-3, 3, 50)
    assert compare_quantized(expected + 1e-5, expected, None).passed
    assert not compare_quantized(expected + 1e-2, expected, None).passed


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unet_export_check_holds_for_every_seed_and_thread_count(seed, threads, tmp_path):
    """The export check compares in output steps against the float64 evaluation, so float32 summation order
    (thread count, SIMD) cannot fail a correct export of the UNet, which has rounding ties at its 8-bit output."""
    from models.a2q_init import init_for_a2q
    from models.calibration import calibrate_statistics, center_output_level
    from models.unet import build_unet

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = build_unet("a2q", 16, width=1 / 8)
        images = torch.rand(48, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
        init_for_a2q(model, images[:2])
        calibrate_statistics(model, images)
        center_output_level(model, images)
        sidecar = export_qonnx_exact(model, images[:1], tmp_path / "unet.onnx", check_inputs=images[:4])
    finally:
        torch.set_num_threads(previous)
    assert sidecar.export_check.weights_exact and sidecar.export_check.max_abs_diff <= 1 / 255 + 1e-6
