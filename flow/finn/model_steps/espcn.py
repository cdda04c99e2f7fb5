"""FINN steps for ESPCN with a nearest-neighbour resize convolution (``models.espcn``).

The chain is plain (no forks), so FINN's stock streamlining does almost everything. What it lacks:

* a scale ``Mul`` in front of the ``Resize`` stays there (``Resize`` is not one of the invariants that
  ``MoveScalarLinearPastInvariants`` knows), so the convolution after the upsampling would stay float:
  :class:`MoveLinearPastNearestResize` moves it behind the ``Resize`` first;
* after lowering the convolutions, ``Resize`` is still NCHW between transposes:
  ``MakeScaleResizeNHWC`` + ``AbsorbConsecutiveTransposes`` put it in NHWC;
* finn-plus's ``step_convert_to_hw`` only looks for an op named ``Upsample``, so ``InferUpsample``
  (which also takes ``Resize``) is run explicitly before it (:func:`step_infer_upsample`).

* with one image channel, the layout transposes at the graph input and output only move a size-1 axis:
  :class:`RemoveSingleChannelIOTransposes` drops them, so no ``Transpose`` stays outside the dataflow
  partition and no ``Shuffle`` layer is built (the FINN graph takes and gives NHWC, the same bytes);
* FINN's ``SetFolding`` does not fold ``UpsampleNearestNeighbour`` (SIMD stays 1, and its two-pass
  relaxation then slows every layer down to it) and caps an MVAU's weight stream at 36 bits per PE
  (SIMD 4 for the 8-bit output layer, which runs on 9x the input pixels):
  :func:`step_sr_target_fps_parallelization` folds the upsamplers first and allows wider streams.

The final ``Mul`` by the output scale (1/255: the output integer is the pixel value) is the output
dequantization; the conversion to HW layers turns it into a float ``ElementwiseMul`` at the end of the
graph (FINN estimates no resources for it).

Shared with :mod:`flow.finn.model_steps.unet`: the transformations, :func:`tidy`, :func:`sr_steps`.
"""

from __future__ import annotations

import numpy as np
import qonnx.core.data_layout as DataLayout
from finn.builder.build_dataflow_steps import step_target_fps_parallelization
from finn.transformation.fpgadataflow.convert_to_hw.upsample import InferUpsample
from finn.transformation.streamline import Streamline
from finn.transformation.streamline.absorb import (
    AbsorbConsecutiveTransposes,
    AbsorbScalarBiasIntoMultiThreshold,
    AbsorbTransposeIntoMultiThreshold,
)
from finn.transformation.streamline.reorder import MakeScaleResizeNHWC
from onnx import helper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import (
    GiveReadableTensorNames,
    GiveUniqueNodeNames,
    RemoveUnusedTensors,
)
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

from flow.finn.steps import estimate_steps


def _attr(node, name, default=None):
    for attribute in node.attribute:
        if attribute.name == name:

            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def is_nearest_resize(model, node) -> bool:
    """A nearest-neighbour ``Resize``/``Upsample``: it only selects (copies) input elements."""
    if node is None or node.op_type not in ("Resize", "Upsample"):
        return False
    return _attr(node, "mode", "nearest") == "nearest"


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
            if len(consumers) != 1 or not is_nearest_resize(model, consumers[0]):
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
            perm = list(_attr(node, "perm"))
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
            perm = list(_attr(node, "perm"))
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


def tidy(model):
    model = model.transform(GiveUniqueNodeNames())
    model = model.transform(GiveReadableTensorNames())
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    model = model.transform(InferDataLayouts())
    return model


def streamline_chain(model):
    """Stock streamlining plus the resize rewrites, for a plain chain of convolutions and resizes."""

    model = model.transform(AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(Streamline())
    model = model.transform(MoveLinearPastNearestResize())
    model = model.transform(Streamline())
    model = model.transform(LowerConvsToMatMul())
    model = model.transform(AbsorbTransposeIntoMultiThreshold())
    model = tidy(model)
    model = model.transform(MakeScaleResizeNHWC())
    model = model.transform(AbsorbConsecutiveTransposes())
    model = tidy(model)
    model = model.transform(Streamline())
    model = model.transform(RemoveSingleChannelIOTransposes())
    model = model.transform(RemoveUnusedTensors())
    return tidy(model)


def step_espcn_streamline(model, cfg):
    """Streamline ESPCN: every scale into thresholds, convolutions lowered, resize in NHWC."""
    return streamline_chain(model)


def step_infer_upsample(model, cfg):
    """Nearest-neighbour ``Resize`` -> ``UpsampleNearestNeighbour`` (finn-plus's conversion step only
    looks for ``Upsample``)."""

    model = model.transform(InferUpsample())
    return tidy(model)


# Weight bits per PE that SetFolding may give an MVAU's SIMD. FINN's default (36) caps an 8-bit layer at
# SIMD 4; the single-channel output layer of an x3 model runs on 9x the input pixels and can then only
# reach about 150 frames/s on a 32x32 input at 100 MHz. Its weights are tiny, so wider is cheap.
MVAU_WWIDTH_MAX = 1024


def target_cycles(cfg) -> int | None:
    """Cycles per frame of the requested throughput (None when a folding file is given instead)."""
    if cfg.folding_config_file is not None or not cfg.target_fps:
        return None
    return int(1e9 / cfg.synth_clk_period_ns / cfg.target_fps)


def fold_upsamplers(model, cycles: int):
    """SIMD of every ``UpsampleNearestNeighbour``: the smallest divisor of its channels that meets
    ``cycles`` (FINN's SetFolding leaves these at SIMD 1 and then relaxes every layer to their pace)."""

    for node in model.graph.node:
        if not node.op_type.startswith("UpsampleNearestNeighbour"):
            continue
        inst = getCustomOp(node)
        channels = inst.get_nodeattr("NumChannels")
        for simd in [d for d in range(1, channels + 1) if channels % d == 0]:
            inst.set_nodeattr("SIMD", simd)
            if inst.get_exp_cycles() <= cycles:
                break
    return model


def step_sr_target_fps_parallelization(model, cfg):
    """FINN's ``step_target_fps_parallelization`` with the upsamplers folded first and a wider MVAU
    weight stream allowed (see ``MVAU_WWIDTH_MAX``); unchanged when a folding file is given."""

    cycles = target_cycles(cfg)
    if cycles is None:
        return step_target_fps_parallelization(model, cfg)
    model = fold_upsamplers(model, cycles)
    saved = cfg.mvau_wwidth_max
    cfg.mvau_wwidth_max = max(saved, MVAU_WWIDTH_MAX)
    try:
        return step_target_fps_parallelization(model, cfg)
    finally:
        cfg.mvau_wwidth_max = saved


def sr_steps(streamline: list, before_qonnx: list | None = None) -> list:
    """The estimate-only step list for a super-resolution topology: ``streamline`` in place of
    ``step_streamline``, ``InferUpsample`` before the HW conversion, the folding step above."""
    steps = estimate_steps(streamline=streamline, before_convert=[step_infer_upsample])
    steps[steps.index("step_target_fps_parallelization")] = step_sr_target_fps_parallelization
    if before_qonnx:
        index = steps.index("step_qonnx_to_finn")
        steps[index:index] = before_qonnx
    return steps


STEPS = sr_steps([step_espcn_streamline])
