"""Graph rewrites of the flow, each a qonnx ``Transformation`` with ``apply(model) -> (model, modified)``."""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.transformation.base import Transformation

from flow.errors import FlowError


class RemoveIdentityInputQuant(Transformation):
    """Drop an input quantizer that is the identity on integer inputs; annotate the input's datatype.

    A ``Quant`` with scale 1 and zero point 0 leaves integers of its range unchanged, so the graph
    input can carry that datatype itself (FINN wants an integer-typed input). Brevitas exports a
    1-bit *unsigned* input quantizer as ``BipolarQuant`` ({-1, +1}); with ``unsigned_binary`` such a
    node is read as the {0, 1} quantizer it was trained as, and the input becomes ``BINARY``.
    The contract afterwards: callers feed integers of the annotated datatype.
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
        if scale is None or not np.all(scale == 1):
            return model, False
        if node.op_type == "BipolarQuant":
            if not self.unsigned_binary:
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
        for consumer in model.find_consumers(node.output[0]):
            for i, name in enumerate(consumer.input):
                if name == node.output[0]:
                    consumer.input[i] = graph_input
        model.graph.node.remove(node)
        model.set_tensor_datatype(graph_input, dtype)
        return model, False
