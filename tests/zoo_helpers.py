"""Shared by the zoo tests: an untrained registry build at a tiny width, and checks of its artifacts."""

from __future__ import annotations

import json

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.artifacts import PROP_ACCUMULATORS, Sidecar
from flow.export import onnx_weight_ints
from flow.options import BuildOptions, resolve_plan
from flow.pipeline import build

HW_DOMAIN = "finn.custom_op.fpgadataflow"
FINAL_MODEL = "finn/intermediate_models/step_generate_estimate_reports.onnx"


def zoo_build(name, tmp_path, **options):
    """An untrained build of registry model ``name`` (A2Q init, statistics from the built-in data) into
    ``tmp_path``; returns (summary, sidecar, final FINN graph, plan)."""
    opts = BuildOptions(model=name, train=False, reports_root=tmp_path / "reports", work_root=tmp_path / "work",
                        checkpoint_root=tmp_path / "ckpt", **options)
    plan = resolve_plan(opts)
    summary = build(opts)
    sidecar = Sidecar.read(plan.work_dir / "model.onnx")
    return summary, sidecar, ModelWrapper(str(plan.work_dir / FINAL_MODEL)), plan


def check_zoo_build(summary, sidecar, final, plan, acc_bits, acc_mode="exact"):
    """What every zoo build must show: only HW layers, the checks passing, every constrained layer's
    accumulator within its P (INT<P> in target mode), the 8-bit first/last layers at their exact width, and
    non-degenerate A2Q integers. Returns the final graph's op types."""
    not_hw = [f"{n.op_type} ({n.domain})" for n in final.graph.node if not n.domain.startswith(HW_DOMAIN)]
    assert not not_hw, f"non-HW nodes left: {not_hw}"
    assert summary["weights"] == "untrained"
    assert summary["finn_check"]["passed"] and summary["finn_check"]["mismatches"] == 0
    assert sidecar.export_check.l1_bound_ok and sidecar.export_check.weights_exact
    decisions = json.loads(final.get_metadata_prop(PROP_ACCUMULATORS))
    by_layer = {d["layer"]: d for d in decisions.values()}
    assert set(by_layer) == {layer.name for layer in sidecar.layers}, "every sidecar record matches one node"
    constrained = {layer.name for layer in sidecar.layers if layer.acc_bits_target is not None}
    assert constrained, "no A2Q layer in the build"
    for name, decision in by_layer.items():
        if name in constrained:
            bits = int(decision["acc_datatype"].replace("UINT", "").replace("INT", ""))
            assert decision["acc_bits_target"] == acc_bits and decision["acc_bits_exact"] <= acc_bits, decision
            if acc_mode == "target":
                assert decision["acc_datatype"] == f"INT{acc_bits}"
            else:
                assert bits == decision["acc_bits_exact"] - (decision["acc_datatype"].startswith("UINT"))
        else:  # 8-bit first/last layers: outside A2Q, exact width
            assert decision["acc_bits_target"] is None and decision["acc_source"] == "exact"
    ints = onnx_weight_ints(ModelWrapper(str(plan.work_dir / "model.onnx")))
    for layer in sidecar.layers:
        if layer.name in constrained:
            q = ints[layer.fingerprint]
            assert (np.abs(q).sum(axis=1) > 0).all(), f"{layer.name}: a channel with all-zero integers"
    return [n.op_type for n in final.graph.node]

