"""The build report: ``summary.json`` (stable, machine-readable) and ``summary.md`` (rendered from it).

Format version 1, documented in README.md. Fields are only ever added, never renamed.
Resource figures come from FINN's analytical estimates (``estimate_layer_resources.json``);
FINN estimates 0 for several layer types and FIFOs are not part of an estimate-only build, so the
totals are lower bounds (``estimate_note`` says so in every summary).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from flow import accumulator as acc

SUMMARY_FORMAT = 1
ESTIMATE_NOTE = (
    "FINN analytical estimates. FINN reports 0 resources for FMPadding, Pool, UpsampleNearestNeighbour, "
    "StreamingConcat, DuplicateStreams, elementwise layers and LabelSelect, and an estimate-only build has "
    "no FIFOs: totals are lower bounds."
)
LAYER_ATTRS = ("MW", "MH", "PE", "SIMD", "Channels", "Kernel")


def _attr(inst, name):
    try:
        return inst.get_nodeattr(name)
    except (AttributeError, Exception):
        return None


def layer_rows(model, resources: dict, cycles: dict, sidecar: dict) -> list[dict]:
    """One row per HW layer of the final FINN graph, in graph order."""
    from qonnx.custom_op.registry import getCustomOp

    from flow.export import weight_fingerprint
    from flow.transformations import is_dot_product_layer, layer_weights_by_channel

    decisions = json.loads(model.get_metadata_prop("a2q_accumulators") or "{}")
    by_fingerprint = {layer["fingerprint"]: layer for layer in sidecar.get("layers", [])}
    rows = []
    for node in model.graph.node:
        if not node.domain.startswith("finn.custom_op.fpgadataflow"):
            continue
        inst = getCustomOp(node)
        res = resources.get(node.name, {})
        row = {
            "name": node.name,
            "op_type": node.op_type,
            "layer": None,
            "mw": _attr(inst, "MW"),
            "mh": _attr(inst, "MH"),
            "pe": _attr(inst, "PE"),
            "simd": _attr(inst, "SIMD"),
            "k": None,
            "weight_bits": None,
            "weight_datatype": None,
            "input_bits": None,
            "input_datatype": None,
            "quantizer": None,
            "acc_bits_target": None,
            "acc_bits_datatype_bound": None,
            "acc_bits_exact": None,
            "acc_datatype": None,
            "threshold_datatype": None,
            "lut": res.get("LUT"),
            "bram18": res.get("BRAM_18K"),
            "uram": res.get("URAM"),
            "dsp": res.get("DSP"),
            "cycles": cycles.get(node.name),
        }
        if is_dot_product_layer(node):
            weights = layer_weights_by_channel(model, node)
            meta = by_fingerprint.get(weight_fingerprint(weights), {})
            idt = inst.get_input_datatype(0)
            wdt = inst.get_input_datatype(1)
            decision = decisions.get(node.name, {})
            k = weights.shape[1]
            weight_bits = meta.get("weight_bits", wdt.bitwidth())
            row.update(
                layer=meta.get("name"),
                k=int(k),
                weight_bits=weight_bits,
                weight_datatype=wdt.name,
                input_bits=idt.bitwidth(),
                input_datatype=idt.name,
                quantizer=meta.get("quantizer"),
                acc_bits_target=meta.get("acc_bits_target"),
                acc_bits_datatype_bound=acc.datatype_bound_bits(k, weight_bits, idt.bitwidth(), idt.signed()),
                acc_bits_exact=decision.get("acc_bits_exact", acc.exact_acc_bits(weights, idt.bitwidth(), idt.signed())),
                acc_datatype=_attr(inst, "accDataType"),
                acc_source=decision.get("acc_source"),
            )
            if not _attr(inst, "noActivation") and len(node.input) > 2:
                row["threshold_datatype"] = model.get_tensor_datatype(node.input[2]).name
        elif node.op_type.startswith("Thresholding"):
            row["threshold_datatype"] = model.get_tensor_datatype(node.input[1]).name
            row["input_datatype"] = inst.get_input_datatype(0).name
        rows.append(row)
    return rows


SYNTH_FIELDS = ("lut_synth", "ff_synth", "lutram_synth", "carry_synth", "bram18_synth", "dsp_synth")
# FINN's estimate keys standing in for synthesis figures of layers that could not be synthesized
ESTIMATE_FOR_SYNTH = {"lut_synth": "lut", "bram18_synth": "bram18", "dsp_synth": "dsp"}


def add_synthesis(rows: list[dict], synth: dict | None, rtlsim: dict | None):
    """Per layer: the ``*_synth`` figures and ``resource_source``; the ``rtlsim_check`` where run."""
    for row in rows:
        figures = (synth or {}).get(row["name"])
        for key in SYNTH_FIELDS:
            row[key] = figures.get(key) if figures else None
        row["resource_source"] = "open_synthesis" if figures else "finn_estimate"
        row["rtlsim_check"] = (rtlsim or {}).get(row["name"])


def synth_totals(rows: list[dict]) -> dict:
    """Totals of the synthesized figures; layers without synthesis add FINN's estimate (LUT, BRAM, DSP)."""
    totals = {}
    for key in SYNTH_FIELDS:
        fallback = ESTIMATE_FOR_SYNTH.get(key)
        totals[key] = sum(
            (row[key] if row["resource_source"] == "open_synthesis" else (row.get(fallback) or 0) if fallback else 0) or 0
            for row in rows
        )
    mixed = any(row["resource_source"] != "open_synthesis" and (row.get("lut") or row.get("bram18")) for row in rows)
    totals["synth_resource_source"] = "open_synthesis+finn_estimate" if mixed else "open_synthesis"
    return totals


def totals_of(rows: list[dict], performance: dict, clock_ns: float) -> dict:
    def total(key):
        return sum(row[key] or 0 for row in rows)

    max_cycles = performance.get("max_cycles") or max((row["cycles"] or 0 for row in rows), default=0)
    return {
        "lut": total("lut"),
        "bram18": total("bram18"),
        "uram": total("uram"),
        "dsp": total("dsp"),
        "max_cycles": max_cycles,
        "fps_at_clock": (1e9 / clock_ns / max_cycles) if max_cycles else None,
    }


def fit_check(totals: dict, board: dict) -> dict:
    """Whether the estimate fits the board: per resource, used / available."""
    available = board["resources"]
    utilization = {key: (totals[key] / available[key] if available[key] else (0.0 if not totals[key] else None))
                   for key in ("lut", "bram18", "uram", "dsp")}
    fits = all(u is not None and u <= 1.0 for u in utilization.values())
    return {"fits": fits, "utilization": utilization, "available": available}


def write_summary(report_dir: Path, final_model_path: Path, finn_report_dir: Path, sidecar: dict, board: dict,
                  acc_mode: str, folding: Path | None, target_fps, finn_check: dict, options: dict,
                  vivado: dict | None = None, synth: dict | None = None, rtlsim: dict | None = None,
                  standalone_thresholds: bool = False) -> dict:
    """Collect FINN's reports and our A2Q data into ``report_dir``; returns the summary dict."""
    from qonnx.core.modelwrapper import ModelWrapper

    def read(name):
        path = finn_report_dir / name
        return json.loads(path.read_text()) if path.is_file() else {}

    model = ModelWrapper(str(final_model_path))
    resources = read("estimate_layer_resources.json")
    cycles = read("estimate_layer_cycles.json")
    performance = read("estimate_network_performance.json")
    rows = layer_rows(model, resources, cycles, sidecar)
    add_synthesis(rows, synth, rtlsim)
    totals = totals_of(rows, performance, board["clock_ns"])
    if synth is not None:
        totals.update(synth_totals(rows))
    totals.update(vivado or {})
    summary = {
        "format": SUMMARY_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": sidecar.get("model"),
        "quantizer": sidecar.get("quantizer"),
        "acc_bits_target": sidecar.get("acc_bits_target"),
        "acc_mode": acc_mode,
        "board": board["name"],
        "fpga_part": board["fpga_part"],
        "clock_ns": board["clock_ns"],
        "folding": folding.stem if folding else None,
        "target_fps": None if folding else target_fps,
        "weights": sidecar.get("weights"),
        "test_top1": sidecar.get("test_top1"),
        "export_check": sidecar.get("export_check"),
        "finn_check": finn_check,
        "layers": rows,
        "totals": totals,
        "board_fit": fit_check(totals, board),
        "resource_source": "vivado" if vivado else ("open_synthesis" if synth else "finn_estimate"),
        "standalone_thresholds": standalone_thresholds,
        "estimate_note": ESTIMATE_NOTE,
        "options": options,
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    finn_copy = report_dir / "finn_reports"
    finn_copy.mkdir(exist_ok=True)
    for path in finn_report_dir.glob("*.json"):
        shutil.copy(path, finn_copy / path.name)
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (report_dir / "summary.md").write_text(render_markdown(summary))
    return summary


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_markdown(summary: dict) -> str:
    """A person's view of ``summary.json``: header facts, per-layer table, totals."""
    lines = [
        f"# {summary['model']} — {summary['quantizer']} P={_fmt(summary['acc_bits_target'])} on {summary['board']}",
        "",
        f"- FPGA part: `{summary['fpga_part']}`, clock {summary['clock_ns']} ns; folding: {_fmt(summary['folding'])}"
        + (f", target {summary['target_fps']} fps" if summary.get("target_fps") else ""),
        f"- Weights: {summary['weights']}; test top-1: "
        + (f"{100 * summary['test_top1']:.2f}%" if summary.get("test_top1") is not None else "-"),
        f"- Accumulator mode: `{summary['acc_mode']}` (target: INT<P> as trained; exact: smallest type for the weights)",
    ]
    export = summary.get("export_check") or {}
    if export:
        lines.append(f"- Export check: max |QONNX - torch| = {_fmt(export.get('max_abs_diff'))}, "
                     f"l1 bounds hold: {export.get('l1_bound_ok')}, integer weights exact: {export.get('weights_exact')}")
    check = summary["finn_check"]
    lines.append(f"- FINN-vs-QONNX check ({check['compared']}, {check['samples']} samples): "
                 f"max abs diff {_fmt(check['max_abs_diff'])} — {'pass' if check['passed'] else 'FAIL'}")
    fit = summary["board_fit"]
    util = ", ".join(f"{k} {100 * v:.1f}%" for k, v in fit["utilization"].items() if v is not None)
    lines += [f"- Fits {summary['board']}: {'yes' if fit['fits'] else 'NO'} ({util})", ""]
    columns = ["name", "op_type", "layer", "mw", "mh", "pe", "simd", "weight_bits", "input_bits", "acc_bits_target",
               "acc_bits_datatype_bound", "acc_bits_exact", "acc_datatype", "threshold_datatype", "lut", "bram18", "dsp", "cycles"]
    if summary["totals"].get("lut_synth") is not None:
        columns += ["lut_synth", "ff_synth", "carry_synth", "bram18_synth", "dsp_synth", "resource_source"]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for row in summary["layers"]:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    totals = summary["totals"]
    lines += [
        "",
        f"**Totals:** LUT {_fmt(totals['lut'])}, BRAM18 {_fmt(totals['bram18'])}, URAM {_fmt(totals['uram'])}, "
        f"DSP {_fmt(totals['dsp'])}; slowest layer {_fmt(totals['max_cycles'])} cycles -> "
        f"{_fmt(totals['fps_at_clock'])} frames/s at {summary['clock_ns']} ns.",
    ]
    if totals.get("lut_synth") is not None:
        lines += [
            "",
            f"**Open synthesis (Yosys synth_xilinx, {totals['synth_resource_source']}):** LUT {_fmt(totals['lut_synth'])}, "
            f"FF {_fmt(totals['ff_synth'])}, CARRY {_fmt(totals['carry_synth'])}, BRAM18 {_fmt(totals['bram18_synth'])}, "
            f"DSP {_fmt(totals['dsp_synth'])}.",
        ]
    checks = {row["name"]: row.get("rtlsim_check") for row in summary["layers"] if row.get("rtlsim_check")}
    for name, check in checks.items():
        line = f"- RTL simulation of {name}: {check['samples']} sample inputs bit-exact: {check['samples_exact']}"
        if "acc_bits" in check:
            line += (f"; adversarial inputs exact at {check['acc_bits']} bits: {check['exact_at_p']}, overflow seen at "
                     f"{check['acc_bits'] - 1} bits: {_fmt(check['overflow_detected_at_p_minus_1'])}")
        lines.append(line)
    lines += [
        "",
        f"_{summary['estimate_note']}_",
        "",
    ]
    return "\n".join(lines)
