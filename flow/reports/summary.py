"""The build report: ``summary.json`` (stable, machine-readable) and ``summary.md`` (rendered from it).

Format version :data:`~flow.artifacts.SUMMARY_FORMAT`, documented in README.md; fields are only ever
added. The report is assembled from the stages' artifacts alone (sidecar, FINN outcome, checks,
synthesis and simulation results). FINN estimates 0 for several layer types and FIFOs are not part of
an estimate-only build, so FINN's totals are lower bounds (``estimate_note`` says so in every summary).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from flow.artifacts import FinnCheck, FinnOutcome, LayerReport, RtlsimCheck, Sidecar, Summary, write_text_atomic
from flow.core.config import Board
from flow.core.log import log
from flow.core.resource_model import RESOURCE_MODEL_FILE, LayerShape, ResourceModel, bits_of, resource_model_file

ESTIMATE_NOTE = (
    "FINN analytical estimates. FINN reports 0 resources for FMPadding, Pool, UpsampleNearestNeighbour, "
    "StreamingConcat, DuplicateStreams, elementwise layers and LabelSelect, and an estimate-only build has "
    "no FIFOs: totals are lower bounds."
)
SYNTH_FIELDS = ("lut_synth", "ff_synth", "lutram_synth", "carry_synth", "bram18_synth", "dsp_synth")
# FINN's estimate standing in for synthesis figures of layers that were not synthesized
ESTIMATE_FOR_SYNTH = {"lut_synth": "lut", "bram18_synth": "bram18", "dsp_synth": "dsp"}
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
FINN_REPORTS = "finn_reports"


@dataclass(frozen=True)
class BuildFacts:
    """What the report says about how the build was asked for: its name, board, accumulator mode,
    folding (name) or target throughput, options as given, and the digests of its inputs."""

    build: str
    board: Board
    acc_mode: str
    folding: str | None
    target_fps: int | None
    standalone_thresholds: bool
    options: dict
    identity: dict


def add_synthesis(rows: list[LayerReport], synth: dict | None, rtlsim: dict[str, RtlsimCheck] | None) -> None:
    """Per layer: the ``*_synth`` figures and ``resource_source``; the ``rtlsim_check`` where run."""
    for row in rows:
        figures = (synth or {}).get(row.name)
        failed = figures is not None and "error" in figures
        for key in SYNTH_FIELDS:
            setattr(row, key, figures.get(key) if figures and not failed else None)
        row.resource_source = "synthesis_failed" if failed else ("open_synthesis" if figures else "finn_estimate")
        row.synthesis_error = figures["error"].splitlines()[0] if failed else None
        row.rtlsim_check = (rtlsim or {}).get(row.name)


def add_model_figures(rows: list[LayerReport], model: ResourceModel | None) -> None:
    """Per MVAU/VVAU and Thresholding layer: ``lut_model``/``ff_model`` from the P-aware resource model (an
    MVAU/VVAU: datapath and weight memory, plus its thresholds where they are inside) and their
    ``model_basis`` ("rtl_fit": the layer is the RTL the model was fitted to; "rtl_equivalent": an HLS layer,
    figured as FINN's RTL MVU, its weight streamer and a Thresholding layer of its shape). Other layers get
    none."""
    if model is None:
        return
    for row in rows:
        kind = row.op_type.split("_")[0]
        parts = []
        if kind in ("MVAU", "VVAU") and bits_of(row.acc_datatype):
            parts.append(LayerShape("mvau", pe=row.pe or 1, acc_bits=bits_of(row.acc_datatype), simd=row.simd or 1,
                                    weight_bits=bits_of(row.weight_datatype) or 0, input_bits=row.input_bits or 0))
        if kind in ("MVAU", "VVAU") and parts and row.weight_memory_depth:
            parts.append(LayerShape("weight_memory", pe=row.pe or 1, acc_bits=0, simd=row.simd or 1,
                                    weight_bits=bits_of(row.weight_datatype) or 0, depth=row.weight_memory_depth))
        if row.thresholds and bits_of(row.threshold_datatype) and kind in ("MVAU", "VVAU", "Thresholding"):
            # thresholds shared by all channels: FINN's Thresholding_rtl stores one set per PE
            channels = (row.pe or 1) if row.threshold_rows == 1 else (row.mh or 1)
            parts.append(LayerShape("thresholding", pe=row.pe or 1, acc_bits=bits_of(row.threshold_datatype),
                                    channels=channels, thresholds=row.thresholds))
        if not parts:
            continue
        figures = [model.predict(part) for part in parts]
        row.lut_model = sum(f["lut"] for f in figures)
        row.ff_model = sum(f["ff"] for f in figures)
        row.model_basis = "rtl_fit" if row.op_type in ("MVAU_rtl", "Thresholding_rtl") else "rtl_equivalent"


def model_totals(rows: list[LayerReport], model: ResourceModel | None = None) -> dict:
    """Totals by the resource model: modelled layers' figures, FINN's LUT estimate for the other layers
    (``lut_model``); FFs of the modelled layers only (``ff_model``); the Yosys family of the fit
    (``model_family``)."""
    if not any(row.lut_model is not None for row in rows):
        return {}
    totals = {
        "lut_model": sum((row.lut_model if row.lut_model is not None else row.lut) or 0 for row in rows),
        "ff_model": sum(row.ff_model or 0 for row in rows),
    }
    if model is not None:
        totals["model_family"] = model.family
    return totals


def load_resource_model(family: str = "xc7") -> ResourceModel | None:
    """The model calibrated for the Yosys ``family`` in build_configs/ (the 7-series fit where the family has
    none of its own), or None (with a line saying so) when there is none."""
    path = resource_model_file(family)
    if not path.is_file():
        path = RESOURCE_MODEL_FILE
    if not path.is_file():
        log(f"[report] no resource model at {RESOURCE_MODEL_FILE} (make calibrate writes it): no lut_model figures")
        return None
    return ResourceModel.read(path)


def synth_totals(rows: list[LayerReport]) -> dict:
    """Totals of the synthesized figures; layers without synthesis add FINN's estimate (LUT, BRAM, DSP)."""
    totals = {}
    for key in SYNTH_FIELDS:
        fallback = ESTIMATE_FOR_SYNTH.get(key)
        totals[key] = sum(
            (getattr(row, key) if row.resource_source == "open_synthesis" else (getattr(row, fallback) or 0) if fallback else 0) or 0
            for row in rows
        )
    mixed = any(row.resource_source != "open_synthesis" and (row.lut or row.bram18) for row in rows)
    totals["synth_resource_source"] = "open_synthesis+finn_estimate" if mixed else "open_synthesis"
    return totals


def estimate_totals(rows: list[LayerReport], max_cycles: int | None, clock_ns: float) -> dict:
    def total(key):
        return sum(getattr(row, key) or 0 for row in rows)

    max_cycles = max_cycles or max((row.cycles or 0 for row in rows), default=0)
    return {
        "lut": total("lut"),
        "bram18": total("bram18"),
        "uram": total("uram"),
        "dsp": total("dsp"),
        "max_cycles": max_cycles,
        "fps_at_clock": (1e9 / clock_ns / max_cycles) if max_cycles else None,
    }


# The figures a fit check can use, best first: {board resource: totals key}.
FIT_SOURCES = (
    ("vivado", {"lut": "lut_vivado", "ff": "ff_vivado", "bram18": "bram18_vivado", "uram": "uram_vivado",
                "dsp": "dsp_vivado"}),
    ("open_synthesis", {"lut": "lut_synth", "ff": "ff_synth", "bram18": "bram18_synth", "uram": "uram",
                        "dsp": "dsp_synth"}),
    ("resource_model", {"lut": "lut_model", "ff": "ff_model", "bram18": "bram18", "uram": "uram", "dsp": "dsp"}),
    ("finn_estimate", {"lut": "lut", "bram18": "bram18", "uram": "uram", "dsp": "dsp"}),
)


def fit_check(totals: dict, board: Board) -> dict:
    """Whether the build fits the board, judged on the best figures it has (Vivado's, then open synthesis,
    then FINN's estimate; ``source`` says which): per resource, used / available. FINN estimates no FFs, so
    an estimate-only fit leaves FF out."""
    source, keys = next((name, keys) for name, keys in FIT_SOURCES if totals.get(keys["lut"]) is not None)
    if source == "open_synthesis":
        source = totals.get("synth_resource_source", source)
    available = board.resources
    utilization = {}
    for resource, key in keys.items():
        used = totals.get(key)
        utilization[resource] = (None if used is None else used / available[resource] if available[resource]
                                 else (0.0 if not used else None))
    fits = all(u is not None and u <= 1.0 for u in utilization.values())
    return {"fits": fits, "source": source, "utilization": utilization, "available": available}


def make_summary(facts: BuildFacts, sidecar: Sidecar, finn: FinnOutcome, finn_check: FinnCheck,
                 synth: dict | None = None, rtlsim: dict[str, RtlsimCheck] | None = None,
                 vivado: dict | None = None, resource_model: ResourceModel | None = None) -> Summary:
    """The summary of one build from its artifacts."""
    rows = finn.layers
    add_synthesis(rows, synth, rtlsim)
    add_model_figures(rows, resource_model)
    totals = estimate_totals(rows, finn.max_cycles, facts.board.clock_ns)
    totals.update(model_totals(rows, resource_model))
    if synth is not None:
        totals.update(synth_totals(rows))
    totals.update(vivado or {})
    return Summary(
        build=facts.build,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=sidecar.model,
        quantizer=sidecar.quantizer,
        acc_bits_target=sidecar.acc_bits_target,
        acc_mode=facts.acc_mode,
        board=facts.board.name,
        fpga_part=facts.board.fpga_part,
        clock_ns=facts.board.clock_ns,
        folding=facts.folding,
        target_fps=None if facts.folding else facts.target_fps,
        weights=sidecar.weights,
        test_top1=sidecar.test_top1,
        test_psnr=sidecar.test_psnr,
        export_check=sidecar.export_check,
        finn_check=finn_check,
        layers=rows,
        totals=totals,
        board_fit=fit_check(totals, facts.board),
        resource_source="vivado" if vivado else ("open_synthesis" if synth else "finn_estimate"),
        standalone_thresholds=facts.standalone_thresholds,
        estimate_note=ESTIMATE_NOTE,
        options=facts.options,
        identity=facts.identity,
    )


def write_report(report_dir: Path, summary: Summary, finn_report_dir: Path | None) -> dict[str, Path]:
    """Write ``summary.json``, ``summary.md`` and a copy of FINN's JSON reports into ``report_dir``.

    ``summary.json`` is written last and atomically: its presence marks a finished report."""
    report_dir.mkdir(parents=True, exist_ok=True)
    finn_copy = report_dir / FINN_REPORTS
    finn_copy.mkdir(exist_ok=True)
    for path in sorted(Path(finn_report_dir).glob("*.json")) if finn_report_dir else []:
        shutil.copy(path, finn_copy / path.name)
    write_text_atomic(report_dir / SUMMARY_MD, render_markdown(summary))
    write_text_atomic(report_dir / SUMMARY_JSON, summary.to_json())
    return {"json": report_dir / SUMMARY_JSON, "md": report_dir / SUMMARY_MD, "finn_reports": finn_copy}


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_markdown(summary: Summary) -> str:
    """A person's view of ``summary.json``: header facts, per-layer table, totals."""
    s = summary
    quality = []
    if s.test_top1 is not None:
        quality.append(f"test top-1 {100 * s.test_top1:.2f}%")
    if s.test_psnr is not None:
        quality.append(f"test PSNR {s.test_psnr:.2f} dB")
    lines = [
        f"# {s.model} — {s.quantizer}{'' if s.acc_bits_target is None else f' P={s.acc_bits_target}'} on {s.board}",
        "",
        f"- Build: `{_fmt(s.build)}`; FPGA part: `{s.fpga_part}`, clock {s.clock_ns} ns; folding: {_fmt(s.folding)}"
        + (f", target {s.target_fps} fps" if s.target_fps else ""),
        f"- Weights: {s.weights}; " + (", ".join(quality) or "quality: -"),
        f"- Accumulator mode: `{s.acc_mode}` (exact: smallest type for the weights, never above P; target: INT<P> as trained)",
    ]
    if s.export_check is not None:
        e = s.export_check
        lines.append(f"- Export check: max |QONNX - torch| = {_fmt(e.max_abs_diff)}, l1 bounds hold: {e.l1_bound_ok}, "
                     f"integer weights exact: {e.weights_exact}")
    c = s.finn_check
    lines.append(f"- FINN-vs-QONNX check ({c.compared}, {c.samples} samples): max abs diff {_fmt(c.max_abs_diff)}, "
                 f"{c.mismatches} differing elements — {'pass' if c.passed else 'FAIL'}")
    fit = s.board_fit
    util = ", ".join(f"{k} {100 * v:.1f}%" for k, v in fit["utilization"].items() if v is not None)
    lines += [f"- Fits {s.board}: {'yes' if fit['fits'] else 'NO'} ({util}; from {fit.get('source', 'finn_estimate')})",
              ""]
    columns = ["name", "op_type", "layer", "mw", "mh", "pe", "simd", "weight_bits", "input_bits", "acc_bits_target",
               "acc_bits_datatype_bound", "acc_bits_exact", "acc_datatype", "threshold_datatype", "lut", "bram18", "dsp",
               "cycles"]
    if s.totals.get("lut_model") is not None:
        columns += ["lut_model", "ff_model", "model_basis"]
    if s.totals.get("lut_synth") is not None:
        columns += ["lut_synth", "ff_synth", "carry_synth", "bram18_synth", "dsp_synth", "resource_source"]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for row in s.layers:
        lines.append("| " + " | ".join(_fmt(getattr(row, c)) for c in columns) + " |")
    failed = [row for row in s.layers if row.resource_source == "synthesis_failed"]
    if failed:
        lines += ["", f"Synthesis failed on {len(failed)} layer(s); FINN's estimate stands in for them:"]
        lines += [f"- {row.name}: {row.synthesis_error}" for row in failed]
    t = s.totals
    lines += [
        "",
        f"**Totals:** LUT {_fmt(t['lut'])}, BRAM18 {_fmt(t['bram18'])}, URAM {_fmt(t['uram'])}, "
        f"DSP {_fmt(t['dsp'])}; slowest layer {_fmt(t['max_cycles'])} cycles -> "
        f"{_fmt(t['fps_at_clock'])} frames/s at {s.clock_ns} ns.",
    ]
    if t.get("lut_model") is not None:
        lines += ["", f"**P-aware resource model (Yosys fit for {t.get('model_family', '-')}):** LUT {_fmt(t['lut_model'])} "
                  f"(modelled layers, FINN's estimate for the others), FF {_fmt(t['ff_model'])} (modelled layers)."]
        equivalent = [row for row in s.layers if row.model_basis == "rtl_equivalent"]
        if equivalent:
            lines[-1] += (f" {len(equivalent)} of them are HLS layers in this build, figured as FINN's RTL MVU, weight "
                          f"streamer and thresholds of the same shape (`model_basis: rtl_equivalent`): "
                          f"{_fmt(sum(row.lut_model for row in equivalent))} LUT, where FINN estimates their HLS form at "
                          f"{_fmt(round(sum(row.lut or 0 for row in equivalent)))} LUT.")
    if t.get("lut_synth") is not None:
        lines += [
            "",
            f"**Open synthesis (Yosys synth_xilinx, {t['synth_resource_source']}):** LUT {_fmt(t['lut_synth'])}, "
            f"FF {_fmt(t['ff_synth'])}, CARRY {_fmt(t['carry_synth'])}, BRAM18 {_fmt(t['bram18_synth'])}, "
            f"DSP {_fmt(t['dsp_synth'])}.",
        ]
    for row in s.layers:
        check = row.rtlsim_check
        if check is None:
            continue
        line = f"- RTL simulation of {row.name}: {check.samples} sample inputs bit-exact: {check.samples_exact}"
        if check.acc_bits is not None:
            line += (f"; adversarial inputs exact at {check.acc_bits} bits: {check.exact_at_p}, overflow seen at "
                     f"{check.acc_bits - 1} bits: {_fmt(check.overflow_detected_at_p_minus_1)}")
        lines.append(line)
    lines += ["", f"_{s.estimate_note}_", ""]
    return "\n".join(lines)
