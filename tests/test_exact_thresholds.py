"""Streamlining keeps every threshold exact: a pre-activation within one float32 ulp of its quantizer's rounding
point must land on the same side of the integer threshold as in the QONNX model (evaluated in float64).

The hand-made graph is what FINN's QONNX conversion makes of ``Linear -> BatchNorm -> ReLU -> Quant(4 bit)``
with integer weights: ``MatMul -> Mul(weight scale) -> BatchNormalization -> MultiThreshold -> Mul(scale)``.
Its parameters put, in every channel, one accumulator value a few float32 ulps below a rounding point of the
quantizer; float32 threshold arithmetic (FINN's conversion and absorption steps) puts some of them above.
"""

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.util.basic import qonnx_make_model

from flow.finn.rewrites import ExactQuantThresholds, graph_to_float64
from flow.finn.streamline import streamline_classifier

CHANNELS = 64
BITS = 4
EPS = 1e-5
INPUT_TYPE = "INT20"


def near_tie_graph(seed: int = 0):
    """The converted graph, its parameters and, per channel, the accumulator value just below a rounding point."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    scale = f32(rng.uniform(0.2, 0.6))  # activation quantizer step
    weight_scale = rng.uniform(1e-5, 4e-5, CHANNELS).astype(f32)
    gamma = rng.uniform(0.5, 1.5, CHANNELS).astype(f32)
    var = rng.uniform(0.5, 2.0, CHANNELS).astype(f32)
    mean = rng.uniform(-0.2, 0.2, CHANNELS).astype(f32)
    a = weight_scale.astype(np.float64) * gamma / np.sqrt(var.astype(np.float64) + EPS)
    acc = rng.integers(20000, 400000, CHANNELS)  # the accumulator value placed at the tie
    level = rng.integers(1, 2**BITS - 2, CHANNELS)  # pre(acc) sits just below scale * (level + 1/2)
    # beta such that pre(acc) = scale * (level + 1/2) - tiny, in exact arithmetic of the float32 parameters
    target = float(scale) * (level + 0.5)
    beta = (target - (acc * weight_scale.astype(np.float64) - mean) * gamma / np.sqrt(var.astype(np.float64) + EPS))
    beta = beta.astype(f32)
    for _ in range(8):  # nudge beta down one ulp at a time until the point is strictly below the tie
        pre = (acc * weight_scale.astype(np.float64) - mean) * gamma / np.sqrt(var.astype(np.float64) + EPS) + beta
        above = pre >= target
        if not above.any():
            break
        beta = np.where(above, np.nextafter(beta, f32(-np.inf)), beta)
    params = dict(scale=scale, weight_scale=weight_scale, gamma=gamma, var=var, mean=mean, beta=beta, a=a)

    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["acc"]),
        helper.make_node("Mul", ["acc", "ws"], ["scaled"]),
        helper.make_node("BatchNormalization", ["scaled", "gamma", "beta", "mean", "var"], ["bn"], epsilon=EPS),
        helper.make_node("MultiThreshold", ["bn", "thresholds"], ["q"], domain="qonnx.custom_op.general",
                         out_dtype=f"UINT{BITS}", data_layout="NC"),
        helper.make_node("Mul", ["q", "s"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "near_tie", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, CHANNELS])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, CHANNELS])])
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_initializer("w", np.eye(CHANNELS, dtype=f32))
    model.set_initializer("ws", weight_scale)
    for name in ("gamma", "beta", "mean", "var"):
        model.set_initializer(name, params[name])
    # the thresholds as FINN's conversion writes them: float32 rounding points
    points = (np.arange(2**BITS - 1, dtype=np.float64) + 0.5) * float(scale)
    model.set_initializer("thresholds", np.tile(points.astype(f32), (1, 1)))
    model.set_initializer("s", np.asarray(scale, dtype=f32))
    model.set_tensor_datatype("x", DataType[INPUT_TYPE])
    model.set_tensor_datatype("w", DataType["INT2"])
    return model, params, acc


def exact_levels(params, acc_values):
    """The quantizer's integer output in float64 (the QONNX reference): round-half-even, clipped."""
    pre = ((acc_values * params["weight_scale"].astype(np.float64) - params["mean"]) * params["gamma"]
           / np.sqrt(params["var"].astype(np.float64) + EPS) + params["beta"])
    return np.clip(np.round(np.maximum(pre, 0) / float(params["scale"])), 0, 2**BITS - 1)


def test_the_graph_has_a_near_tie_in_every_channel():
    """The construction: each channel's marked accumulator value is below its rounding point by about a float32
    ulp of the values that make up the pre-activation (float32 cannot tell which side it is on)."""
    _, params, acc = near_tie_graph()
    pre = ((acc * params["weight_scale"].astype(np.float64) - params["mean"]) * params["gamma"]
           / np.sqrt(params["var"].astype(np.float64) + EPS) + params["beta"])
    gap = np.round(pre / float(params["scale"]) + 0.5) * float(params["scale"]) - 0.5 * float(params["scale"]) - pre
    assert np.all(gap > 0)
    assert np.all(gap < 1e-5)  # a few float32 ulps of the terms (up to ~16 in magnitude: ulp 2e-6)


def test_exact_quant_thresholds_recomputes_the_rounding_points_in_float64():
    model, params, _ = near_tie_graph()
    model = graph_to_float64(model).transform(ExactQuantThresholds())
    thresholds = model.get_initializer("thresholds")
    assert thresholds.dtype == np.float64
    assert np.array_equal(thresholds, ((np.arange(2**BITS - 1) + 0.5) * float(params["scale"]))[None])


def test_thresholds_that_are_not_rounding_points_are_left_alone():
    model, _, _ = near_tie_graph()
    odd = np.array([[0.1, 0.7, 0.75] + list(range(1, 13))], dtype=np.float32)
    model.set_initializer("thresholds", odd)
    model = graph_to_float64(model).transform(ExactQuantThresholds())
    assert np.array_equal(model.get_initializer("thresholds"), odd.astype(np.float64))


def test_streamlined_thresholds_put_near_ties_on_the_exact_side():
    """Regression: the classifier streamlining (float32 before the fix) put some of these accumulator values
    on the wrong side of their integer thresholds: one output step off."""
    model, params, acc = near_tie_graph()
    streamlined = streamline_classifier(model, residual=False, depthwise=False)
    assert [node.op_type for node in streamlined.graph.node] == ["MatMul", "MultiThreshold", "Mul"]
    thresholds = streamlined.get_initializer(streamlined.graph.node[1].input[1])
    assert thresholds.dtype == np.float32 and np.array_equal(thresholds, np.round(thresholds))
    assert streamlined.get_tensor_datatype(streamlined.graph.input[0].name) == DataType[INPUT_TYPE]
    x = np.stack([acc - 1, acc, acc + 1]).astype(np.float32)  # W is the identity: the accumulator is x
    produced = execute_onnx(streamlined, {streamlined.graph.input[0].name: x})[streamlined.graph.output[0].name]
    levels = np.round(produced / params["scale"])  # the quantizer's integers
    expected = exact_levels(params, x.astype(np.float64))
    assert np.array_equal(levels, expected), f"{int(np.sum(levels != expected))} outputs off by a step"
