"""The topology of a graph, read from its patterns, and the checks for what FINN cannot map.

The flow's step list is the same for every model, zoo or not; the steps that depend on the topology look
at the graph (:func:`read_topology`) and do what its patterns need:

* residual forks and joins (a tensor read twice, an ``Add`` of two computed tensors),
* depthwise convolutions (``Conv`` with ``group`` equal to its channels),
* nearest-neighbour resize convolutions (``Resize``/``Upsample`` in nearest mode),
* average pools whose truncation widens (see :class:`~flow.finn.rewrites.KeepWideningTruncWidth`),
* a ReLU feeding several quantizers (see :class:`~flow.finn.rewrites.SplitSharedRelu`),
* the classification tail (TopK, see :func:`flow.finn.steps.step_insert_topk`).

Operators FINN cannot map stop the build with one line that names the node, where it is and what to do
(:func:`step_check_mappable` before the conversion, :func:`step_check_hw_layers` after it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from flow.core.errors import FlowError
from flow.finn.rewrites import is_nearest_resize, node_attr

FINN_DOMAIN = "finn.custom_op.fpgadataflow"
# operators with no FINN layer and what to do instead
UNMAPPABLE = {
    "DepthToSpace": "FINN cannot map the pixel shuffle of a sub-pixel convolution; replace it by a "
                    "nearest-neighbour resize convolution (upsample, then convolve), as the A2Q paper does: the "
                    "zoo's ESPCN (models/espcn.py) is an example",
    "SpaceToDepth": "FINN cannot map a space-to-depth reshuffle; use a strided convolution instead",
}


@dataclass(frozen=True)
class Topology:
    """What a graph contains that the streamlining must handle."""

    residual: bool  # a tensor forks and an Add joins two computed tensors
    depthwise: bool  # a Conv with group == channels > 1
    resize: bool  # a nearest-neighbour Resize/Upsample
    average_pool: bool
    shared_relu: bool  # a Relu read by several nodes

    def describe(self) -> str:
        found = [name.replace("_", " ") for name, present in asdict(self).items() if present]
        return ", ".join(found) or "a plain chain"


def read_topology(model) -> Topology:
    """The :class:`Topology` of a QONNX or (not yet converted) FINN graph."""
    initializers = {init.name for init in model.graph.initializer}
    nodes = list(model.graph.node)

    def computed(name: str) -> bool:
        return name not in initializers and model.find_producer(name) is not None

    forks = any(len(model.find_consumers(out)) > 1 for node in nodes for out in node.output)
    joins = any(node.op_type == "Add" and len(node.input) == 2 and all(computed(i) for i in node.input) for node in nodes)
    depthwise = False
    for node in nodes:
        if node.op_type == "Conv" and (node_attr(node, "group", 1) or 1) > 1:
            weights = model.get_tensor_shape(node.input[1])
            depthwise = depthwise or (weights is not None and weights[1] == 1)
    return Topology(
        residual=forks and joins,
        depthwise=depthwise,
        resize=any(is_nearest_resize(node) for node in nodes),
        average_pool=any(node.op_type in ("AveragePool", "GlobalAveragePool", "QuantAvgPool2d") for node in nodes),
        shared_relu=any(node.op_type == "Relu" and len(model.find_consumers(node.output[0])) > 1 for node in nodes),
    )


def where(model, node) -> str:
    """Where ``node`` is: its position and its neighbours."""
    nodes = list(model.graph.node)
    producers = [model.find_producer(name) for name in node.input]
    before = ", ".join(p.name or p.op_type for p in producers if p is not None) or "the graph input"
    consumers = [c for out in node.output for c in model.find_consumers(out)]
    after = ", ".join(c.name or c.op_type for c in consumers) or "the graph output"
    return f"node {nodes.index(node) + 1} of {len(nodes)}, after {before}, before {after}"


def step_check_mappable(model, cfg):
    """Before anything else: an operator FINN has no layer for stops the build with what to do instead."""
    for node in model.graph.node:
        hint = UNMAPPABLE.get(node.op_type)
        if hint is not None:
            raise FlowError(f"{node.op_type} {node.name or ''} ({where(model, node)}): {hint}".replace("  ", " "))
    return model


def _float_hint(op_type: str) -> str:
    if op_type in ("MatMul", "Conv", "Gemm"):
        return ("it computes in float: its weights or its input carry no quantizer. Give the layer a Brevitas weight "
                "quantizer and a quantized input (input_quant=..., or a QuantIdentity/QuantReLU with "
                "return_quant_tensor=True in front of it)")
    if op_type in ("Mul", "Add", "Div", "Sub"):
        return ("a float scale or offset is left between FINN layers: the tensor it produces needs an activation "
                "quantizer (a QuantIdentity/QuantReLU after it), so that FINN can fold it into thresholds")
    return f"FINN has no HW layer for {op_type}; quantize its input and output, or replace it"


def step_check_hw_layers(model, cfg):
    """After the conversion to HW layers: a node that is not a HW layer but sits between HW layers would end
    the build later in FINN's 'Unsupported/unmapped layer(s)'; name it and the quantizer that is missing."""
    hw = {node.name for node in model.graph.node if node.domain.startswith(FINN_DOMAIN)}

    def reaches(node, forward: bool) -> bool:
        seen, todo = set(), [node]
        while todo:
            current = todo.pop()
            neighbours = ([c for out in current.output for c in model.find_consumers(out)] if forward
                          else [p for name in current.input if (p := model.find_producer(name)) is not None])
            for other in neighbours:
                if other.name in hw:
                    return True
                if other.name not in seen:
                    seen.add(other.name)
                    todo.append(other)
        return False

    for node in model.graph.node:
        if node.name not in hw and reaches(node, False) and reaches(node, True):
            raise FlowError(f"{node.op_type} {node.name} ({where(model, node)}) stays outside FINN's HW layers: "
                            f"{_float_hint(node.op_type)}")
    return model
