"""The flow's FINN build steps, each a plain function ``step_x(model, cfg) -> model``, and the step list.

One step list serves every model (:data:`ESTIMATE_STEPS`): the steps that depend on the topology read the
graph's patterns (:mod:`flow.finn.topology`). A2Q data travels inside the model as metadata properties (set
by :mod:`flow.finn.run`; names in :mod:`flow.artifacts`): the export sidecar, the accumulator mode
("exact" or "target"), the task.
"""

from __future__ import annotations

import importlib
import json

from finn.builder.build_dataflow_steps import (
    build_dataflow_step_lookup,
    step_apply_folding_config,
    step_streamline,
    step_target_fps_parallelization,
)
from finn.transformation.fpgadataflow.convert_to_hw.upsample import InferUpsample
from finn.transformation.fpgadataflow.minimize_weight_bit_width import MinimizeWeightBitWidth
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.insert_topk import InsertTopK

from flow.artifacts import PROP_ACC_MODE, PROP_ALLOW_UNMATCHED, PROP_SIDECAR, PROP_TASK, Sidecar
from flow.core.errors import FlowError
from flow.core.log import log
from flow.finn.rewrites import KeepWideningTruncWidth, SplitSharedRelu
from flow.finn.streamline import streamline_classifier, streamline_resize, tidy
from flow.finn.topology import read_topology, step_check_hw_layers, step_check_mappable
from flow.finn.transformations import SetA2QAccumulatorWidth

FOLDING_INT_ATTRS = ("PE", "SIMD", "parallel_window", "depth")


def read_sidecar(model) -> Sidecar:
    """The export sidecar the model carries (an empty one when it carries none)."""
    text = model.get_metadata_prop(PROP_SIDECAR)
    return Sidecar.from_json(text, "the model's sidecar property") if text else Sidecar(layers=[], sidecar=False)


def step_insert_topk(model, cfg):
    """Classification nets end in TopK (k=1), which FINN turns into LabelSelect after streamlining
    absorbs the final scalar scale, so that no MVAU is the last layer of the dataflow graph."""
    if (model.get_metadata_prop(PROP_TASK) or "classification") != "classification":
        return model
    if model.get_nodes_by_op_type("TopK"):
        return model
    model = model.transform(InsertTopK(k=1))
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    return model


def step_a2q_accumulators(model, cfg):
    """Set every MVAU/VVAU accumulator per A2Q, then round/clip thresholds into that range and
    narrow their datatype (FINN's own RoundAndClipThresholds and MinimizeWeightBitWidth)."""
    sidecar = read_sidecar(model)
    mode = model.get_metadata_prop(PROP_ACC_MODE) or "exact"
    allow_unmatched = model.get_metadata_prop(PROP_ALLOW_UNMATCHED) == "1"
    model = model.transform(SetA2QAccumulatorWidth(sidecar.layers, mode, allow_unmatched))
    model = model.transform(InferDataTypes())
    model = model.transform(RoundAndClipThresholds())
    model = model.transform(InferDataTypes())
    model = model.transform(MinimizeWeightBitWidth())
    model = model.transform(InferDataTypes())
    return model


def check_folding(model, folding_path) -> None:
    """A folding file must fit the graph it folds: every entry names one of its layers (FINN would silently
    ignore the others and leave the layer at PE=SIMD=1) and PE/SIMD are whole numbers >= 1."""
    try:
        folding = json.loads(open(folding_path).read())
    except (OSError, json.JSONDecodeError) as err:
        raise FlowError(f"folding file {folding_path} cannot be read: {err}", option="folding") from None
    layers = [node.name for node in model.graph.node if node.domain.startswith("finn.custom_op.fpgadataflow")]
    unmatched = sorted(name for name in folding if name != "Defaults" and name not in layers)
    if unmatched:
        raise FlowError(f"folding file {folding_path}: entries {unmatched} name no layer of this graph; its layers: "
                        f"{', '.join(layers)}", option="folding")
    for name, attrs in folding.items():
        if name == "Defaults":
            continue
        if not isinstance(attrs, dict):
            raise FlowError(f"folding file {folding_path}: entry {name!r} must be an object of attributes", option="folding")
        for attr in FOLDING_INT_ATTRS:
            value = attrs.get(attr)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise FlowError(f"folding file {folding_path}: {name}.{attr} must be a whole number >= 1, got {value!r}",
                                option="folding")


def step_checked_folding_config(model, cfg):
    """FINN's ``step_apply_folding_config`` after :func:`check_folding` of the folding file."""
    if cfg.folding_config_file is not None:
        check_folding(model, cfg.folding_config_file)
    return step_apply_folding_config(model, cfg)


def step_prepare_qonnx(model, cfg):
    """Before FINN's QONNX conversion: one ReLU per consumer and no widening truncation (both exact; no-ops
    on graphs without these patterns)."""
    return model.transform(SplitSharedRelu()).transform(KeepWideningTruncWidth())


def step_topology_streamline(model, cfg):
    """Streamlining chosen from the graph: resize convolutions, residual forks/joins and depthwise
    convolutions get the flow's targeted procedures (:mod:`flow.finn.streamline`), a plain chain FINN's own."""
    topology = read_topology(model)
    log(f"[finn] topology: {topology.describe()}")
    if topology.resize:
        return streamline_resize(model, depthwise=topology.depthwise)
    if topology.residual or topology.depthwise:
        return streamline_classifier(model, residual=topology.residual, depthwise=topology.depthwise)
    return step_streamline(model, cfg)


def step_infer_upsample(model, cfg):
    """Nearest-neighbour ``Resize`` -> ``UpsampleNearestNeighbour`` (finn-plus's conversion step only
    looks for ``Upsample``); a no-op without resizes."""
    if not any(node.op_type in ("Resize", "Upsample") for node in model.graph.node):
        return model
    return tidy(model.transform(InferUpsample()))


# Weight bits per PE that SetFolding may give an MVAU's SIMD in a graph with upsamplers. FINN's default (36)
# caps an 8-bit layer at SIMD 4; the single-channel output layer of an x3 super-resolution model runs on 9x
# the input pixels and can then only reach about 150 frames/s on a 32x32 input at 100 MHz. Its weights are
# tiny, so wider is cheap.
MVAU_WWIDTH_MAX_UPSAMPLING = 1024


def target_cycles(cfg) -> int | None:
    """Cycles per frame of the requested throughput (None when a folding file is given instead)."""
    if cfg.folding_config_file is not None or not cfg.target_fps:
        return None
    return int(1e9 / cfg.synth_clk_period_ns / cfg.target_fps)


def fold_upsamplers(model, cycles: int):
    """SIMD of every ``UpsampleNearestNeighbour``: the smallest divisor of its channels that meets ``cycles``
    (FINN's SetFolding leaves these at SIMD 1 and then relaxes every layer to their pace)."""
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


def step_folding_for_target_fps(model, cfg):
    """FINN's ``step_target_fps_parallelization``; in a graph with upsamplers, these are folded first and a
    wider MVAU weight stream is allowed (:data:`MVAU_WWIDTH_MAX_UPSAMPLING`). Nothing when a folding file is given."""
    cycles = target_cycles(cfg)
    upsampling = any(node.op_type.startswith("UpsampleNearestNeighbour") for node in model.graph.node)
    if cycles is None or not upsampling:
        return step_target_fps_parallelization(model, cfg)
    model = fold_upsamplers(model, cycles)
    saved = cfg.mvau_wwidth_max
    cfg.mvau_wwidth_max = max(saved, MVAU_WWIDTH_MAX_UPSAMPLING)
    try:
        return step_target_fps_parallelization(model, cfg)
    finally:
        cfg.mvau_wwidth_max = saved


ESTIMATE_STEPS = [
    step_check_mappable,
    step_prepare_qonnx,
    "step_qonnx_to_finn",
    "step_tidy_up",
    step_insert_topk,
    step_topology_streamline,
    step_infer_upsample,
    "step_convert_to_hw",
    step_check_hw_layers,
    "step_minimize_bit_width_initial",
    "step_create_dataflow_partition",
    "step_specialize_layers",
    step_folding_for_target_fps,
    step_checked_folding_config,
    "step_minimize_bit_width",
    step_a2q_accumulators,
    "step_generate_estimate_reports",
]


def load_step_list(reference: str | None) -> list:
    """The step list of an expert's override (None: :data:`ESTIMATE_STEPS`): step names separated by commas,
    each one of FINN's, one of the flow's or ``module:function``; or one ``module:attribute`` naming a list."""
    if not reference:
        return list(ESTIMATE_STEPS)
    own = {step.__name__: step for step in ESTIMATE_STEPS if not isinstance(step, str)}

    def resolve(name: str):
        name = name.strip()
        if name in build_dataflow_step_lookup:
            return name
        if name in own:
            return own[name]
        module_name, _, attribute = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError):
            raise FlowError(f"unknown build step {name!r}: give one of FINN's steps, one of the flow's "
                            f"({', '.join(own)}) or module:function", option="steps") from None

    steps = [resolve(name) for name in reference.split(",") if name.strip()]
    if len(steps) == 1 and isinstance(steps[0], (list, tuple)):
        return list(steps[0])
    return steps
