"""FINN steps for the zoo's MobileNetV1 (``flow.finn.model_steps.mobilenetv1:STEPS``).

The same targeted streamlining as ResNet18 (``flow.finn.model_steps.resnet18``) without the residual
rewrites, plus ``MoveMulPastDWConv``: a scale ahead of a depthwise convolution (per-channel in
general, per-tensor here) moves behind it, so every depthwise convolution becomes an integer VVAU.
The model avoids the average-pool pitfall in FINDINGS itself: its TruncAvgPool2d (FLOOR) never
widens (``models.resnet18.pool_bits``), so FINN's QuantAvgPool2d, which can only shift right, is exact.
"""

from __future__ import annotations

from finn.transformation.streamline.absorb import AbsorbScalarBiasIntoMultiThreshold
from finn.transformation.streamline.reorder import MoveMulPastDWConv
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from qonnx.transformation.batchnorm_to_affine import BatchNormToAffine
from qonnx.transformation.general import ConvertDivToMul, RemoveUnusedTensors
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

from flow.finn.model_steps.resnet18 import _apply, absorb_scales, sink_transposes
from flow.finn.steps import estimate_steps


def step_mobilenetv1_streamline(model, cfg):

    # the output quantizer's offset first, before any Add is moved past its scale
    model = _apply(model, [AbsorbScalarBiasIntoMultiThreshold(), ConvertDivToMul(), BatchNormToAffine(),
                           MoveMulPastDWConv()])
    model = absorb_scales(model)
    model = model.transform(LowerConvsToMatMul())
    model = sink_transposes(model)
    model = _apply(model, [InferDataTypes(), RoundAndClipThresholds(), InferDataLayouts(), RemoveUnusedTensors()])
    return model


STEPS = estimate_steps(streamline=[step_mobilenetv1_streamline])
