"""One FINN build: the exported QONNX model through FINN's builder with the flow's step list."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from finn.builder.build_dataflow_config import DataflowOutputType
from finn.builder.build_dataflow_steps import build_dataflow_step_lookup
from qonnx.core.modelwrapper import ModelWrapper

from flow.artifacts import PROP_ACC_MODE, PROP_ALLOW_UNMATCHED, PROP_SIDECAR, PROP_TASK, Sidecar
from flow.core.config import Board
from flow.core.digests import code_digest
from flow.core.errors import FlowError
from flow.core.log import log
from flow.finn.env import import_builder
from flow.finn.steps import ESTIMATE_STEPS


@dataclass(frozen=True)
class FinnRun:
    """What the FINN build was asked to do. ``folding`` is a FINN folding JSON (else ``target_fps``
    lets FINN's SetFolding choose); ``acc_mode`` "exact" or "target"; ``extra_config`` further
    ``DataflowBuildConfig`` fields."""

    board: Board
    folding: Path | None
    target_fps: int | None
    acc_mode: str
    steps: tuple
    extra_config: tuple = ()  # (name, value) pairs: the dataclass stays hashable and immutable
    allow_unmatched_sidecar: bool = False


# The steps that fold the graph onto PE/SIMD; what comes before them does not depend on the folding.
FOLDING_STEPS = ("step_folding_for_target_fps", "step_target_fps_parallelization", "step_checked_folding_config",
                 "step_apply_folding_config")


def step_name(step) -> str:
    return step if isinstance(step, str) else step.__name__


def folding_split(steps: list) -> int | None:
    """Index of the first folding step in ``steps`` (None when there is none)."""
    return next((i for i, step in enumerate(steps) if step_name(step) in FOLDING_STEPS), None)


def prefix_key(onnx_path: Path, sidecar: Sidecar, run: FinnRun, prefix: list) -> str:
    """What the steps before the folding make of an exported model depends on: the model and its sidecar,
    the part, the step list up to there, the configuration and the flow's code."""
    digest = hashlib.sha256(Path(onnx_path).read_bytes())
    digest.update(json.dumps({"sidecar": sidecar.to_dict(), "part": run.board.fpga_part, "clock": run.board.clock_ns,
                              "steps": [step_name(s) for s in prefix], "config": [list(kv) for kv in run.extra_config],
                              "code": code_digest()}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def run_finn(onnx_path: Path, sidecar: Sidecar, run: FinnRun, out_dir: Path, prefix_cache: Path | None = None) -> Path:
    """Run FINN's builder on ``onnx_path`` into ``out_dir``; returns the final intermediate model's path.

    The sidecar, accumulator mode and task travel inside the model as metadata properties for the
    flow's steps. A failing step raises a FlowError naming it (the step's own FlowError message when it
    has one); Ctrl-C during a step is re-raised as KeyboardInterrupt. With ``prefix_cache`` the graph
    before the folding steps is kept there, and a later build of the same model that differs only in its
    folding (or throughput target, or accumulator mode) starts from it.
    """
    build_dataflow, DataflowBuildConfig = import_builder()
    steps = list(run.steps or ESTIMATE_STEPS)
    split = folding_split(steps)
    cached_prefix = None
    if prefix_cache is not None and split:
        cached_prefix = Path(prefix_cache) / f"{prefix_key(onnx_path, sidecar, run, steps[:split])}.onnx"
    reuse = cached_prefix is not None and cached_prefix.is_file()
    model = ModelWrapper(str(cached_prefix if reuse else onnx_path))
    model.set_metadata_prop(PROP_SIDECAR, sidecar.to_json())
    model.set_metadata_prop(PROP_ACC_MODE, run.acc_mode)
    model.set_metadata_prop(PROP_TASK, sidecar.task)
    model.set_metadata_prop(PROP_ALLOW_UNMATCHED, "1" if run.allow_unmatched_sidecar else "0")
    finn_input = out_dir.parent / "finn_input.onnx"
    model.save(str(finn_input))
    if reuse:
        log(f"[build] the graph before folding is the same as an earlier build's: starting FINN at "
            f"{step_name(steps[split])} ({cached_prefix.name})")
        steps = steps[split:]

    failures: list[tuple[str, BaseException]] = []

    def recorded(step):
        """Remember the exception of a failing step, so the driver can report it cleanly."""
        step_fn = build_dataflow_step_lookup[step] if isinstance(step, str) else step

        def run_step(model, cfg):
            try:
                return step_fn(model, cfg)
            except BaseException as err:
                failures.append((step_name(step), err))
                raise

        run_step.__name__ = step_name(step)
        return run_step

    if out_dir.exists():
        shutil.rmtree(out_dir)
    config = {
        "output_dir": str(out_dir),
        "synth_clk_period_ns": run.board.clock_ns,
        "fpga_part": run.board.fpga_part,
        "generate_outputs": [DataflowOutputType.ESTIMATE_REPORTS],
        "folding_config_file": str(run.folding) if run.folding else None,
        "target_fps": None if run.folding else run.target_fps,
        "save_intermediate_models": True,
        **dict(run.extra_config),
    }
    cfg = DataflowBuildConfig(steps=[recorded(step) for step in steps], **config)
    log(f"[build] FINN build ({len(steps)} steps) -> {out_dir}")
    stdout, stderr = sys.stdout, sys.stderr
    try:
        exit_code = build_dataflow.build_dataflow_cfg(str(finn_input), cfg)
    except Exception as err:  # FINN's builder re-raises instead of returning an exit code under pytest
        if not failures:
            raise FlowError(f"FINN build failed: {type(err).__name__}: {err}") from err
        exit_code = -1
    finally:
        sys.stdout, sys.stderr = stdout, stderr  # the builder mirrors these into its log
    if failures:
        name, err = failures[-1]
        if isinstance(err, KeyboardInterrupt):
            raise KeyboardInterrupt
        if isinstance(err, FlowError):
            raise FlowError(f"FINN step {name}: {err}", option=err.option) from err
        raise FlowError(f"FINN step {name} failed: {type(err).__name__}: {err} (build log: {out_dir / 'build_dataflow.log'})") from err
    if exit_code != 0:
        raise FlowError(f"FINN build failed with exit code {exit_code}; see {out_dir / 'build_dataflow.log'}")
    final = out_dir / "intermediate_models" / f"{step_name(steps[-1])}.onnx"
    if not final.is_file():
        raise FlowError(f"FINN build left no final model at {final}")
    if cached_prefix is not None and not reuse:
        before_folding = out_dir / "intermediate_models" / f"{step_name(steps[split - 1])}.onnx"
        cached_prefix.parent.mkdir(parents=True, exist_ok=True)
        staging = cached_prefix.with_name(f".{cached_prefix.name}.{os.getpid()}")
        shutil.copyfile(before_folding, staging)
        os.replace(staging, cached_prefix)
    return final
