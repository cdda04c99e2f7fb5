"""Sweeps: one model built across accumulator widths P and foldings, as one table and plots.

Each point is an ordinary build (its own ``hw_reports/<build>/summary.json``). Every point is resolved
and validated before the first one is built. A point whose finished summary has the identity the build
would have now (settings, data, checkpoint and code digests) is read back instead of rebuilt, so an
interrupted sweep resumes and a stale point is rebuilt. Sweeps write ``INT<P>`` accumulators unless an
accumulator mode is given (uniform-P studies compare the widths the layers were trained for).
The reduction ratio of a point is the resource figure of the widest-P build of the same folding
divided by the point's (the paper's "up to 2.3x fewer LUTs" compares against 32-bit accumulators).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path

from flow.artifacts import Summary
from flow.core.errors import FlowError
from flow.core.log import log as default_log
from flow.experiments.executor import ADDRESS_ENV, Task, TaskOutput, gpus_for, run_tasks
from flow.options import BuildOptions, BuildPlan, identity_of, resolve_plan
from flow.pipeline import build, checkpoint_for, trains_on_build
from flow.reports.summary import SUMMARY_JSON

ACC_LAYER_PREFIXES = ("MVAU", "VVAU", "Thresholding")
ROW_FIELDS = ["model", "quantizer", "acc_bits", "folding", "build", "error", "weights", "test_top1", "test_psnr",
              "lut", "bram18", "dsp", "lut_synth", "ff_synth", "carry_synth", "lut_model", "ff_model", "acc_layers_lut",
              "acc_layers_lut_synth", "acc_layers_ff_synth", "acc_layers_lut_model", "acc_layers_ff_model", "max_cycles",
              "lut_ratio", "acc_layers_lut_synth_ratio", "acc_layers_ff_synth_ratio", "acc_layers_lut_model_ratio",
              "acc_layers_ff_model_ratio"]
RATIO_FIGURES = ("lut", "acc_layers_lut_synth", "acc_layers_ff_synth", "acc_layers_lut_model", "acc_layers_ff_model")
ROW_FIELDS += [f"{key}_vs_baseline" for key in RATIO_FIGURES]
# What the A2Q paper reports (ICCV 2023, abstract): the anchor printed beside a sweep's reductions.
PAPER_ANCHOR = "A2Q paper: up to 2.3x fewer resources than 32-bit accumulators at 99.2 % of the float model's accuracy"


def sweep_row(summary: Summary, build_name: str) -> dict:
    """The sweep's view of one build: totals plus the sums over accumulator layers (MVAU/VVAU/Thresholding)."""
    acc_layers = [layer for layer in summary.layers if layer.op_type.startswith(ACC_LAYER_PREFIXES)]

    def layer_sum(key):
        values = [getattr(layer, key) for layer in acc_layers]
        return None if any(v is None for v in values) or not values else sum(values)

    totals = summary.totals
    return {
        "model": summary.model, "quantizer": summary.quantizer, "acc_bits": summary.acc_bits_target,
        "folding": summary.folding or (f"{summary.target_fps}fps" if summary.target_fps else None),
        "build": build_name, "error": None, "weights": summary.weights, "test_top1": summary.test_top1,
        "test_psnr": summary.test_psnr, "lut": totals["lut"], "bram18": totals["bram18"], "dsp": totals["dsp"],
        "lut_synth": totals.get("lut_synth"), "ff_synth": totals.get("ff_synth"), "carry_synth": totals.get("carry_synth"),
        "lut_model": totals.get("lut_model"), "ff_model": totals.get("ff_model"),
        "acc_layers_lut": layer_sum("lut"), "acc_layers_lut_synth": layer_sum("lut_synth"),
        "acc_layers_ff_synth": layer_sum("ff_synth"), "acc_layers_lut_model": layer_sum("lut_model"),
        "acc_layers_ff_model": layer_sum("ff_model"), "max_cycles": totals["max_cycles"],
    }


def add_ratios(rows: list[dict]):
    """Per folding: ``<figure>_ratio`` = figure at the widest P / figure at this P, and
    ``<figure>_vs_baseline`` = figure of the ``baseline`` quantizer's build (FINN's own accumulator
    minimisation, the same bit widths and folding) / figure at this P."""
    for folding in {row["folding"] for row in rows}:
        group = [row for row in rows if row["folding"] == folding]
        members = [row for row in group if row["quantizer"] != "baseline"]
        baseline = next((row for row in group if row["quantizer"] == "baseline"), {})
        if not members:
            continue
        widest = max(members, key=lambda row: row["acc_bits"] or 0)
        for row in members:
            for key in RATIO_FIGURES:
                value = row.get(key)
                base, reference = widest.get(key), baseline.get(key)
                row[f"{key}_ratio"] = (base / value) if base and value else None
                row[f"{key}_vs_baseline"] = (reference / value) if reference and value else None


def point_label(plan: BuildPlan) -> str:
    width = "baseline" if plan.quantizer == "baseline" else f"P={plan.acc_bits}"
    return f"{width} folding={plan.folding_name or plan.options.folding or 'default'}"


def describe_row(row: dict) -> str:
    """One line per point: the best figures it has and its reductions."""
    width = "baseline (FINN's accumulator minimisation)" if row["quantizer"] == "baseline" else f"P={row['acc_bits']}"
    if row.get("error"):
        return f"[sweep] {width} folding={row['folding']}: FAILED ({row['error']})"
    source, suffix = next(((name, sfx) for name, sfx in (("Yosys", "_synth"), ("resource model", "_model"))
                           if row.get(f"acc_layers_lut{sfx}")), ("FINN estimate", ""))
    text = f"[sweep] {width} folding={row['folding']}: accumulator layers LUT {row[f'acc_layers_lut{suffix}']} ({source})"
    ratio, versus = row.get(f"acc_layers_lut{suffix}_ratio"), row.get(f"acc_layers_lut{suffix}_vs_baseline")
    if suffix == "":
        ratio, versus = row.get("lut_ratio"), row.get("lut_vs_baseline")
    if ratio:
        text += f", x{ratio:.2f} fewer than the widest P"
    if versus:
        text += f", x{versus:.2f} fewer than the baseline"
    return text


def reusable_summary(plan: BuildPlan) -> Summary | None:
    """The finished summary of ``plan``'s report folder if it has the identity a build would have now."""
    path = plan.report_dir / SUMMARY_JSON
    if not path.is_file():
        return None
    try:
        summary = Summary.read(path)
    except FlowError:
        return None
    checkpoint, ready = checkpoint_for(plan, trains_on_build(plan)) if plan.spec is not None else (None, True)
    if not ready:
        return None
    expected = identity_of(plan, checkpoint if checkpoint is not None and checkpoint.is_file() else None)
    return summary if summary.identity == expected else None


def sweep_plans(base_opts: BuildOptions, acc_bits_list: list, foldings: list[str | None],
                baseline: bool = True) -> list[BuildPlan]:
    """One resolved plan per (folding, P), widest P first, and with ``baseline`` (A2Q/A2Q+ sweeps of a zoo
    model) one build per folding of the ``baseline`` quantizer at the same bit widths with exact accumulators
    (what FINN's own accumulator minimisation gives without A2Q). Every point is validated before any is built."""
    if not acc_bits_list:
        raise FlowError("give at least one accumulator width P to sweep (e.g. 32 16 12)", option="ps")
    base = replace(base_opts, acc_mode=base_opts.acc_mode or "target")
    ordered = sorted(set(acc_bits_list), key=lambda p: -1 if p is None else p, reverse=True)
    plans = [resolve_plan(replace(base, acc_bits=p, folding=folding)) for folding in foldings for p in ordered]
    if baseline and base.quantizer in ("a2q", "a2q+") and not base.onnx:
        reference = replace(base, quantizer="baseline", acc_bits=None, acc_mode="exact", acc_bits_map=None)
        plans += [resolve_plan(replace(reference, folding=folding)) for folding in foldings]
    return plans


def build_point(options: BuildOptions, return_files: bool = False) -> TaskOutput:
    """One sweep point, run where the executor puts it: the build's summary, and with ``return_files`` its
    report files (relative paths) for a driver on another machine."""
    summary = build(options)
    files = {}
    if return_files:
        report = resolve_plan(options).report_dir
        files = {str(path): path.read_bytes() for path in sorted(report.rglob("*")) if path.is_file()}
    return TaskOutput(value=summary.to_dict(), files=files)


def failed_row(plan: BuildPlan, error: str) -> dict:
    """A point that did not build: it stays in the table with its error."""
    row = {field: None for field in ROW_FIELDS}
    row.update(model=plan.name, quantizer=plan.quantizer, acc_bits=plan.acc_bits, build=plan.tag, error=error,
               folding=plan.folding_name or (f"{plan.target_fps}fps" if plan.target_fps else None))
    return row


def run_sweep(base_opts: BuildOptions, acc_bits_list: list, foldings: list[str | None], out_dir: Path,
              log=default_log, workers: int | None = None, address: str | None = None,
              baseline: bool = True) -> list[dict]:
    """Build ``base_opts`` for every P and folding, reusing finished points whose inputs are unchanged; the
    others run through :func:`flow.experiments.executor.run_tasks` (here, ``workers`` at a time on a local
    Ray instance, or on the cluster at ``address``). Writes the table and plots (rewritten as points finish,
    so an interrupted sweep leaves what it finished); a point that fails is a row with its error."""
    plans = sweep_plans(base_opts, acc_bits_list, foldings, baseline=baseline)
    remote = bool(address or os.environ.get(ADDRESS_ENV))
    if remote and any(Path(plan.options.reports_root).is_absolute() for plan in plans):
        raise FlowError("a sweep on a cluster writes its reports below the working folder: give a relative "
                        "reports folder", option="reports")
    rows: dict[str, dict] = {}
    todo = []
    for index, plan in enumerate(plans, 1):
        label = point_label(plan)
        summary = reusable_summary(plan)
        if summary is not None:
            log(f"[sweep {index}/{len(plans)}] {label}: done before with the same inputs, reusing {plan.report_dir}")
            rows[plan.tag] = sweep_row(summary, plan.tag)
        else:
            log(f"[sweep {index}/{len(plans)}] {label}: building")
            todo.append(plan)
    by_tag = {plan.tag: plan for plan in plans}

    def table() -> list[dict]:
        ordered = [rows[plan.tag] for plan in plans if plan.tag in rows]
        add_ratios([row for row in ordered if not row.get("error")])
        return ordered

    def finished(result) -> None:
        plan = by_tag[result.key]
        rows[result.key] = (sweep_row(Summary.from_dict(result.value), result.key) if result.ok
                            else failed_row(plan, result.error))
        if not result.ok:
            log(f"[sweep] {result.key} failed: {result.error}")
        write_sweep(table(), out_dir)

    tasks = [Task(key=plan.tag, function=build_point, kwargs={"options": plan.options, "return_files": remote},
                  num_gpus=gpus_for(plan.options.device)) for plan in todo]
    if tasks:
        run_tasks(tasks, workers=workers, address=address, on_result=finished, description="sweep points")
    final = table()
    write_sweep(final, out_dir)
    return final


def write_sweep(rows: list[dict], out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "sweep.json", "csv": out_dir / "sweep.csv", "png": out_dir / "sweep.png"}
    paths["json"].write_text(json.dumps(rows, indent=2))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=ROW_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    baselines = {str(row["folding"]): row for row in rows if row["quantizer"] == "baseline" and not row.get("error")}
    rows = [row for row in rows if not row.get("error") and row["acc_bits"] is not None]  # what can be plotted
    if not rows:
        paths.pop("png")
        return paths
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    widest = max(row["acc_bits"] for row in rows)
    for folding in sorted({str(row["folding"]) for row in rows}):
        members = sorted((row for row in rows if str(row["folding"]) == folding), key=lambda row: row["acc_bits"])
        p_values = [row["acc_bits"] for row in members]
        # Yosys's figures and the resource model's, each where the points have them (both: they can be compared)
        for suffix, source, style in (("_synth", "Yosys synthesis", "-"), ("_model", "resource model", "-.")):
            if not any(row.get(f"acc_layers_lut{suffix}") for row in members):
                continue
            for figure, marker in (("lut", "o"), ("ff", "s")):
                axes[0].plot(p_values, [row[f"acc_layers_{figure}{suffix}"] for row in members], marker=marker,
                             linestyle=style, label=f"{folding}: {figure.upper()}, {source}")
                axes[1].plot(p_values, [row[f"acc_layers_{figure}{suffix}_ratio"] for row in members], marker=marker,
                             linestyle=style, label=f"{folding}: {figure.upper()} ({source})")
        axes[0].plot(p_values, [row["acc_layers_lut"] for row in members], marker="^", linestyle="--",
                     label=f"{folding}: LUT, FINN estimate")
        axes[1].plot(p_values, [row["lut_ratio"] for row in members], marker="^", linestyle="--",
                     label=f"{folding}: LUT, FINN estimate (whole design)")
        reference = baselines.get(folding, {})
        figure = next((f"acc_layers_lut{sfx}" for sfx in ("_synth", "_model") if reference.get(f"acc_layers_lut{sfx}")),
                      "acc_layers_lut")
        if reference.get(figure):
            axes[0].axhline(reference[figure], color="black", linestyle=":", lw=1,
                            label=f"{folding}: baseline quantizer, FINN's minimised accumulators ({figure})")
        for ax in axes:
            ax.set_xticks(sorted({row["acc_bits"] for row in rows}))
    axes[0].set(title=f"{rows[0]['model']} ({rows[0]['quantizer']}): MVAU/VVAU + thresholding layers",
                xlabel="accumulator width P (bits)", ylabel="count")
    axes[1].set(title=f"reduction against the P={widest} build", xlabel="accumulator width P (bits)",
                ylabel=f"resources at P={widest} / resources at P")
    axes[1].axhline(1.0, color="grey", lw=0.8)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=120)
    plt.close(fig)
    return paths
