"""Streamlining for the topologies FINN's stock ``step_streamline`` cannot take to HW layers.

Each procedure applies the rewrites a topology needs, to their fixed point, in an order that works for it
(finn-plus's exhaustive ``StreamlinePlus`` takes minutes at a tiny ResNet18 and ran for over 10 minutes on
the UNet). Every rewrite is an exact algebraic identity; the build's FINN-vs-QONNX check verifies the result.

* :func:`streamline_classifier` for residual and depthwise classifiers (no resize). The output
  quantizer's offset first; batch norm to Mul/Add; on residual graphs the per-tensor scale after each shared
  activation is copied onto every consumer of the fork (``MoveMulPastFork``), so each residual Add sees
  ``x*s + y*s`` and becomes ``(x + y)*s`` (``MoveLinearPastEltwiseAdd``): an integer addition; on depthwise
  graphs a scale ahead of a depthwise convolution moves behind it (``MoveMulPastDWConv``). Scalar scales then
  move forward past convolutions, reshapes and the classifier's MatMul and collapse with the per-channel
  weight scales and batch-norm factors; Adds and Muls are absorbed into the next thresholds and the output
  scale into TopK. Convolutions are lowered to Im2Col + MatMul in NHWC, and the layout Transposes move
  through thresholds, forks and joins until only the one at the graph input remains. All of it runs on a
  float64 copy of the graph, from exact rounding points to the integer thresholds
  (:class:`~flow.finn.rewrites.ExactQuantThresholds`, :class:`~flow.finn.rewrites.InFloat64`).
* :func:`streamline_resize` for graphs with nearest-neighbour resize convolutions (and forks and additive
  skips where they have them): FINN's ``Streamline``, the fork/join rewrites and
  :class:`~flow.finn.rewrites.MoveLinearPastNearestResize` until nothing moves; then lowering to NHWC, the
  transposes moved through thresholds, forks, joins and resizes (``MakeScaleResizeNHWC``) until they cancel.
"""

from __future__ import annotations

import copy

from finn.transformation.streamline import Streamline
from finn.transformation.streamline.absorb import (
    Absorb1BitMulIntoConv,
    Absorb1BitMulIntoMatMul,
    AbsorbAddIntoMultiThreshold,
    AbsorbConsecutiveTransposes,
    AbsorbMulIntoMultiThreshold,
    AbsorbScalarBiasIntoMultiThreshold,
    AbsorbScalarMulAddIntoTopK,
    AbsorbTransposeIntoMultiThreshold,
    FactorOutMulSignMagnitude,
)
from finn.transformation.streamline.collapse_repeated import CollapseRepeatedAdd, CollapseRepeatedMul
from finn.transformation.streamline.reorder import (
    MakeScaleResizeNHWC,
    MoveAddPastMul,
    MoveLinearPastEltwiseAdd,
    MoveLinearPastFork,
    MoveMulPastDWConv,
    MoveMulPastFork,
    MoveScalarLinearPastInvariants,
    MoveScalarMulPastConv,
    MoveScalarMulPastMatMul,
    MoveTransposePastFork,
    MoveTransposePastJoinAdd,
)
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.batchnorm_to_affine import BatchNormToAffine
from qonnx.transformation.general import (
    ConvertDivToMul,
    GiveReadableTensorNames,
    GiveUniqueNodeNames,
    RemoveUnusedTensors,
)
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
from qonnx.transformation.remove import RemoveIdentityOps

from flow.finn.rewrites import (
    ExactQuantThresholds,
    InFloat64,
    MoveLinearPastNearestResize,
    RemoveSingleChannelIOTransposes,
    graph_to_float32,
    graph_to_float64,
)

# Fixed-point rounds; each round of the layout clean-up removes the Transposes of one more level.
MAX_ROUNDS = 12


def apply_all(model, transformations):
    for transformation in transformations:
        model = model.transform(transformation)
    return model


def tidy(model):
    return apply_all(model, [GiveUniqueNodeNames(), GiveReadableTensorNames(), InferShapes(), InferDataTypes(),
                             InferDataLayouts()])


def _signature(model) -> tuple:
    return tuple((n.op_type, tuple(n.input), tuple(n.output)) for n in model.graph.node)


def until_stable(model, transformations, rounds: int = MAX_ROUNDS):
    """Apply ``transformations`` in turn until a whole round leaves the graph unchanged."""
    for _ in range(rounds):
        before = _signature(model)
        model = tidy(apply_all(model, transformations))
        if _signature(model) == before:
            break
    return model


def absorb_scales(model, exact: bool = False):
    """Move scalar scales forward, collapse them and absorb Mul/Add chains into the thresholds (``exact``: on a
    float64 graph, each transformation through :class:`~flow.finn.rewrites.InFloat64`)."""
    wrap = InFloat64 if exact else (lambda transformation: transformation)
    return apply_all(model, [wrap(t) for t in [
        MoveScalarMulPastConv(), MoveScalarLinearPastInvariants(), MoveScalarMulPastMatMul(),
        CollapseRepeatedMul(), MoveAddPastMul(), CollapseRepeatedAdd(), RemoveIdentityOps(),
        AbsorbAddIntoMultiThreshold(), FactorOutMulSignMagnitude(), AbsorbMulIntoMultiThreshold(),
        Absorb1BitMulIntoConv(), Absorb1BitMulIntoMatMul(),
        AbsorbScalarBiasIntoMultiThreshold(), AbsorbScalarMulAddIntoTopK(),
    ]])  # fmt: skip


def streamline_classifier(model, residual: bool, depthwise: bool):
    """Targeted streamlining of a residual and/or depthwise classifier (see the module docstring)."""
    # in float64, with the quantizers' thresholds exact, until the thresholds are integers (see
    # flow.finn.rewrites: in float32 a pre-activation within an ulp of a rounding point can change sides)
    model = graph_to_float64(ModelWrapper(copy.deepcopy(model.model))).transform(ExactQuantThresholds())
    # the output quantizer's offset first, before any Add is moved past its scale
    first = [AbsorbScalarBiasIntoMultiThreshold(), ConvertDivToMul(), BatchNormToAffine()]
    if residual:
        first += [MoveMulPastFork(), MoveLinearPastEltwiseAdd()]
    if depthwise:
        first += [MoveMulPastDWConv()]
    model = absorb_scales(apply_all(model, [InFloat64(t) for t in first]), exact=True)
    model = model.transform(InFloat64(LowerConvsToMatMul()))
    model = until_stable(model, [InFloat64(t) for t in [AbsorbTransposeIntoMultiThreshold(), MoveTransposePastFork(),
                                                         MoveTransposePastJoinAdd(), AbsorbConsecutiveTransposes()]])
    model = apply_all(model, [InferDataTypes(), RoundAndClipThresholds()])
    model = graph_to_float32(model).transform(InferShapes())
    return apply_all(model, [InferDataTypes(), InferDataLayouts(), RemoveUnusedTensors()])


def streamline_resize(model, depthwise: bool = False):
    """Streamlining of a graph with nearest-neighbour resize convolutions (see the module docstring)."""
    model = model.transform(AbsorbScalarBiasIntoMultiThreshold())
    scales = [Streamline(), MoveLinearPastFork(), MoveLinearPastEltwiseAdd(), MoveLinearPastNearestResize()]
    model = until_stable(model, scales + ([MoveMulPastDWConv()] if depthwise else []))
    model = model.transform(LowerConvsToMatMul())
    model = until_stable(model, [AbsorbTransposeIntoMultiThreshold(), MoveTransposePastFork(),
                                 MoveTransposePastJoinAdd(), MakeScaleResizeNHWC(), AbsorbConsecutiveTransposes()])
    model = apply_all(model, [Streamline(), RemoveSingleChannelIOTransposes(), RemoveUnusedTensors()])
    return tidy(model)
