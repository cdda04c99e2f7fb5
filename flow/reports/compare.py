"""Compare build reports: one row per ``summary.json``, written as CSV, Markdown and PNG plots.

Resource columns take the best figures a build has: Vivado's (``*_vivado``), then open synthesis
(``*_synth``), then the P-aware resource model (``*_model``), then FINN's estimate; ``resource_source`` says
which.
"""

from __future__ import annotations

import csv
from pathlib import Path

from flow.artifacts import Summary
from flow.core.errors import FlowError

COLUMNS = ["build", "model", "width", "quantizer", "acc_bits", "board", "folding", "weights", "test_top1", "test_psnr",
           "lut", "bram18", "dsp", "ff", "max_cycles", "fps_at_clock", "resource_source"]


def best_total(totals: dict, key: str):
    sources = (("_vivado", "vivado"), ("_synth", "open_synthesis"), ("_model", "resource_model"), ("", "finn_estimate"))
    for suffix, source in sources:
        if totals.get(key + suffix) is not None:
            if suffix == "_synth":  # layers that were not synthesized add FINN's estimate: say so
                source = totals.get("synth_resource_source", source)
            return totals[key + suffix], source
    return None, None


def row_of(summary_path: Path) -> dict:
    summary = Summary.read(summary_path)
    totals = summary.totals
    lut, source = best_total(totals, "lut")
    return {
        "build": summary_path.parent.name,
        "model": summary.model,
        "width": summary.options.get("width", 1.0),
        "quantizer": summary.quantizer,
        "acc_bits": summary.acc_bits_target,
        "board": summary.board,
        "folding": summary.folding or (f"{summary.target_fps} fps" if summary.target_fps else None),
        "weights": summary.weights,
        "test_top1": summary.test_top1,
        "test_psnr": summary.test_psnr,
        "lut": lut,
        "bram18": best_total(totals, "bram18")[0],
        "dsp": best_total(totals, "dsp")[0],
        "ff": best_total(totals, "ff")[0],
        "max_cycles": totals.get("max_cycles"),
        "fps_at_clock": totals.get("fps_at_clock"),
        "resource_source": source,
    }


def collect(report_paths: list[Path]) -> list[dict]:
    """Rows for every ``summary.json`` under the given folders (or the files themselves)."""
    summaries = []
    for path in report_paths:
        path = Path(path)
        if path.is_file() and path.name == "summary.json":
            summaries.append(path)
        elif path.is_dir():
            summaries.extend(sorted(path.rglob("summary.json")))
        else:
            raise FlowError(f"report path {path} is neither a folder nor a summary.json", option="reports")
    if not summaries:
        raise FlowError(f"no summary.json found under {', '.join(str(p) for p in report_paths)}; run `make build` first")
    rows = [row_of(path) for path in summaries]
    return sorted(rows, key=lambda r: (str(r["model"]), str(r["quantizer"]), str(r["board"]), str(r["folding"]),
                                       -(r["acc_bits"] or 99)))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by another (lower cost, higher quality), sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_quality = [], float("-inf")
    for i in order:
        if points[i][1] > best_quality:
            front.append(i)
            best_quality = points[i][1]
    return front


def _fmt(value):
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_comparison(rows: list[dict], out_dir: Path) -> dict[str, Path]:
    """Write ``comparison.csv``, ``comparison.md`` and the plots into ``out_dir``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "comparison.csv", "md": out_dir / "comparison.md",
             "resources_png": out_dir / "resources_vs_p.png", "pareto_png": out_dir / "quality_vs_lut.png"}
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Build comparison", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |" for row in rows]
    lines += ["", "Resources: the best source each build has (see `resource_source`); FINN estimates are lower bounds."]
    paths["md"].write_text("\n".join(lines) + "\n")

    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["acc_bits"] is not None:
            groups.setdefault((row["model"], row["width"], row["quantizer"], row["board"], row["folding"]), []).append(row)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (model, width, quantizer, board, folding), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        members = sorted(members, key=lambda r: r["acc_bits"])
        label = f"{model}{'' if width in (None, 1.0) else f' w{width:g}'} {quantizer} {board} {folding or ''}".strip()
        p_values = [r["acc_bits"] for r in members]
        axes[0].plot(p_values, [r["lut"] for r in members], marker="o", label=label)
        axes[1].plot(p_values, [r["bram18"] for r in members], marker="s", label=label)
    axes[0].set(title="LUTs vs accumulator width", xlabel="target accumulator width P (bits)", ylabel="LUT")
    axes[1].set(title="BRAM18 vs accumulator width", xlabel="target accumulator width P (bits)", ylabel="BRAM18 blocks")
    p_ticks = sorted({r["acc_bits"] for members in groups.values() for r in members})
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.set_yscale("log")  # builds of very different sizes share the axes; log keeps each curve's slope visible
        if p_ticks:
            ax.set_xticks(p_ticks)
    if groups:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths["resources_png"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for metric, label in (("test_top1", "top-1 accuracy (%)"), ("test_psnr", "PSNR (dB)")):
        rated = [r for r in rows if r[metric] is not None and r["lut"] is not None]
        if not rated:
            continue
        scale = 100.0 if metric == "test_top1" else 1.0
        points = [(float(r["lut"]), float(r[metric]) * scale) for r in rated]
        ax.scatter([p[0] for p in points], [p[1] for p in points], alpha=0.6, label=f"builds ({label})")
        for r, (x, y) in zip(rated, points):
            ax.annotate(f"{r['model']} P={r['acc_bits']}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "r--", label="Pareto front")
        ax.set_ylabel(label)
    ax.set(title="Quality vs LUTs", xlabel="LUT")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no build with a measured accuracy or PSNR yet", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(paths["pareto_png"], dpi=120)
    plt.close(fig)
    return paths
