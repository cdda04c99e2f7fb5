"""FINN steps for the zoo's ResNet18 (``flow.finn.model_steps.resnet18:STEPS``).

FINN's stock ``step_streamline`` leaves the shared activation scale of each residual fork as a float
Mul, so the convolutions behind it stay float. finn-plus's ``step_resnet_streamline`` (StreamlinePlus)
solves that but applies every rewrite exhaustively with a deep copy and cleanup per application:
minutes even at 1/16 width. ``step_resnet18_streamline`` applies only the rewrites this topology
needs, each once to its fixed point, in an order that works for it:

1. the output quantizer's offset into its thresholds; batch norm to Mul/Add, Div to Mul;
2. the per-tensor scale after each shared activation is copied onto every consumer of the fork
   (``MoveMulPastFork``), so each residual Add sees ``x*s + y*s`` and becomes ``(x + y)*s``
   (``MoveLinearPastEltwiseAdd``): an integer addition of two same-scale activations;
3. scalar scales move forward past convolutions, reshapes and the classifier's MatMul and collapse
   with the per-channel weight scales and batch-norm factors; Adds and Muls (negative factors
   split into a sign flip of the integer weights) are absorbed into the next thresholds; the
   output quantizer's scale goes into TopK;
4. convolutions are lowered to Im2Col + MatMul in NHWC; the layout Transposes are moved through
   thresholds, forks and residual Adds until only the one at the graph input remains (it stays
   outside the dataflow partition).

Every rewrite is an exact algebraic identity; the build's FINN-vs-QONNX check verifies the result.
"""

from __future__ import annotations

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
from finn.transformation.streamline.collapse_repeated import (
    CollapseRepeatedAdd,
    CollapseRepeatedMul,
)
from finn.transformation.streamline.reorder import (
    MoveAddPastMul,
    MoveLinearPastEltwiseAdd,
    MoveMulPastFork,
    MoveScalarLinearPastInvariants,
    MoveScalarMulPastConv,
    MoveScalarMulPastMatMul,
    MoveTransposePastFork,
    MoveTransposePastJoinAdd,
)
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from qonnx.transformation.batchnorm_to_affine import BatchNormToAffine
from qonnx.transformation.general import ConvertDivToMul, RemoveUnusedTensors
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
from qonnx.transformation.remove import RemoveIdentityOps

from flow.finn.steps import estimate_steps

# Fixed-point rounds of the layout clean-up; each round removes the Transposes of one more level.
MAX_TRANSPOSE_ROUNDS = 8


def _apply(model, transformations):
    for transformation in transformations:
        model = model.transform(transformation)
    return model


def count_op(model, op_type: str) -> int:
    return sum(1 for node in model.graph.node if node.op_type == op_type)


def sink_transposes(model):
    """Move NCHW<->NHWC Transposes through thresholds, forks and joining Adds until they cancel."""

    before = None
    for _ in range(MAX_TRANSPOSE_ROUNDS):
        count = count_op(model, "Transpose")
        if count == before:
            break
        before = count
        model = _apply(model, [AbsorbTransposeIntoMultiThreshold(), MoveTransposePastFork(),
                               MoveTransposePastJoinAdd(), AbsorbConsecutiveTransposes()])
    return model


def absorb_scales(model):
    """Move scalar scales forward, collapse them and absorb Mul/Add chains into the thresholds."""

    return _apply(model, [
        MoveScalarMulPastConv(), MoveScalarLinearPastInvariants(), MoveScalarMulPastMatMul(),
        CollapseRepeatedMul(), MoveAddPastMul(), CollapseRepeatedAdd(), RemoveIdentityOps(),
        AbsorbAddIntoMultiThreshold(), FactorOutMulSignMagnitude(), AbsorbMulIntoMultiThreshold(),
        Absorb1BitMulIntoConv(), Absorb1BitMulIntoMatMul(),
        AbsorbScalarBiasIntoMultiThreshold(), AbsorbScalarMulAddIntoTopK(),
    ])


def step_resnet18_streamline(model, cfg):
    """Targeted streamlining of the residual network (see the module docstring)."""


    # the output quantizer's offset first, before any Add is moved past its scale
    model = _apply(model, [AbsorbScalarBiasIntoMultiThreshold(), ConvertDivToMul(), BatchNormToAffine(),
                           MoveMulPastFork(), MoveLinearPastEltwiseAdd()])
    model = absorb_scales(model)
    model = model.transform(LowerConvsToMatMul())
    model = sink_transposes(model)
    model = _apply(model, [InferDataTypes(), RoundAndClipThresholds(), InferDataLayouts(), RemoveUnusedTensors()])
    return model


STEPS = estimate_steps(streamline=[step_resnet18_streamline])
