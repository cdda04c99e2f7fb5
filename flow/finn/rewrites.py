"""Graph rewrites the topology steps need beyond FINN's own, each an exact identity of the network's
arithmetic (a qonnx ``Transformation``; the build's FINN-vs-QONNX check verifies the result).

* :class:`SplitSharedRelu`: a ReLU feeding several consumers gets one copy per consumer. FINN's QONNX
  conversion folds a ``Relu -> Quant`` pair into one ``MultiThreshold`` and deletes the ReLU; a second
  quantizer reading the same ReLU then reads a tensor nobody produces (zeros in execution).
* :class:`KeepWideningTruncWidth`: a ``Trunc`` that widens (an exact left shift, e.g. an average pool whose
  sum fits fewer bits than the pool's output) keeps its input width: FINN's QuantAvgPool2d can only shift
  right and would produce results 2^k too small.
* :class:`MoveLinearPastNearestResize`: a scale or bias moves behind a nearest-neighbour ``Resize`` (which
  only copies elements), so that it reaches the next convolution.
* :class:`RemoveSingleChannelIOTransposes`: with one image channel, the layout transposes at the graph
  input and output only move a size-1 axis and are dropped.
* :class:`ExactQuantThresholds` and :class:`InFloat64`: streamlining in float64 from exact rounding points, so
  that the integer thresholds are exact (see the section at the end).
"""

from __future__ import annotations

import copy

import numpy as np
import qonnx.core.data_layout as DataLayout
from onnx import TensorProto, helper, numpy_helper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes


def node_attr(node, name, default=None):
    """The value of a node attribute (strings decoded), or ``default``."""
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def is_nearest_resize(node) -> bool:
    """A nearest-neighbour ``Resize``/``Upsample``: it only selects (copies) input elements."""
    if node is None or node.op_type not in ("Resize", "Upsample"):
        return False
    return node_attr(node, "mode", "nearest") == "nearest"


class MoveLinearPastNearestResize(Transformation):
    """``Resize_nearest(x * c) -> Resize_nearest(x) * c`` (and the same for ``Add``) when the constant
    ``c`` is a scalar or per channel (size 1 along both spatial axes): nearest-neighbour resizing only
    copies elements, so it commutes with such an operation. Works in NCHW and NHWC (the constant must
    simply broadcast the same way before and after the resize)."""

    def apply(self, model):
        graph = model.graph
        for node in list(graph.node):
            if node.op_type not in ("Mul", "Add"):
                continue
            const = model.get_initializer(node.input[1])
            if const is None or model.get_initializer(node.input[0]) is not None:
                continue
            consumers = model.find_consumers(node.output[0])
            if len(consumers) != 1 or not is_nearest_resize(consumers[0]):
                continue
            resize = consumers[0]
            shape = model.get_tensor_shape(node.input[0])
            if shape is None or len(shape) != 4 or np.ndim(const) > 4:
                continue
            # the constant must not vary along the spatial axes (2, 3 in NCHW; 1, 2 in NHWC)
            c = np.asarray(const).reshape((1,) * (4 - np.ndim(const)) + np.shape(const))
            layout_nhwc = list(model.get_tensor_layout(node.input[0]) or []) == ["N", "H", "W", "C"]
            spatial = (1, 2) if layout_nhwc else (2, 3)
            if any(c.shape[axis] != 1 for axis in spatial):
                continue
            # rewire: x -> Resize -> op -> (old resize output)
            x, mid, out = node.input[0], node.output[0], resize.output[0]
            resize.input[0] = x
            resize.output[0] = mid
            node.input[0] = mid
            node.output[0] = out
            model.set_tensor_shape(mid, model.get_tensor_shape(out))
            graph.node.remove(node)
            graph.node.insert(list(graph.node).index(resize) + 1, node)
            model = model.transform(InferShapes())
            model = model.transform(InferDataTypes())
            return model, True
        return model, False


def _perm_moves_only_unit_axes(perm, shape) -> bool:
    """A transpose that keeps the order of all axes longer than 1 only reshapes the data."""
    moved = [axis for axis in perm if shape[axis] != 1]
    return moved == sorted(moved)


class RemoveSingleChannelIOTransposes(Transformation):
    """Drop the layout transposes at the graph input and output when they only move a size-1 axis
    (one image channel: NCHW and NHWC hold the same bytes). The graph input/output then take the
    NHWC shape; FINN would otherwise leave the input transpose outside the dataflow partition and turn
    the output one into a ``Shuffle`` layer that does nothing. Only scalar ``Mul``/``Add`` may stand
    between the output transpose and the graph output (they are moved in front of it)."""

    def apply(self, model):
        graph = model.graph
        changed = False
        graph_in = graph.input[0].name
        first = model.find_consumers(graph_in)
        if len(first) == 1 and first[0].op_type == "Transpose":
            node = first[0]
            perm = list(node_attr(node, "perm"))
            shape = model.get_tensor_shape(graph_in)
            if _perm_moves_only_unit_axes(perm, shape):
                dtype = model.get_tensor_datatype(graph_in)
                new_shape = model.get_tensor_shape(node.output[0])
                for consumer in model.find_consumers(node.output[0]):
                    for i, name in enumerate(consumer.input):
                        if name == node.output[0]:
                            consumer.input[i] = graph_in
                graph.node.remove(node)
                model.set_tensor_shape(graph_in, new_shape)
                model.set_tensor_datatype(graph_in, dtype)
                model.set_tensor_layout(graph_in, model.get_tensor_layout(node.output[0]) or DataLayout.NHWC)
                changed = True
        graph_out = graph.output[0].name
        tail = []  # scalar Mul/Add between the transpose and the graph output
        node = model.find_producer(graph_out)
        while node is not None and node.op_type in ("Mul", "Add"):
            const = model.get_initializer(node.input[1])
            if const is None or const.size != 1:
                break
            tail.append(node)
            node = model.find_producer(node.input[0])
        if node is not None and node.op_type == "Transpose" and len(model.find_consumers(node.output[0])) == 1:
            perm = list(node_attr(node, "perm"))
            shape = model.get_tensor_shape(node.input[0])
            if _perm_moves_only_unit_axes(perm, shape):
                target = tail[-1] if tail else None
                if target is None:  # the transpose produces the graph output
                    producer = model.find_producer(node.input[0])
                    producer.output[list(producer.output).index(node.input[0])] = graph_out
                else:
                    target.input[0] = node.input[0]
                graph.node.remove(node)
                dtype = model.get_tensor_datatype(graph_out)
                model.set_tensor_shape(graph_out, shape)
                for op in tail:
                    model.set_tensor_shape(op.output[0], shape)
                model.set_tensor_datatype(graph_out, dtype)
                model.set_tensor_layout(graph_out, model.get_tensor_layout(node.input[0]) or DataLayout.NHWC)
                changed = True
        if changed:
            model = model.transform(InferShapes())
            model = model.transform(InferDataTypes())
        return model, False


class SplitSharedRelu(Transformation):
    """Give every consumer of a multi-consumer ``Relu`` its own copy of the ``Relu``."""

    def apply(self, model):
        graph = model.graph
        changed = False
        for node in list(graph.node):
            if node.op_type != "Relu":
                continue
            consumers = model.find_consumers(node.output[0])
            if len(consumers) < 2:
                continue
            index = list(graph.node).index(node)
            for number, consumer in enumerate(consumers[1:], start=1):
                copy_node = copy.deepcopy(node)
                copy_node.name = f"{node.name}_copy{number}" if node.name else ""
                new_output = model.make_new_valueinfo_name()
                copy_node.output[0] = new_output
                graph.node.insert(index + 1, copy_node)
                model.set_tensor_shape(new_output, model.get_tensor_shape(node.output[0]))
                for i, name in enumerate(consumer.input):
                    if name == node.output[0]:
                        consumer.input[i] = new_output
                changed = True
        if changed:
            model = model.transform(SortGraph())
            model = model.transform(InferShapes())
        return model, False


class KeepWideningTruncWidth(Transformation):
    """A ``Trunc`` whose output is wider than its input (``Trunc`` v1: 5 inputs; v2: 6 inputs with the output
    scale) is an exact left shift: its output value equals its input. Giving it the input's width (and, for
    v2, the input's scale) keeps the value and leaves FINN a truncation without a shift."""

    def apply(self, model):
        changed = False
        for node in model.graph.node:
            if node.op_type != "Trunc" or len(node.input) not in (5, 6):
                continue
            in_bits = model.get_initializer(node.input[3])
            out_bits = model.get_initializer(node.input[-1])
            if in_bits is None or out_bits is None or float(out_bits) <= float(in_bits):
                continue
            if len(node.input) == 6:
                scale, out_scale = model.get_initializer(node.input[1]), model.get_initializer(node.input[4])
                if scale is None or out_scale is None or scale.size != 1 or out_scale.size != 1:
                    continue
                if not np.isclose(float(out_scale) * 2.0 ** (float(out_bits) - float(in_bits)), float(scale)):
                    continue  # not a pure left shift
                model.set_initializer(node.input[4], np.asarray(scale, dtype=np.float32))
            model.set_initializer(node.input[-1], np.asarray(in_bits, dtype=np.float32))
            changed = True
        if changed:
            model = model.transform(InferDataTypes())
        return model, False


# ---------------------------------------------------------------------------------------------------------
# Exact thresholds: streamlining in float64
#
# FINN's QONNX conversion writes a quantizer's thresholds (the rounding points s*(m + 1/2)) as float32, and
# streamlining folds the scales, biases and batch norms ahead of them into those thresholds with float32
# arithmetic before rounding them up to integers of the accumulator. A pre-activation within about one float32
# ulp of a rounding point (one element of the full-width ResNet18's check inputs was) then lands on the wrong
# side of its integer threshold and the hardware differs from the QONNX model by one output step, which the
# next layers spread. The flow's classifier streamlining therefore runs on a float64 graph: the thresholds are
# first recomputed from their quantizer's scale (:class:`ExactQuantThresholds`), every transformation is
# applied through :class:`InFloat64`, and after the integer thresholds are rounded the graph returns to
# float32 (:func:`graph_to_float32`); integer thresholds below 2^24 are exact in float32.
# ---------------------------------------------------------------------------------------------------------

FLOAT_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}


def retype_float_graph(model, dst: int):
    """Every FLOAT/DOUBLE tensor of the graph (inputs, outputs, value infos, initializers) as ``dst``, in place;
    returns the model."""
    graph = model.graph
    src = TensorProto.DOUBLE if dst == TensorProto.FLOAT else TensorProto.FLOAT
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.type.tensor_type.elem_type == src:
            info.type.tensor_type.elem_type = dst
    for index, init in enumerate(graph.initializer):
        if init.data_type == src:
            value = numpy_helper.to_array(init).astype(FLOAT_TYPES[dst])
            graph.initializer[index].CopyFrom(numpy_helper.from_array(value, init.name))
    return model


def has_float_type(model, elem_type: int) -> bool:
    """Whether any tensor of the graph (inputs, outputs, value infos, initializers) is of ``elem_type``."""
    graph = model.graph
    return (any(info.type.tensor_type.elem_type == elem_type for info in [*graph.input, *graph.output, *graph.value_info])
            or any(init.data_type == elem_type for init in graph.initializer))


def graph_to_float64(model):
    return retype_float_graph(model, TensorProto.DOUBLE)


def graph_to_float32(model):
    return retype_float_graph(model, TensorProto.FLOAT)


class InFloat64(Transformation):
    """Apply ``transformation`` to a float64 graph and keep it float64: FINN's transformations create their
    new tensors as float32, which would leave ONNX shape inference with mixed types (and no shapes). After
    a pass that left float32 tensors, the graph is retyped to float64 and its shapes inferred again."""

    def __init__(self, transformation: Transformation):
        super().__init__()
        self.transformation = transformation

    def apply(self, model):
        model, modified = self.transformation.apply(model)
        if has_float_type(model, TensorProto.FLOAT):
            model = graph_to_float64(model).transform(InferShapes())
        return model, modified


class ExactQuantThresholds(Transformation):
    """Recompute, in float64, the thresholds FINN's QONNX conversion gives a quantizer: a ``MultiThreshold``
    followed (after an optional constant ``Add``) by a ``Mul`` with the quantizer's scale ``s`` has the
    rounding points ``s * (m + 1/2)`` for consecutive integers ``m`` as thresholds, stored as float32. When
    every threshold is such a point (to float32 precision), it is replaced by its float64 value; other
    thresholds are left alone. Run it on a float64 graph (:func:`graph_to_float64`): a float32 graph would
    store the thresholds in float32 again."""

    TOLERANCE = 1e-3  # in units of the scale: float32 rounding is ~1e-7

    def apply(self, model):
        for node in model.graph.node:
            if node.op_type != "MultiThreshold":
                continue
            thresholds = model.get_initializer(node.input[1])
            if thresholds is None or thresholds.ndim != 2 or node_attr(node, "out_scale", 1.0) != 1.0:
                continue
            consumers = model.find_consumers(node.output[0])
            if len(consumers) == 1 and consumers[0].op_type == "Add" and model.get_initializer(consumers[0].input[1]) is not None:
                consumers = model.find_consumers(consumers[0].output[0])
            if len(consumers) != 1 or consumers[0].op_type != "Mul":
                continue
            scale = model.get_initializer(consumers[0].input[1])
            if scale is None:
                continue
            scale = np.asarray(scale, dtype=np.float64).reshape(-1)
            channels = thresholds.shape[0]
            if scale.size not in (1, channels) or np.any(scale == 0):
                continue
            steps = np.abs(np.broadcast_to(scale, (channels,)))[:, None]
            points = np.asarray(thresholds, dtype=np.float64) / steps - 0.5
            whole = np.round(points)
            if np.any(np.abs(points - whole) > self.TOLERANCE) or np.any(np.diff(whole, axis=1) != 1):
                continue
            exact = steps * (whole + 0.5)
            if thresholds.dtype == np.float64 and np.array_equal(exact, thresholds):
                continue
            model.set_initializer(node.input[1], exact.astype(np.float64))
        return model, False
