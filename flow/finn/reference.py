"""The reference evaluation of a QONNX model: float64 Python execution, node by node.

QONNX's own execution runs every standard node in onnxruntime in float32 and casts every quantizer's
output to float32, so a value on a rounding tie of a later quantizer can land on either side depending
on the machine's summation order. Here the same graph runs in float64: weight quantizers are folded into
float64 constants, convolutions lowered to Im2Col + MatMul (onnxruntime has no float64 Conv),
``Quant`` nodes computed with qonnx's own ``int_quant`` in float64, and the few standard operators
onnxruntime lacks in float64 (``AveragePool``) or qonnx cannot feed (``Resize`` with an omitted input) in
NumPy. The result is the exact integer arithmetic
of the network up to float64 rounding, the same on every machine.
"""

from __future__ import annotations

import copy

import numpy as np
from onnx import TensorProto, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_node
from qonnx.custom_op.general.intquant import int_quant
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
from qonnx.util.basic import get_by_name

from flow.core.errors import FlowError

QUANT_OPS = ("Quant", "BipolarQuant")


def output_step(model: ModelWrapper) -> float | None:
    """The step of the quantizer that produces the graph output (its scalar scale), None if the output
    is not produced by a per-tensor ``Quant``."""
    producer = model.find_producer(model.graph.output[0].name)
    if producer is None or producer.op_type != "Quant":
        return None
    scale = model.get_initializer(producer.input[1])
    if scale is None or np.asarray(scale).size != 1:
        return None
    return float(np.asarray(scale).reshape(-1)[0])


def float64_model(model: ModelWrapper) -> ModelWrapper:
    """A copy of ``model`` prepared for :func:`execute_float64`: constant weight quantizers folded,
    convolutions lowered, every float tensor declared float64."""
    clone = ModelWrapper(copy.deepcopy(model.model))
    graph = clone.graph
    for node in list(graph.node):
        if node.op_type in QUANT_OPS and all(clone.get_initializer(name) is not None for name in node.input):
            context = {name: np.asarray(clone.get_initializer(name), dtype=np.float64) for name in node.input}
            context[node.output[0]] = None
            getCustomOp(node).execute_node(context, graph)
            clone.set_initializer(node.output[0], np.asarray(context[node.output[0]], dtype=np.float64))
            graph.node.remove(node)
    clone = clone.transform(LowerConvsToMatMul())
    graph = clone.graph
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.DOUBLE
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    return clone


def _average_pool(x: np.ndarray, node) -> np.ndarray:
    kernel = list(get_by_name(node.attribute, "kernel_shape").ints)
    strides_attr = get_by_name(node.attribute, "strides")
    strides = list(strides_attr.ints) if strides_attr is not None else [1, 1]
    pads_attr = get_by_name(node.attribute, "pads")
    if pads_attr is not None and any(pads_attr.ints):
        raise FlowError(f"float64 reference: padded AveragePool ({node.name}) is not supported")
    (kh, kw), (sh, sw) = kernel, strides
    n, c, h, w = x.shape
    out_h, out_w = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.empty((n, c, out_h, out_w), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_w):
            out[:, :, i, j] = x[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw].mean(axis=(2, 3))
    return out


def _nearest_resize(x: np.ndarray, node, context) -> np.ndarray:
    """``Resize``/``Upsample`` in nearest mode with scales (output index i reads input index floor(i / scale),
    as PyTorch's nearest upsampling exports it)."""
    mode = get_by_name(node.attribute, "mode")
    if mode is not None and mode.s.decode() != "nearest":
        raise FlowError(f"float64 reference: {node.op_type} {node.name} in mode {mode.s.decode()!r} is not supported")
    scales_name = node.input[2] if node.op_type == "Resize" else node.input[1]
    scales = np.asarray(context[scales_name], dtype=np.float64).reshape(-1)
    if scales.size != x.ndim:
        raise FlowError(f"float64 reference: {node.op_type} {node.name} needs one scale per axis")
    out = x
    for axis, scale in enumerate(scales):
        size = int(np.floor(x.shape[axis] * scale))
        out = np.take(out, np.floor(np.arange(size) / scale).astype(np.int64), axis=axis)
    return out


def execute_float64(model64: ModelWrapper, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Execute a :func:`float64_model` copy on ``inputs``; returns every tensor of the graph (float64)."""
    context: dict[str, np.ndarray] = {init.name: numpy_helper.to_array(init) for init in model64.graph.initializer}
    context.update({name: np.asarray(value, dtype=np.float64) for name, value in inputs.items()})
    opset = model64.model.opset_import[0].version
    for node in model64.graph.node:
        if node.op_type == "Quant":
            inst = getCustomOp(node)
            x, scale, zero_point, bits = (context[name] for name in node.input)
            context[node.output[0]] = int_quant(np.asarray(x, dtype=np.float64), scale, zero_point, bits,
                                                inst.get_nodeattr("signed"), inst.get_nodeattr("narrow"),
                                                inst.get_nodeattr("rounding_mode"))
        elif node.op_type == "AveragePool":
            context[node.output[0]] = _average_pool(context[node.input[0]], node)
        elif node.op_type in ("Resize", "Upsample"):
            context[node.output[0]] = _nearest_resize(context[node.input[0]], node, context)
        else:
            for name in node.output:
                context.setdefault(name, np.zeros(model64.get_tensor_shape(name) or [1]))
            execute_node(node, context, model64.graph, opset)
        for name in node.output:
            value = context[name]
            if isinstance(value, np.ndarray) and value.dtype == np.float32:
                context[name] = value.astype(np.float64)
    return context


def run_float64(model64: ModelWrapper, x: np.ndarray) -> np.ndarray:
    """The graph output of a :func:`float64_model` copy for the graph input ``x``."""
    context = execute_float64(model64, {model64.graph.input[0].name: x})
    return context[model64.graph.output[0].name]
