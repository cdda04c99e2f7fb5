"""FINN steps for the super-resolution UNet (``models.unet``): forks, additive skips, resize convolutions.

Targeted transformations instead of finn-plus's ``StreamlinePlus`` (which ran for over 10 minutes on
this graph):

* :class:`SplitSharedRelu` (before the QONNX->FINN conversion): a ReLU that feeds several consumers is
  copied once per consumer. The conversion folds a ``Relu -> Quant`` pair into one ``MultiThreshold`` and
  *deletes* the ReLU; a second quantizer reading the same ReLU then reads a tensor nobody produces (zeros
  in execution). ``models.unet`` never feeds two quantizers from one ReLU, but a user's UNet may.
* Streamlining, repeated until nothing moves: FINN's ``Streamline`` (batch norm to affine, scales into
  thresholds), ``MoveLinearPastFork`` (the activation scale of a skip branch is copied onto both
  branches), ``MoveLinearPastEltwiseAdd`` (the shared scale of both operands moves behind the addition,
  which then adds integers), :class:`~flow.finn.model_steps.espcn.MoveLinearPastNearestResize` (a scale
  moves behind a nearest-neighbour ``Resize`` so that it reaches the next convolution).
* Lowering to NHWC, repeated until nothing moves: ``LowerConvsToMatMul``, then the layout transposes are
  moved through thresholds, forks (``MoveTransposePastFork``), joins (``MoveTransposePastJoinAdd``) and
  resizes (``MakeScaleResizeNHWC``) until consecutive ones cancel (``AbsorbConsecutiveTransposes``).
* ``InferUpsample`` before the conversion to HW layers (see :mod:`flow.finn.model_steps.espcn`); the forks
  become ``DuplicateStreams`` and the additions integer ``ElementwiseAdd`` layers in ``step_convert_to_hw``.
"""

from __future__ import annotations

import copy

from finn.transformation.streamline import Streamline
from finn.transformation.streamline.absorb import (
    AbsorbConsecutiveTransposes,
    AbsorbScalarBiasIntoMultiThreshold,
    AbsorbTransposeIntoMultiThreshold,
)
from finn.transformation.streamline.reorder import (
    MakeScaleResizeNHWC,
    MoveLinearPastEltwiseAdd,
    MoveLinearPastFork,
    MoveTransposePastFork,
    MoveTransposePastJoinAdd,
)
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import RemoveUnusedTensors, SortGraph
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

from flow.finn.model_steps.espcn import (
    MoveLinearPastNearestResize,
    RemoveSingleChannelIOTransposes,
    sr_steps,
    tidy,
)

MAX_ROUNDS = 12


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


def _signature(model) -> tuple:
    return tuple((n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node)


def _until_stable(model, transforms, rounds: int = MAX_ROUNDS):
    """Apply ``transforms`` in turn until a whole round leaves the graph unchanged."""
    for _ in range(rounds):
        before = _signature(model)
        for transform in transforms:
            model = model.transform(transform)
        model = tidy(model)
        if _signature(model) == before:
            break
    return model


def step_split_shared_relu(model, cfg):
    """Before QONNX->FINN: one ReLU per consumer, so that no quantizer loses its input."""
    return model.transform(SplitSharedRelu())


def streamline_unet(model):

    model = model.transform(AbsorbScalarBiasIntoMultiThreshold())
    model = _until_stable(model, [Streamline(), MoveLinearPastFork(), MoveLinearPastEltwiseAdd(),
                                  MoveLinearPastNearestResize()])
    model = model.transform(LowerConvsToMatMul())
    model = _until_stable(model, [AbsorbTransposeIntoMultiThreshold(), MoveTransposePastFork(),
                                  MoveTransposePastJoinAdd(), MakeScaleResizeNHWC(), AbsorbConsecutiveTransposes()])
    model = model.transform(Streamline())
    model = model.transform(RemoveSingleChannelIOTransposes())
    model = model.transform(RemoveUnusedTensors())
    return tidy(model)


def step_unet_streamline(model, cfg):
    """Streamline the UNet: all scales into thresholds or behind the additions, everything NHWC."""
    return streamline_unet(model)


STEPS = sr_steps([step_unet_streamline], before_qonnx=[step_split_shared_relu])
