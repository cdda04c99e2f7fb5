"""SetA2QAccumulatorWidth and step_a2q_accumulators on hand-made FINN MVAU graphs whose answer is known."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from flow.artifacts import PROP_ACC_MODE, PROP_ACCUMULATORS, PROP_SIDECAR, LayerRecord, Sidecar
from flow.core.accumulator import weight_fingerprint
from flow.core.errors import FlowError
from flow.finn.steps import step_a2q_accumulators
from flow.finn.transformations import SetA2QAccumulatorWidth, is_dot_product_layer, layer_weights_by_channel

# Two output channels, K=4, inputs UINT2 in [0, 3]:
#   channel 0 = [3, -2, 1, 0]: partial sums within [-2*3, (3+1)*3] = [-6, 12]
#   channel 1 = [-5, 4, 0, 2]: partial sums within [-5*3, (4+2)*3] = [-15, 18]
# The layer needs a signed range [-15, 18]: 6 bits (INT6).
WEIGHTS_BY_CHANNEL = np.array([[3, -2, 1, 0], [-5, 4, 0, 2]])


def make_mvau(weights_by_channel, input_dtype="UINT2", thresholds=None):
    mh, mw = weights_by_channel.shape
    inp = helper.make_tensor_value_info("inp", TensorProto.FLOAT, [1, mw])
    outp = helper.make_tensor_value_info("outp", TensorProto.FLOAT, [1, mh])
    inputs = ["inp", "weights"] + (["thresholds"] if thresholds is not None else [])
    node = helper.make_node(
        "MVAU", inputs, ["outp"], domain="finn.custom_op.fpgadataflow", backend="fpgadataflow", name="MVAU_0",
        MW=mw, MH=mh, SIMD=1, PE=1, inputDataType=input_dtype, weightDataType="INT8",
        outputDataType="INT32" if thresholds is None else "UINT2", accDataType="INT32",
        noActivation=1 if thresholds is None else 0, ActVal=0, binaryXnorMode=0,
    )
    model = ModelWrapper(qonnx_make_model(helper.make_graph([node], "mvau", [inp], [outp])))
    model.set_initializer("weights", weights_by_channel.T.astype(np.float32))
    model.set_tensor_datatype("inp", DataType[input_dtype])
    model.set_tensor_datatype("weights", DataType["INT8"])
    if thresholds is not None:
        model.set_initializer("thresholds", thresholds.astype(np.float32))
        model.set_tensor_datatype("thresholds", DataType["INT32"])
    return model


def record(name, weights, target):
    """A sidecar record for ``weights`` (channels, k) with UINT2 inputs and target P ``target``."""
    return LayerRecord(name=name, op="QuantLinear", k=weights.shape[1], channels=weights.shape[0], weight_bits=8,
                       input_bits=2, input_signed=False, quantizer="a2q", acc_bits_target=target, l1_bound=None,
                       weight_l1_norm_max=int(np.abs(weights).sum(axis=1).max()), l1_bound_ok=None,
                       acc_bits_datatype_bound=12, acc_bits_exact=6, zero_weights=False,
                       fingerprint=weight_fingerprint(weights))


def sidecar_layers(target):
    return [record("fc", WEIGHTS_BY_CHANNEL, target)]


def acc_dtype(model):
    return getCustomOp(model.graph.node[0]).get_nodeattr("accDataType")


def test_target_mode_writes_int_p():
    model = make_mvau(WEIGHTS_BY_CHANNEL).transform(SetA2QAccumulatorWidth(sidecar_layers(8), "target"))
    assert acc_dtype(model) == "INT8"
    assert getCustomOp(model.graph.node[0]).get_nodeattr("outputDataType") == "INT8"
    decision = json.loads(model.get_metadata_prop(PROP_ACCUMULATORS))["MVAU_0"]
    assert decision == {"layer": "fc", "acc_bits_target": 8, "acc_bits_exact": 6, "acc_range": [-15, 18],
                        "acc_datatype": "INT8", "acc_source": "target"}


def test_exact_mode_writes_exact_minimum_and_agrees_with_finn():
    from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth

    model = make_mvau(WEIGHTS_BY_CHANNEL).transform(SetA2QAccumulatorWidth(sidecar_layers(8), "exact"))
    assert acc_dtype(model) == "INT6"
    finn_model = make_mvau(WEIGHTS_BY_CHANNEL)
    finn_model.graph.node.append(helper.make_node("Identity", ["outp"], ["after"]))  # not the last node
    finn_model = finn_model.transform(MinimizeAccumulatorWidth())
    assert acc_dtype(finn_model) == "INT6"


def test_without_metadata_the_exact_minimum_is_used():
    model = make_mvau(WEIGHTS_BY_CHANNEL).transform(SetA2QAccumulatorWidth([], "target"))
    assert acc_dtype(model) == "INT6"


@pytest.mark.parametrize("mode", ["target", "exact"])
def test_target_too_small_for_the_weights_is_an_error_naming_the_layer(mode):
    with pytest.raises(FlowError, match=r"MVAU_0 \(fc\).*6-bit accumulator.*P=5"):
        make_mvau(WEIGHTS_BY_CHANNEL).transform(SetA2QAccumulatorWidth(sidecar_layers(5), mode))


@pytest.mark.parametrize("mode", ["target", "exact"])
def test_target_equal_to_the_exact_minimum_is_accepted(mode):
    # the boundary: the weights need exactly 6 bits, so P=6 holds and P=5 (above) does not
    model = make_mvau(WEIGHTS_BY_CHANNEL).transform(SetA2QAccumulatorWidth(sidecar_layers(6), mode))
    assert acc_dtype(model) == "INT6"


def test_default_mode_is_exact():
    model = make_mvau(WEIGHTS_BY_CHANNEL).transform(SetA2QAccumulatorWidth(sidecar_layers(16)))
    assert acc_dtype(model) == "INT6"


def test_sidecar_record_matching_no_layer_stops_the_build():
    other = record("conv_elsewhere", np.array([[1, 2, 3, 4]]), 13)
    with pytest.raises(FlowError, match=r"1 sidecar record\(s\) match no MVAU/VVAU.*conv_elsewhere \(P=13\)"):
        make_mvau(WEIGHTS_BY_CHANNEL).transform(SetA2QAccumulatorWidth([*sidecar_layers(8), other], "exact"))
    # allowed explicitly: the matching layer keeps its target, the rest is built with exact widths
    model = make_mvau(WEIGHTS_BY_CHANNEL).transform(
        SetA2QAccumulatorWidth([*sidecar_layers(8), other], "target", allow_unmatched=True))
    assert acc_dtype(model) == "INT8"


def test_all_zero_weights_are_an_error_with_advice():
    with pytest.raises(FlowError, match="every weight is zero.*outside A2Q"):
        make_mvau(np.zeros((2, 4), dtype=int)).transform(SetA2QAccumulatorWidth([], "target"))


def test_unknown_mode():
    with pytest.raises(FlowError, match="valid: exact, target"):
        SetA2QAccumulatorWidth([], "widest")


def test_step_clips_thresholds_into_the_accumulator_range():
    thresholds = np.array([[-1e6, 0, 1e6], [-3, 5.5, 40]])
    model = make_mvau(WEIGHTS_BY_CHANNEL, thresholds=thresholds)
    model.set_metadata_prop(PROP_SIDECAR, Sidecar(layers=sidecar_layers(8)).to_json())
    model.set_metadata_prop(PROP_ACC_MODE, "target")
    model = step_a2q_accumulators(model, cfg=None)
    assert acc_dtype(model) == "INT8"
    clipped = model.get_initializer("thresholds")
    # rounded up to integers and clipped to [-128, 127 + 1]
    assert np.array_equal(clipped, np.array([[-128, 0, 128], [-3, 6, 40]], dtype=np.float32))
    assert model.get_tensor_datatype("thresholds").bitwidth() <= 9


def decisions_of(model):
    return json.loads(model.get_metadata_prop(PROP_ACCUMULATORS))


def test_written_type_reaches_the_output_tensor_and_the_decision_names_its_source():
    for mode, target, expected, source in (("exact", 8, "INT6", "exact"), ("target", 8, "INT8", "target"),
                                           ("target", None, "INT6", "exact")):
        layers = [record("fc", WEIGHTS_BY_CHANNEL, target)] if target else []
        model, _ = SetA2QAccumulatorWidth(layers, mode=mode).apply(make_mvau(WEIGHTS_BY_CHANNEL))
        assert model.get_tensor_datatype("outp") == DataType[expected], (mode, target)
        (decision,) = decisions_of(model).values()
        assert decision["acc_source"] == source and decision["acc_datatype"] == expected
        assert decision["layer"] == ("fc" if target else None) and decision["acc_range"] == [-15, 18]


def test_a_layer_after_another_kind_of_node_is_still_set():
    model = make_mvau(WEIGHTS_BY_CHANNEL)
    graph = model.graph
    first = helper.make_node("Identity", ["inp"], ["inp_copy"], name="Identity_0")
    graph.node[0].input[0] = "inp_copy"
    graph.node.insert(0, first)
    model.set_tensor_datatype("inp_copy", DataType["UINT2"])
    model, _ = SetA2QAccumulatorWidth(sidecar_layers(8)).apply(model)
    mvau = getCustomOp(model.get_nodes_by_op_type("MVAU")[0])
    assert list(decisions_of(model)) == ["MVAU_0"] and mvau.get_nodeattr("accDataType") == "INT6"


def test_non_negative_weights_with_unsigned_inputs_are_not_a_zero_layer():
    weights = np.array([[1, 2, 0, 3]])  # partial sums in [0, 18]: FINN names it UINT5
    model, _ = SetA2QAccumulatorWidth([]).apply(make_mvau(weights))
    assert acc_dtype(model) == "UINT5"


def test_the_layer_errors_say_what_happened_and_what_to_do():
    zero = np.zeros((2, 4), dtype=int)
    with pytest.raises(FlowError) as err:
        SetA2QAccumulatorWidth([record("fc", zero, 9)]).apply(make_mvau(zero))
    assert str(err.value) == ("layer MVAU_0 (fc): every weight is zero at P=9; the layer computes nothing. Raise P, "
                              "or keep this layer outside A2Q (8-bit baseline), as is usual for first and last layers")
    with pytest.raises(FlowError) as err:
        SetA2QAccumulatorWidth([]).apply(make_mvau(zero))
    assert str(err.value).startswith("layer MVAU_0: every weight is zero; the layer computes nothing.")
    with pytest.raises(FlowError) as err:
        SetA2QAccumulatorWidth(sidecar_layers(5)).apply(make_mvau(WEIGHTS_BY_CHANNEL))
    assert str(err.value) == ("layer MVAU_0 (fc): its integer weights need a 6-bit accumulator (range [-15, 18] for UINT2 "
                              "inputs) but it was trained for P=5; the A2Q guarantee does not hold for these weights "
                              "(were they exported with flow.export?)")
    other = np.array([[1, 1, 1, 1], [2, 2, 2, 2]])
    with pytest.raises(FlowError) as err:
        SetA2QAccumulatorWidth([record("a", other, 8), record("b", other * 3, 9)]).apply(make_mvau(WEIGHTS_BY_CHANNEL))
    assert err.value.option == "allow_unmatched_sidecar"
    assert str(err.value) == (
        "2 sidecar record(s) match no MVAU/VVAU of the graph: a (P=8), b (P=9). The graph's integer weights are not "
        "the ones the sidecar describes (was the ONNX file exported by another exporter, e.g. Brevitas's own, which "
        "rounds A2Q weights differently?). Re-export with flow.export, or allow it explicitly (allow_unmatched_sidecar) "
        "to build those layers with exact widths")


def test_the_unknown_mode_error_is_whole_and_names_the_option():
    with pytest.raises(FlowError) as err:
        SetA2QAccumulatorWidth([], "widest")
    assert str(err.value) == "unknown accumulator mode 'widest'; valid: exact, target" and err.value.option == "acc_mode"
    layer = SetA2QAccumulatorWidth()
    assert layer.layers == [] and layer.mode == "exact" and layer.allow_unmatched is False


@pytest.mark.parametrize(("op_type", "domain", "expected"), [
    ("MVAU", "finn.custom_op.fpgadataflow", True), ("MVAU_hls", "finn.custom_op.fpgadataflow.hls", True),
    ("VVAU_rtl", "finn.custom_op.fpgadataflow.rtl", True), ("MVAU", "qonnx.custom_op.general", False),
    ("Thresholding_hls", "finn.custom_op.fpgadataflow.hls", False), ("MVAUX", "finn.custom_op.fpgadataflow", False),
    ("MatMul", "", False)])
def test_dot_product_layers_are_finn_mvau_and_vvau_of_any_backend(op_type, domain, expected):
    assert is_dot_product_layer(helper.make_node(op_type, ["a"], ["b"], domain=domain)) is expected


def test_weights_by_channel_in_the_nodes_arithmetic():
    model = make_mvau(WEIGHTS_BY_CHANNEL)
    (node,) = model.graph.node
    np.testing.assert_array_equal(layer_weights_by_channel(model, node), WEIGHTS_BY_CHANNEL)
    assert layer_weights_by_channel(model, node).dtype == np.int64
    # XNOR mode stores bipolar weights as {0, 1}: the arithmetic is +-1
    bits = np.array([[1, 0, 0, 1], [0, 0, 1, 1]])
    xnor = make_mvau(bits)
    getCustomOp(xnor.graph.node[0]).set_nodeattr("binaryXnorMode", 1)
    np.testing.assert_array_equal(layer_weights_by_channel(xnor, xnor.graph.node[0]), 2 * bits - 1)
    # a VVAU holds (channels, 1, kh, kw)
    vvau = helper.make_node("VVAU", ["inp", "vweights"], ["outp"], domain="finn.custom_op.fpgadataflow",
                            backend="fpgadataflow", name="VVAU_0", Channels=2, Kernel=[2, 2], PE=1, SIMD=1,
                            inputDataType="UINT2", weightDataType="INT8", outputDataType="INT32", accDataType="INT32",
                            noActivation=1, ActVal=0, Dim=[1, 1])
    model.graph.node.append(vvau)
    model.set_initializer("vweights", np.arange(-4, 4, dtype=np.float32).reshape(2, 1, 2, 2))
    np.testing.assert_array_equal(layer_weights_by_channel(model, vvau), [[-4, -3, -2, -1], [0, 1, 2, 3]])
    assert layer_weights_by_channel(model, vvau).dtype == np.int64
    model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == "weights"))
    with pytest.raises(FlowError) as err:
        layer_weights_by_channel(model, node)
    assert str(err.value) == "layer MVAU_0: weights are not a constant initializer; A2Q needs the trained integers"


def test_a_float_input_is_refused_by_name_and_nothing_is_reported_as_modified():
    model = make_mvau(WEIGHTS_BY_CHANNEL)
    model, modified = SetA2QAccumulatorWidth(sidecar_layers(8)).apply(model)
    assert modified is False  # one pass sets every layer: qonnx's transform() must not loop
    model.set_tensor_datatype("inp", DataType["FLOAT32"])
    getCustomOp(model.graph.node[0]).set_nodeattr("inputDataType", "FLOAT32")
    with pytest.raises(FlowError) as err:
        SetA2QAccumulatorWidth(sidecar_layers(8)).apply(model)
    assert str(err.value) == "layer MVAU_0: input datatype FLOAT32 is not an integer type"
