"""IntegerInputFromQuant: the graph input becomes the integer its input quantizer produces, on hand-made
QONNX graphs executed by qonnx before and after the rewrite."""

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.util.basic import qonnx_make_model

from flow.artifacts import PROP_INPUT_SCALE
from flow.finn.transformations import IntegerInputFromQuant, graph_input_scale, to_graph_input

X = np.array([[-1.0, 0.3, 3.9, 10.0]], dtype=np.float32)


def quant_graph(scale, bits=4, signed=1, zero_point=0.0, op="Quant", first="quant"):
    """x (1, 4) -> [op](x) -> q -> Add(q, q) -> y; with ``first="relu"`` a Relu reads x before the quantizer."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    source = "x"
    nodes = []
    if first == "relu":
        nodes.append(helper.make_node("Relu", ["x"], ["x_relu"]))
        source = "x_relu"
    if op == "Quant":
        attrs = {} if signed is None else {"signed": signed}
        nodes.append(helper.make_node("Quant", [source, "scale", "zero_point", "bit_width"], ["q"],
                                      domain="qonnx.custom_op.general", narrow=0, rounding_mode="ROUND", **attrs))
    else:
        nodes.append(helper.make_node("BipolarQuant", [source, "scale"], ["q"], domain="qonnx.custom_op.general"))
    nodes.append(helper.make_node("Add", ["q", "q"], ["y"]))
    model = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "g", [x], [y])))
    for name in ("q", source):
        model.set_tensor_shape(name, [1, 4])
    model.set_initializer("scale", np.asarray(scale, dtype=np.float32))
    if op == "Quant":
        model.set_initializer("zero_point", np.asarray(zero_point, dtype=np.float32))
        if bits is not None:
            model.set_initializer("bit_width", np.asarray(bits, dtype=np.float32))
    return model


def run(model, x):
    return execute_onnx(model, {"x": x})["y"]


def test_an_unsigned_quantizer_with_a_scale_becomes_an_integer_input_and_a_mul():
    model = quant_graph(0.25, bits=4, signed=0)
    expected = run(model, X)
    rewritten, modified = IntegerInputFromQuant().apply(model)
    assert modified is False
    assert rewritten.get_tensor_datatype("x") == DataType["UINT4"]
    assert [node.op_type for node in rewritten.graph.node] == ["Mul", "Add"]
    mul = rewritten.graph.node[0]
    assert mul.input[0] == "x" and mul.output[0] == "q" and float(rewritten.get_initializer(mul.input[1])) == 0.25
    assert rewritten.get_tensor_datatype("q") == DataType["FLOAT32"]
    assert rewritten.get_metadata_prop(PROP_INPUT_SCALE) == "0.25" and graph_input_scale(rewritten) == 0.25
    x_int = to_graph_input(rewritten, X)
    assert x_int.dtype == np.float32 and x_int.tolist() == [[0.0, 1.0, 15.0, 15.0]]  # round(x / 0.25), clipped to UINT4
    np.testing.assert_array_equal(run(rewritten, x_int), expected)


def test_a_unit_scale_quantizer_is_removed_and_every_reader_takes_the_input():
    model = quant_graph(1.0, bits=3, signed=1)
    expected = run(model, X)
    rewritten, _ = IntegerInputFromQuant().apply(model)
    assert [node.op_type for node in rewritten.graph.node] == ["Add"]
    assert list(rewritten.graph.node[0].input) == ["x", "x"]
    assert rewritten.get_tensor_datatype("x") == DataType["INT3"] and graph_input_scale(rewritten) == 1.0
    assert rewritten.get_metadata_prop(PROP_INPUT_SCALE) == "1.0"
    x_int = to_graph_input(rewritten, X)
    assert x_int.tolist() == [[-1.0, 0.0, 3.0, 3.0]]  # INT3 holds [-4, 3]
    np.testing.assert_array_equal(run(rewritten, x_int), expected)


@pytest.mark.parametrize(("bits", "signed", "dtype"), [(1, 0, "BINARY"), (8, 1, "INT8"), (2, 0, "UINT2"), (5, None, "INT5")])
def test_the_input_datatype_follows_bits_and_sign(bits, signed, dtype):
    rewritten, _ = IntegerInputFromQuant().apply(quant_graph(0.5, bits=bits, signed=signed))
    assert rewritten.get_tensor_datatype("x") == DataType[dtype]  # no `signed` attribute: signed, as in QONNX


def test_a_bipolar_input_is_read_as_0_1_only_when_asked():
    untouched, _ = IntegerInputFromQuant().apply(quant_graph(1.0, op="BipolarQuant"))
    assert [node.op_type for node in untouched.graph.node] == ["BipolarQuant", "Add"]
    assert untouched.get_metadata_prop(PROP_INPUT_SCALE) is None and graph_input_scale(untouched) == 1.0
    rewritten, _ = IntegerInputFromQuant(unsigned_binary=True).apply(quant_graph(1.0, op="BipolarQuant"))
    assert [node.op_type for node in rewritten.graph.node] == ["Add"]
    assert rewritten.get_tensor_datatype("x") == DataType["BINARY"]
    assert to_graph_input(rewritten, np.array([[-0.4, 0.4, 0.6, 2.0]])).tolist() == [[0.0, 0.0, 1.0, 1.0]]


@pytest.mark.parametrize("model", [
    quant_graph(2.0, op="BipolarQuant"),  # a bipolar quantizer with a scale is not a {0, 1} input
    quant_graph(0.5, zero_point=1.0),  # a zero point is not an integer input
    quant_graph([0.5, 0.25]),  # per-element scales
    quant_graph(0.0),
    quant_graph(-0.5),
    quant_graph(0.5, first="relu"),  # the input's reader is not a quantizer
    quant_graph(0.5, bits=None),  # a bit width computed in the graph, not a constant
], ids=["scaled-bipolar", "zero-point", "vector-scale", "zero-scale", "negative-scale", "not-a-quantizer",
        "dynamic-bit-width"])
def test_graphs_it_cannot_rewrite_are_left_as_they_are(model):
    before = model.model.SerializeToString()
    after, modified = IntegerInputFromQuant(unsigned_binary=True).apply(model)
    assert modified is False and after.model.SerializeToString() == before
    assert to_graph_input(after, X).tolist() == X.tolist()  # a float input passes through as float32
