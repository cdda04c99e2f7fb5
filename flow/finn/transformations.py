"""Graph rewrites of the flow, each a qonnx ``Transformation`` with ``apply(model) -> (model, modified)``."""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from flow.artifacts import PROP_ACCUMULATORS, PROP_INPUT_SCALE, AccumulatorDecision, LayerRecord, decisions_to_json
from flow.core import accumulator as acc
from flow.core.errors import FlowError


class IntegerInputFromQuant(Transformation):
    """Make the graph input the integer that its input quantizer produces.

    ``Quant(x, s, 0, bits)`` at the graph input becomes ``Mul(x_int, s)`` (or nothing when s == 1),
    and the input is annotated with the integer datatype (UINTn/INTn, BINARY for 1 bit): FINN wants
    an integer-typed input, and the streamliner moves the scale ``s`` into the next thresholds.
    Brevitas exports a 1-bit *unsigned* input quantizer as ``BipolarQuant`` ({-1, +1}); with
    ``unsigned_binary`` such a node is read as the {0, 1} quantizer it was trained as.
    Contract afterwards: callers feed ``x_int = round(x / s)``; the scale is stored in the model's
    ``input_scale`` metadata property.
    """

    def __init__(self, unsigned_binary: bool = False):
        super().__init__()
        self.unsigned_binary = unsigned_binary

    def apply(self, model):
        graph_input = model.graph.input[0].name
        node = model.find_consumer(graph_input)
        if node is None or node.op_type not in ("Quant", "BipolarQuant"):
            return model, False
        scale = model.get_initializer(node.input[1])
        if scale is None or scale.size != 1 or float(scale.reshape(-1)[0]) <= 0:
            return model, False
        scale = float(scale.reshape(-1)[0])
        if node.op_type == "BipolarQuant":
            if not self.unsigned_binary or scale != 1:
                return model, False
            dtype = DataType["BINARY"]
        else:
            zero_point = model.get_initializer(node.input[2])
            bit_width = model.get_initializer(node.input[3])
            if zero_point is None or bit_width is None or np.any(zero_point != 0):
                return model, False
            bits = int(bit_width)
            signed = next((a.i for a in node.attribute if a.name == "signed"), 1)
            dtype = DataType[f"INT{bits}" if signed else ("BINARY" if bits == 1 else f"UINT{bits}")]
        model.graph.node.remove(node)
        if scale == 1:
            for consumer in model.find_consumers(node.output[0]):
                for i, name in enumerate(consumer.input):
                    if name == node.output[0]:
                        consumer.input[i] = graph_input
        else:
            scale_name = model.make_new_valueinfo_name()
            model.set_initializer(scale_name, np.asarray(scale, dtype=np.float32))
            model.graph.node.insert(0, helper.make_node("Mul", [graph_input, scale_name], [node.output[0]]))
            model.set_tensor_datatype(node.output[0], DataType["FLOAT32"])
        model.set_tensor_datatype(graph_input, dtype)
        model.set_metadata_prop(PROP_INPUT_SCALE, repr(scale))
        return model, False


def graph_input_scale(model) -> float:
    """The scale between float inputs and the integer graph input (1.0 when none was recorded)."""
    return float(model.get_metadata_prop(PROP_INPUT_SCALE) or 1.0)


def to_graph_input(model, x: np.ndarray) -> np.ndarray:
    """Float model inputs -> what the graph takes after IntegerInputFromQuant (round, clip, float32)."""
    dtype = model.get_tensor_datatype(model.graph.input[0].name)
    x = np.asarray(x, dtype=np.float64)
    if dtype.is_integer():
        x = np.clip(np.round(x / graph_input_scale(model)), dtype.min(), dtype.max())
    return x.astype(np.float32)


def layer_weights_by_channel(model, node) -> np.ndarray:
    """Integer weights of an MVAU/VVAU node as (channels, k), in the node's arithmetic (bipolar as +-1)."""
    weights = model.get_initializer(node.input[1])
    if weights is None:
        raise FlowError(f"layer {node.name}: weights are not a constant initializer; A2Q needs the trained integers")
    inst = getCustomOp(node)
    if node.op_type.startswith("MVAU"):
        if inst.get_nodeattr("binaryXnorMode"):
            weights = 2 * weights - 1
        return np.asarray(weights).T.astype(np.int64)  # MVAU weights are (MW, MH)
    return np.asarray(weights).reshape(weights.shape[0], -1).astype(np.int64)  # VVAU: (channels, 1, kh, kw)


def is_dot_product_layer(node) -> bool:
    return node.domain.startswith("finn.custom_op.fpgadataflow") and node.op_type.split("_")[0] in ("MVAU", "VVAU")


class SetA2QAccumulatorWidth(Transformation):
    """Set every MVAU/VVAU ``accDataType`` to the smallest width the A2Q guarantee allows.

    ``layers`` are the export sidecar's records (matched to nodes by weight fingerprint). For each node
    the exact worst-case range of every partial sum is computed from its integer weights and input
    datatype; if that needs more than the layer's target P the guarantee is broken and a FlowError
    names the layer. ``mode`` chooses what is written: ``"exact"`` (default) the smallest type for the
    exact range (FINN's naming, never wider than P), ``"target"`` INT<P> (the width the layer was trained
    for, for uniform-P studies). Layers without a target (baseline, or no sidecar) get the exact type.
    A sidecar record that matches no node means the graph's integers are not the ones the sidecar
    describes: a FlowError names the records, unless ``allow_unmatched`` (then those layers get exact
    widths and the decisions say so).
    The decisions are stored as JSON in the model's :data:`~flow.artifacts.PROP_ACCUMULATORS` property.
    """

    MODES = ("exact", "target")

    def __init__(self, layers: list[LayerRecord] | None = None, mode: str = "exact", allow_unmatched: bool = False):
        super().__init__()
        if mode not in self.MODES:
            raise FlowError(f"unknown accumulator mode {mode!r}; valid: {', '.join(self.MODES)}", option="acc_mode")
        self.layers = list(layers or [])
        self.mode = mode
        self.allow_unmatched = allow_unmatched

    def apply(self, model):
        by_fingerprint = {layer.fingerprint: layer for layer in self.layers}
        decisions: dict[str, AccumulatorDecision] = {}
        matched: set[str] = set()
        for node in model.graph.node:
            if not is_dot_product_layer(node):
                continue
            inst = getCustomOp(node)
            weights = layer_weights_by_channel(model, node)
            idt = inst.get_input_datatype(0)
            if not idt.is_integer():
                raise FlowError(f"layer {node.name}: input datatype {idt.name} is not an integer type")
            acc_min, acc_max = acc.exact_acc_range(weights, int(idt.min()), int(idt.max()))
            lo, hi = int(acc_min.min()), int(acc_max.max())
            meta = by_fingerprint.get(acc.weight_fingerprint(weights))
            if meta is not None:
                matched.add(meta.fingerprint)
            target = meta.acc_bits_target if meta else None
            label = f" ({meta.name})" if meta else ""
            if lo == 0 and hi == 0:
                raise FlowError(
                    f"layer {node.name}{label}: every weight is zero{f' at P={target}' if target else ''}; the layer "
                    "computes nothing. Raise P, or keep this layer outside A2Q (8-bit baseline), as is usual for "
                    "first and last layers"
                )
            exact_bits = acc.signed_bits_for_range(lo, hi)
            if target is not None and exact_bits > target:
                raise FlowError(
                    f"layer {node.name}{label}: its integer weights need a {exact_bits}-bit accumulator "
                    f"(range [{lo}, {hi}] for {idt.name} inputs) but it was trained for P={target}; the A2Q "
                    "guarantee does not hold for these weights (were they exported with flow.export?)"
                )
            if self.mode == "target" and target is not None:
                adt = DataType[f"INT{target}"]
            else:
                adt = DataType[acc.finn_acc_datatype_name(lo, hi)]
            inst.set_nodeattr("accDataType", adt.name)
            if inst.get_nodeattr("noActivation"):
                inst.set_nodeattr("outputDataType", adt.name)
                model.set_tensor_datatype(node.output[0], adt)
            decisions[node.name] = AccumulatorDecision(
                layer=meta.name if meta else None,
                acc_bits_target=target,
                acc_bits_exact=exact_bits,
                acc_range=[lo, hi],
                acc_datatype=adt.name,
                acc_source="target" if (self.mode == "target" and target is not None) else "exact",
            )
        unmatched = [layer for layer in self.layers if layer.fingerprint not in matched]
        if unmatched and not self.allow_unmatched:
            names = ", ".join(f"{layer.name} (P={layer.acc_bits_target})" for layer in unmatched)
            raise FlowError(
                f"{len(unmatched)} sidecar record(s) match no MVAU/VVAU of the graph: {names}. The graph's integer "
                "weights are not the ones the sidecar describes (was the ONNX file exported by another exporter, "
                "e.g. Brevitas's own, which rounds A2Q weights differently?). Re-export with flow.export, or "
                "allow it explicitly (allow_unmatched_sidecar) to build those layers with exact widths",
                option="allow_unmatched_sidecar",
            )
        model.set_metadata_prop(PROP_ACCUMULATORS, decisions_to_json(decisions))
        return model, False
