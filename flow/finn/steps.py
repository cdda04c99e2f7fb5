"""The flow's own FINN build steps, each a plain function ``step_x(model, cfg) -> model``.

A2Q data travels inside the model as metadata properties (set by :mod:`flow.finn.run`; names in
:mod:`flow.artifacts`): the export sidecar, the accumulator mode ("exact" or "target"), the task.
"""

from __future__ import annotations

import importlib
import json

from finn.builder.build_dataflow_steps import step_apply_folding_config
from finn.transformation.fpgadataflow.minimize_weight_bit_width import MinimizeWeightBitWidth
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.insert_topk import InsertTopK

from flow.artifacts import PROP_ACC_MODE, PROP_ALLOW_UNMATCHED, PROP_SIDECAR, PROP_TASK, Sidecar
from flow.core.errors import FlowError
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


ESTIMATE_STEPS = [
    "step_qonnx_to_finn",
    "step_tidy_up",
    step_insert_topk,
    "step_streamline",
    "step_convert_to_hw",
    "step_minimize_bit_width_initial",
    "step_create_dataflow_partition",
    "step_specialize_layers",
    "step_target_fps_parallelization",
    step_checked_folding_config,
    "step_minimize_bit_width",
    step_a2q_accumulators,
    "step_generate_estimate_reports",
]


def estimate_steps(streamline: list | None = None, before_convert: list | None = None) -> list:
    """The estimate-only step list with ``step_streamline`` replaced by ``streamline`` (a list of
    steps, names or functions) and ``before_convert`` inserted ahead of ``step_convert_to_hw``.
    Topology-specific models build their list with this, so the A2Q steps stay in place."""
    steps = []
    for step in ESTIMATE_STEPS:
        if step == "step_streamline" and streamline is not None:
            steps.extend(streamline)
            continue
        if step == "step_convert_to_hw" and before_convert:
            steps.extend(before_convert)
        steps.append(step)
    return steps


def load_step_list(reference: str | None) -> list:
    """Resolve a ``"module:attribute"`` step-list reference (None: the default estimate steps)."""
    if not reference:
        return list(ESTIMATE_STEPS)
    module_name, _, attribute = reference.partition(":")
    steps = getattr(importlib.import_module(module_name), attribute)
    return list(steps() if callable(steps) else steps)
