"""Whether every zoo model's default build fits its default board.

Each model is built as ``make build MODEL=<name>`` would build it (its default board, folding or frame rate,
width and P), through the sweep engine: a finished build with the same inputs is read back, the others run
here (``workers`` at a time) or on a Ray cluster. The fit is the build's own ``board_fit``: judged on the best
figures the build has (Vivado, open synthesis, the P-aware resource model, FINN's estimate) and saying which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from flow.artifacts import Summary
from flow.core.log import log as default_log
from flow.experiments.executor import Task, run_tasks
from flow.experiments.sweep import build_point, reusable_summary
from flow.options import BuildOptions, BuildPlan, resolve_plan

FIT_RESOURCES = ("lut", "ff", "bram18", "uram", "dsp")


@dataclass(frozen=True)
class ZooFit:
    """One model's default build against its default board: ``utilization`` per resource (used / available,
    None where the figures have none), ``source`` of the figures, and the build's report folder."""

    model: str
    board: str
    folding: str
    acc_bits: int | None
    fits: bool | None
    source: str | None
    utilization: dict
    build: str
    error: str | None = None

    @classmethod
    def of(cls, summary: Summary, plan: BuildPlan) -> ZooFit:
        fit = summary.board_fit
        return cls(model=summary.model, board=summary.board, folding=folding_of(plan), acc_bits=summary.acc_bits_target,
                   fits=fit["fits"], source=fit["source"], utilization=fit["utilization"], build=plan.tag)


def folding_of(plan: BuildPlan) -> str:
    """The folding a plan builds with: its folding file's name, or the frame rate FINN folds for."""
    return plan.folding.stem if plan.folding else f"{plan.target_fps} fps"


def run_zoo_fit(models: list[str], out_dir: Path, workers: int | None = None, address: str | None = None,
                template: BuildOptions = BuildOptions(), log=default_log) -> list[ZooFit]:
    """Build (or read back) each model's default build and write ``zoo_fit.{json,md}`` to ``out_dir``.
    ``template`` gives what is not the model's default (folders, a training budget); by default nothing."""
    plans = [resolve_plan(replace(template, model=name)) for name in models]
    fits: dict[str, ZooFit] = {}
    todo = []
    for plan in plans:
        summary = reusable_summary(plan)
        if summary is not None:
            log(f"[zoo-fit] {plan.name}: reusing {plan.report_dir}")
            fits[plan.tag] = ZooFit.of(summary, plan)
        else:
            todo.append(plan)
    by_tag = {plan.tag: plan for plan in plans}

    def finished(result) -> None:
        plan = by_tag[result.key]
        fits[result.key] = (ZooFit.of(Summary.from_dict(result.value), plan) if result.ok else
                            ZooFit(model=plan.name, board=plan.board.name, folding=folding_of(plan), acc_bits=plan.acc_bits,
                                   fits=None, source=None, utilization={}, build=plan.tag,
                                   error=result.error.splitlines()[0]))

    tasks = [Task(key=plan.tag, function=build_point, kwargs={"options": plan.options}) for plan in todo]
    if tasks:
        run_tasks(tasks, workers=workers, address=address, on_result=finished, description="default builds")
    ordered = [fits[plan.tag] for plan in plans]
    write_zoo_fit(ordered, out_dir)
    return ordered


def zoo_fit_table(fits: list[ZooFit]) -> str:
    """The fits as a Markdown table (utilization in % of the board)."""
    lines = ["| model | board | folding | P | fits | " + " | ".join(r.upper() for r in FIT_RESOURCES)
             + " | figures from | build |", "|---" * (len(FIT_RESOURCES) + 7) + "|"]
    for fit in fits:
        if fit.error:
            lines.append(f"| {fit.model} | {fit.board} | {fit.folding} | {fit.acc_bits} | build failed: {fit.error} |"
                         + " |" * (len(FIT_RESOURCES) + 2))
            continue
        cells = ["-" if fit.utilization.get(r) is None else f"{100 * fit.utilization[r]:.1f} %" for r in FIT_RESOURCES]
        lines.append(f"| {fit.model} | {fit.board} | {fit.folding} | {fit.acc_bits} | {'yes' if fit.fits else 'NO'} | "
                     + " | ".join(cells) + f" | {fit.source} | `{fit.build}` |")
    return "\n".join(lines)


def write_zoo_fit(fits: list[ZooFit], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "zoo_fit.json", "md": out_dir / "zoo_fit.md"}
    paths["json"].write_text(json.dumps([fit.__dict__ for fit in fits], indent=2))
    verdict = ("Every zoo model's default build fits its default board." if all(f.fits for f in fits)
               else "Not every zoo model's default build fits its default board: see the NO rows.")
    paths["md"].write_text(
        "# Zoo models on their default boards\n\n"
        "Each row is the model's default build (`make build MODEL=<model>`: default board, folding or frame rate, "
        "width and P), judged on the best figures the build has. FINN's estimate counts no FFs and leaves out "
        "some layers (see each build's summary).\n\n" + zoo_fit_table(fits) + f"\n\n{verdict}\n")
    return paths
