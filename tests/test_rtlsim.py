"""Verilator simulation of FINN's generated RTL against FINN's Python execution.

Each distinct HDL is compiled once (about 15 s on 2 cores); further runs take well under 1 s.
"""

import copy
import warnings

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from flow.core.accumulator import exact_acc_bits
from flow.hw.rtlsim import RtlAssertionWarning, adversarial_inputs, rtlsim_node
from flow.hw.synth import make_mvau_model, make_thresholding_model

PART = "xc7z020clg400-1"


def python_reference(model):
    """Copy of ``model`` whose _rtl/_hls nodes are the HW-abstract ops that execute in Python."""
    reference = ModelWrapper(copy.deepcopy(model.model))
    for node in reference.graph.node:
        if node.domain.startswith("finn.custom_op.fpgadataflow."):
            node.op_type = node.op_type.removesuffix("_rtl").removesuffix("_hls")
            node.domain = "finn.custom_op.fpgadataflow"
    return reference


def run_python(model, x):
    reference = python_reference(model)
    name_in, name_out = reference.graph.input[0].name, reference.graph.output[0].name
    return execute_onnx(reference, {name_in: x.astype(np.float32)})[name_out]


# signed (INT4) inputs in the slow run only, for CI time; unsigned inputs stay in the fast run
@pytest.mark.parametrize("input_dtype", [pytest.param("INT4", marks=pytest.mark.slow), "UINT4"])
def test_mvau_rtl_matches_python_execution(tmp_path, input_dtype):
    rng = np.random.default_rng(2)
    weights = rng.integers(-7, 8, size=(64, 16))
    model = make_mvau_model(weights, input_dtype, "INT4", "INT16", pe=4, simd=8, fpgapart=PART,
                            num_input_vectors=(8,))  # fmt: skip
    node = model.graph.node[0]
    assert node.op_type == "MVAU_rtl"
    low, high = (-8, 8) if input_dtype == "INT4" else (0, 16)
    x = rng.integers(low, high, size=(8, 64)).astype(np.float32)
    expected = run_python(model, x)
    simulated = rtlsim_node(model, node, x, tmp_path)
    assert simulated.shape == expected.shape == (8, 16)
    np.testing.assert_array_equal(simulated, expected)


def test_thresholding_rtl_matches_python_execution(tmp_path):
    rng = np.random.default_rng(3)
    thresholds = np.sort(rng.integers(-2000, 2000, size=(16, 7)), axis=1)
    model = make_thresholding_model(thresholds, "INT12", output_dtype="UINT3", pe=4, fpgapart=PART,
                                    num_input_vectors=(1, 3, 3))  # fmt: skip
    node = model.graph.node[0]
    assert node.op_type == "Thresholding_rtl"
    x = rng.integers(-2048, 2048, size=(1, 3, 3, 16)).astype(np.float32)
    x[0, 0, 0, :] = thresholds[:, 3]  # exactly on a threshold: counts as reached
    expected = run_python(model, x)
    simulated = rtlsim_node(model, node, x, tmp_path)
    assert simulated.shape == expected.shape == (1, 3, 3, 16)
    np.testing.assert_array_equal(simulated, expected)


def test_adversarial_inputs_reach_accumulator_extremes():
    weights = np.array([[3, -2], [0, 5], [-7, 0]])  # (MW=3, MH=2)
    vectors = adversarial_inputs(weights, "INT4")
    assert vectors.shape == (4, 3)
    np.testing.assert_array_equal(vectors[0], [7, 0, -8])
    np.testing.assert_array_equal(vectors[1], [-8, 0, 7])
    sums = vectors @ weights
    assert sums[0, 0] == 3 * 7 + 7 * 8 and sums[1, 0] == -(3 * 8) - 7 * 7
    np.testing.assert_array_equal(adversarial_inputs(weights.T, "INT4", layout="channels_k"), vectors)


# slow-only: tests/test_guarantee_rtl.py checks the same (exact at P, wrong at P - 1) on every MVAU of a build
@pytest.mark.slow
def test_accumulator_width_p_exact_and_p_minus_1_overflows(tmp_path):
    rng = np.random.default_rng(4)
    weights = rng.integers(-7, 8, size=(64, 16))
    acc_bits = exact_acc_bits(weights.T, 4, True)
    model = make_mvau_model(weights, "INT4", "INT4", f"INT{acc_bits}", pe=4, simd=8, fpgapart=PART)
    node = model.graph.node[0]
    x = adversarial_inputs(weights, "INT4")
    exact = x.astype(np.int64) @ weights

    at_p = rtlsim_node(model, node, x, tmp_path, acc_bits=acc_bits)
    np.testing.assert_array_equal(at_p, exact)

    # FINN's MVU may also report "Accumulation overflow" (an RTL assertion, some lanes only)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RtlAssertionWarning)
        narrower = rtlsim_node(model, node, x, tmp_path, acc_bits=acc_bits - 1)
    assert np.any(narrower != exact)
    # what is wrong is exactly the wrap-around into acc_bits - 1 bits
    half = 2 ** (acc_bits - 2)
    np.testing.assert_array_equal(narrower, (exact + half) % (2 * half) - half)
