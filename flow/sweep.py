"""Sweeps: one model built across accumulator widths P and foldings, as one table and plots.

Each point is an ordinary build (its own ``hw_reports/<build>/summary.json``); a point whose summary
already exists for the same settings is read back instead of rebuilt, so an interrupted sweep resumes.
The reduction ratio of a point is the resource figure of the widest-P build of the same folding
divided by the point's (the paper's "up to 2.3x fewer LUTs" compares against 32-bit accumulators).
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

from flow.errors import FlowError

ACC_LAYER_PREFIXES = ("MVAU", "VVAU", "Thresholding")
ROW_FIELDS = ["model", "quantizer", "acc_bits", "folding", "build", "weights", "test_top1", "test_psnr",
              "lut", "bram18", "dsp", "lut_synth", "ff_synth", "carry_synth", "acc_layers_lut", "acc_layers_lut_synth",
              "acc_layers_ff_synth", "max_cycles", "lut_ratio", "acc_layers_lut_synth_ratio", "acc_layers_ff_synth_ratio"]
SETTINGS_COMPARED = ("acc_bits", "quantizer", "width", "weight_bits", "act_bits", "board", "folding", "target_fps",
                     "acc_mode", "data", "checkpoint", "synth")


def sweep_row(summary: dict, build_name: str) -> dict:
    """The sweep's view of one build: totals plus the sums over accumulator layers (MVAU/VVAU/Thresholding)."""
    acc_layers = [layer for layer in summary["layers"] if layer["op_type"].startswith(ACC_LAYER_PREFIXES)]

    def layer_sum(key):
        values = [layer.get(key) for layer in acc_layers]
        return None if any(v is None for v in values) or not values else sum(values)

    totals = summary["totals"]
    return {
        "model": summary["model"], "quantizer": summary["quantizer"], "acc_bits": summary["acc_bits_target"],
        "folding": summary["folding"] or (f"{summary['target_fps']}fps" if summary.get("target_fps") else None),
        "build": build_name, "weights": summary["weights"], "test_top1": summary.get("test_top1"),
        "test_psnr": summary.get("test_psnr"), "lut": totals["lut"], "bram18": totals["bram18"], "dsp": totals["dsp"],
        "lut_synth": totals.get("lut_synth"), "ff_synth": totals.get("ff_synth"), "carry_synth": totals.get("carry_synth"),
        "acc_layers_lut": layer_sum("lut"), "acc_layers_lut_synth": layer_sum("lut_synth"),
        "acc_layers_ff_synth": layer_sum("ff_synth"), "max_cycles": totals["max_cycles"],
    }


def add_ratios(rows: list[dict]):
    """Per folding: ``<figure>_ratio`` = figure at the widest P / figure at this P."""
    for folding in {row["folding"] for row in rows}:
        members = [row for row in rows if row["folding"] == folding]
        widest = max(members, key=lambda row: row["acc_bits"])
        for row in members:
            for key in ("lut", "acc_layers_lut_synth", "acc_layers_ff_synth"):
                base, value = widest.get(key), row.get(key)
                row[f"{key}_ratio"] = (base / value) if base and value else None


def previous_summary(report_dir: Path, opts) -> dict | None:
    """A finished build's summary with the same settings, or None (then the point is built)."""
    path = report_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    stored = summary.get("options", {})
    wanted = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()}
    if any(stored.get(key) != wanted.get(key) for key in SETTINGS_COMPARED):
        return None
    return summary


def run_sweep(base_opts, acc_bits_list: list[int], foldings: list[str | None], out_dir: Path, log=print) -> list[dict]:
    """Build ``base_opts`` for every P and folding (resuming finished points); write the table and plots."""
    from flow.build import board_and_tag, build

    if not acc_bits_list:
        raise FlowError("give at least one P to sweep (PS=\"32 16 12\")")
    rows = []
    points = [(folding, p) for folding in foldings for p in sorted(set(acc_bits_list), reverse=True)]
    for index, (folding, p) in enumerate(points, 1):
        opts = replace(base_opts, acc_bits=p, folding=folding)
        _, tag = board_and_tag(opts)
        report_dir = opts.reports_root / tag
        summary = previous_summary(report_dir, opts)
        if summary is not None:
            log(f"[sweep {index}/{len(points)}] P={p} folding={folding or 'default'}: done before, reusing {report_dir}")
        else:
            log(f"[sweep {index}/{len(points)}] P={p} folding={folding or 'default'}: building")
            summary = build(opts)
        rows.append(sweep_row(summary, tag))
    add_ratios(rows)
    write_sweep(rows, out_dir)
    return rows


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
    synthesized = any(row.get("acc_layers_lut_synth") for row in rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    widest = max(row["acc_bits"] for row in rows)
    for folding in sorted({str(row["folding"]) for row in rows}):
        members = sorted((row for row in rows if str(row["folding"]) == folding), key=lambda row: row["acc_bits"])
        p_values = [row["acc_bits"] for row in members]
        if synthesized:
            axes[0].plot(p_values, [row["acc_layers_lut_synth"] for row in members], marker="o",
                         label=f"{folding}: LUT, Yosys synthesis")
            axes[0].plot(p_values, [row["acc_layers_ff_synth"] for row in members], marker="s",
                         label=f"{folding}: FF, Yosys synthesis")
            axes[1].plot(p_values, [row["acc_layers_lut_synth_ratio"] for row in members], marker="o",
                         label=f"{folding}: LUT (Yosys)")
            axes[1].plot(p_values, [row["acc_layers_ff_synth_ratio"] for row in members], marker="s",
                         label=f"{folding}: FF (Yosys)")
        axes[0].plot(p_values, [row["acc_layers_lut"] for row in members], marker="^", linestyle="--",
                     label=f"{folding}: LUT, FINN estimate")
        axes[1].plot(p_values, [row["lut_ratio"] for row in members], marker="^", linestyle="--",
                     label=f"{folding}: LUT, FINN estimate (whole design)")
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
