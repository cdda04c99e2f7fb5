"""The quality/resource trade-off of a model: a grid over quantizers, accumulator widths P and bit widths,
each point trained (or post-training quantized) and built, as one table and a plot of Pareto frontiers.

Every point is a checkpoint for its configuration (trained with the model's recipe, starting from a float
checkpoint where the model's registry entry says so) and a build of it; both are reused when the grid is
rerun with the same inputs (the checkpoint by its identity, the build by its report's identity). The
resource axis is the best figure each build has (synthesis, the P-aware resource model, FINN's estimate)
and the table says which; the quality axis is test top-1 (classification) or PSNR (super-resolution).
One frontier per quantizer: the best quality reachable at each resource cost.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

from flow.artifacts import Summary, write_text_atomic
from flow.core import accumulator as acc
from flow.core.errors import FlowError
from flow.core.log import log as default_log
from flow.experiments.executor import Task, TaskOutput, gpus_for, run_tasks
from flow.experiments.sweep import reusable_summary
from flow.options import BuildOptions, BuildPlan, resolve_plan
from flow.pipeline import build, checkpoint_for, ensure_checkpoint
from flow.reports.compare import best_total, pareto_front
from models.quant import AXE_QUANTIZERS
from models.registry import get_model_spec

# Published anchors: Brevitas's A2Q example README, ResNet18 W4A4 on CIFAR-10 (top-1 %, by P)
ANCHORS = {
    "resnet18": {
        "float": 95.0,
        "a2q": {16: 94.2, 15: 94.2, 14: 92.6, 13: 89.8, 12: 83.9},
        "a2q+": {16: 94.2, 15: 94.1, 14: 94.1, 13: 92.8, 12: 90.6},
        "source": "Brevitas A2Q example README, ResNet18 W4A4 on CIFAR-10",
    },
}
COLUMNS = ["model", "quantizer", "acc_bits", "weight_bits", "act_bits", "quality", "quality_metric", "lut",
           "lut_source", "ff", "bram18", "dsp", "on_frontier", "build", "checkpoint", "epochs", "error"]


@dataclass(frozen=True)
class ParetoGrid:
    """The points of a trade-off study: every quantizer with a P (``a2q``, ``a2q+``, post-training ones)
    at every width in ``acc_bits`` and bit width in ``bits``; ``baseline`` at every bit width (its
    accumulators are the exact minimum of its weights). ``bits`` sets the hidden layers' weight and
    activation widths (models with a fixed input width, like the linear classifier, take only the weights)."""

    quantizers: tuple[str, ...]
    acc_bits: tuple[int, ...]
    bits: tuple[int, ...]
    width: float = 1.0
    epochs: int | None = None

    def points(self) -> list[tuple[str, int | None, int]]:
        points = []
        for bits in self.bits:
            for quantizer in self.quantizers:
                widths = [None] if quantizer == "baseline" else list(self.acc_bits)
                points += [(quantizer, p, bits) for p in widths]
        return points


# Defaults that finish on this machine (2 cores) in about an hour each, and still show a frontier.
DEFAULT_GRIDS = {
    "linear": ParetoGrid(quantizers=("a2q", "a2q+", "baseline", "axe-gptq"), acc_bits=(19, 16, 14, 12, 10),
                         bits=(8, 4)),
    "espcn": ParetoGrid(quantizers=("a2q", "a2q+", "baseline", "axe-gptq"), acc_bits=(16, 13, 11), bits=(4, 8),
                        epochs=4),
    "resnet18": ParetoGrid(quantizers=("a2q", "a2q+", "baseline"), acc_bits=(16, 14, 12), bits=(4,), width=0.125,
                           epochs=2),
    "mobilenetv1": ParetoGrid(quantizers=("a2q", "a2q+", "baseline"), acc_bits=(16, 14, 12), bits=(4,), width=0.125,
                              epochs=2),
    "unet": ParetoGrid(quantizers=("a2q", "a2q+", "baseline"), acc_bits=(16, 13, 11), bits=(4,), width=0.25,
                       epochs=4),
}


def point_options(base: BuildOptions, quantizer: str, acc_bits: int | None, bits: int, grid: ParetoGrid,
                  fixed_input_bits: bool) -> BuildOptions:
    return replace(base, quantizer=quantizer, acc_bits=acc_bits, weight_bits=bits,
                   act_bits=None if fixed_input_bits else bits, width=grid.width,
                   epochs=base.epochs if base.epochs is not None else grid.epochs)


def pareto_plans(base: BuildOptions, grid: ParetoGrid, start: str | None = None) -> list[BuildPlan]:
    """Every point of ``grid`` resolved (and so validated) before any is trained or built; a (P, bits) pair
    where P cannot hold one product of those bits is left out of the grid. ``start``: the
    float checkpoint that post-training points (AXE) quantize, and that every point starts from where the
    model's entry says so; without it, post-training points are validated as if it were given."""
    fixed_input = base.model == "linear"  # binarized pixels: 1-bit inputs whatever the grid says
    spec = get_model_spec(base.model)
    plans = []
    for quantizer, p, bits in grid.points():
        options = point_options(base, quantizer, p, bits, grid, fixed_input)
        act_bits = options.act_bits or spec.act_bits
        if p is not None and p < acc.min_useful_acc_bits(bits, act_bits, False):
            continue  # the grid crosses P with bit widths: a P below one product of these bits is no point
        post_training = quantizer in AXE_QUANTIZERS
        if start and (post_training or spec.init_from_float):
            options = replace(options, init_checkpoint=start)
        elif post_training:  # its float checkpoint is trained after every point is validated
            reference = resolve_plan(replace(options, quantizer="baseline", acc_bits=None))
            acc.check_acc_bits(p, reference.weight_bits, reference.act_bits, input_signed=False)
            continue
        plans.append(resolve_plan(options))
    return plans


def float_start(base: BuildOptions, grid: ParetoGrid) -> str | None:
    """The float checkpoint that quantized training starts from (where the model's entry says so) and that
    post-training quantizers quantize, trained once (None: no point needs one)."""
    needed = get_model_spec(base.model).init_from_float or any(q in AXE_QUANTIZERS for q in grid.quantizers)
    if not needed or base.init_checkpoint:
        return base.init_checkpoint
    float_plan = resolve_plan(replace(base, quantizer="float", acc_bits=None, width=grid.width, weight_bits=None,
                                      act_bits=None, epochs=base.epochs or grid.epochs), training=True)
    path, _ = ensure_checkpoint(float_plan)
    return str(path)


def pareto_point(options: BuildOptions) -> TaskOutput:
    """Train (or reuse) the point's checkpoint, then build (or reuse) it; the summary comes back."""
    plan = resolve_plan(options)
    checkpoint, _ = ensure_checkpoint(plan, train=True)
    summary = build(replace(options, checkpoint=str(checkpoint)))
    return TaskOutput(value={"summary": summary.to_dict(), "checkpoint": str(checkpoint)})


def point_row(plan: BuildPlan, summary: Summary | None, checkpoint: str | None, error: str | None) -> dict:
    row = {column: None for column in COLUMNS}
    row.update(model=plan.name, quantizer=plan.quantizer, acc_bits=plan.acc_bits, weight_bits=plan.weight_bits,
               act_bits=plan.act_bits, checkpoint=checkpoint, error=error, build=plan.tag)
    if summary is None:
        return row
    metric = "test_top1" if summary.test_top1 is not None else "test_psnr"
    quality = summary.test_top1 if metric == "test_top1" else summary.test_psnr
    lut, source = best_total(summary.totals, "lut")
    row.update(quality=(100 * quality if metric == "test_top1" and quality is not None else quality),
               quality_metric="top-1 %" if metric == "test_top1" else "PSNR dB", lut=lut, lut_source=source,
               ff=best_total(summary.totals, "ff")[0], bram18=best_total(summary.totals, "bram18")[0],
               dsp=best_total(summary.totals, "dsp")[0], build=summary.build)
    return row


def mark_frontiers(rows: list[dict]) -> None:
    """``on_frontier``: the point is on its quantizer's Pareto frontier (no point of the same quantizer has
    fewer LUTs and better quality)."""
    for quantizer in {row["quantizer"] for row in rows}:
        members = [row for row in rows if row["quantizer"] == quantizer and row["lut"] is not None
                   and row["quality"] is not None]
        front = set(pareto_front([(float(r["lut"]), float(r["quality"])) for r in members]))
        for index, row in enumerate(members):
            row["on_frontier"] = index in front


def run_pareto(base: BuildOptions, grid: ParetoGrid, out_dir: Path, log=default_log, workers: int | None = None,
               address: str | None = None) -> list[dict]:
    """Train and build every point of ``grid`` (reusing what is done), then write the table and plot."""
    if not grid.points():
        raise FlowError("the grid has no point", option="ps")
    pareto_plans(base, grid)  # validates every point before the float checkpoint is trained
    start = float_start(base, grid)
    plans = pareto_plans(base, grid, start)
    by_tag = {plan.tag: plan for plan in plans}
    rows: dict[str, dict] = {}
    todo = []
    for plan in plans:
        checkpoint, ready = checkpoint_for(plan, train=True)
        summary = reusable_summary(resolve_plan(replace(plan.options, checkpoint=str(checkpoint)))) if ready else None
        if summary is not None:
            log(f"[pareto] {plan.tag}: trained and built before with the same inputs, reusing {summary.build}")
            rows[plan.tag] = point_row(plan, summary, str(checkpoint), None)
        else:
            todo.append(plan)

    def finished(result) -> None:
        plan = by_tag[result.key]
        if result.ok:
            summary = Summary.from_dict(result.value["summary"], result.key)
            rows[result.key] = point_row(plan, summary, result.value["checkpoint"], None)
        else:
            rows[result.key] = point_row(plan, None, None, result.error)
            log(f"[pareto] {result.key} failed: {result.error}")
        write_pareto([rows[p.tag] for p in plans if p.tag in rows], out_dir, base.model)

    every = base.init_checkpoint or get_model_spec(base.model).init_from_float
    start_user = "all points" if every else "the post-training points"
    tasks = [Task(key=plan.tag, function=pareto_point, kwargs={"options": plan.options},
                  num_gpus=gpus_for(plan.options.device)) for plan in todo]
    log(f"[pareto] {base.model}: {len(tasks)} points ({', '.join(grid.quantizers)}; P {list(grid.acc_bits)}; "
        f"bits {list(grid.bits)})" + (f"; {start_user} start from the float checkpoint {start}" if start else ""))
    if tasks:
        run_tasks(tasks, workers=workers, address=address, on_result=finished, description="trade-off points")
    final = [rows[plan.tag] for plan in plans if plan.tag in rows]
    write_pareto(final, out_dir, base.model)
    return final


def anchor_lines(model: str) -> list[str]:
    anchor = ANCHORS.get(model)
    if not anchor:
        return []
    lines = [f"Published anchors ({anchor['source']}): float {anchor['float']} % top-1."]
    for quantizer in ("a2q", "a2q+"):
        values = " / ".join(f"{v}" for v in anchor[quantizer].values())
        widths = " / ".join(str(p) for p in anchor[quantizer])
        lines.append(f"{quantizer.upper()}: {values} % at P = {widths}.")
    return lines


def write_pareto(rows: list[dict], out_dir: Path, model: str) -> dict[str, Path]:
    """``pareto.csv``, ``pareto.json``, ``pareto.md`` and ``pareto.png`` in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    mark_frontiers(rows)
    paths = {"json": out_dir / "pareto.json", "csv": out_dir / "pareto.csv", "md": out_dir / "pareto.md",
             "png": out_dir / "pareto.png"}
    write_text_atomic(paths["json"], json.dumps(rows, indent=2))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    sources = sorted({row["lut_source"] for row in rows if row["lut_source"]})
    lines = [f"# Quality vs resources: {model}", "", f"LUT figures from: {', '.join(sources) or '-'}.", ""]
    lines += ["| " + " | ".join(COLUMNS[:13]) + " |", "|" + "---|" * 13]
    for row in rows:
        lines.append("| " + " | ".join("-" if row[c] is None else (f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]))
                                        for c in COLUMNS[:13]) + " |")
    failed = [row for row in rows if row["error"]]
    lines += [""] + [f"- failed: {row['build']}: {row['error']}" for row in failed]
    lines += [""] + anchor_lines(model) + [""]
    write_text_atomic(paths["md"], "\n".join(lines))

    fig, ax = plt.subplots(figsize=(7.5, 5))
    plotted = [row for row in rows if row["lut"] is not None and row["quality"] is not None]
    for quantizer in sorted({row["quantizer"] for row in plotted}):
        members = sorted((r for r in plotted if r["quantizer"] == quantizer), key=lambda r: r["lut"])
        scatter = ax.scatter([r["lut"] for r in members], [r["quality"] for r in members], alpha=0.5, label=quantizer)
        front = [r for r in members if r["on_frontier"]]
        ax.plot([r["lut"] for r in front], [r["quality"] for r in front], "-", color=scatter.get_facecolor()[0])
        for r in members:
            label = f"P={r['acc_bits']} " if r["acc_bits"] else ""
            label += f"w{r['weight_bits']}a{r['act_bits']}" if r["act_bits"] else f"w{r['weight_bits']}"
            ax.annotate(label, (r["lut"], r["quality"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    metric = next((row["quality_metric"] for row in plotted), "quality")
    ax.set(title=f"{model}: quality vs LUT ({', '.join(sources) or 'no figures'}); lines: Pareto frontiers",
           xlabel="LUT", ylabel=metric)
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    if plotted:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no point finished yet", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=120)
    plt.close(fig)
    return paths
