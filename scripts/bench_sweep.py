"""Benchmark of the sweep engine, printed side by side from one run (machines here are shared and noisy).

1. The same 6-point sweep (ResNet18 at full width, P = 16..11, each point a build of about 40 s), run one
   point after another and with ``workers=2`` on a local Ray instance, each from empty folders. (Points of
   a few seconds, like the linear classifier's, do not pay for starting Ray and its worker processes.)
2. A ResNet18 build at the default width and board, then a point that differs only in its folding
   (another target throughput): the second reuses the export, the graph before folding and the check.

Usage: ``.venv/bin/python scripts/bench_sweep.py [--skip-resnet] [--skip-sweep]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from flow.experiments.sweep import run_sweep
from flow.options import BuildOptions
from flow.pipeline import build

PS = [16, 15, 14, 13, 12, 11]


def roots(folder: Path) -> dict:
    return {"reports_root": folder / "reports", "work_root": folder / "work", "checkpoint_root": folder / "ckpt"}


def timed_sweep(workers: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        base = BuildOptions(model="resnet18", **roots(Path(tmp)))
        started = time.perf_counter()
        rows = run_sweep(base, PS, [None], Path(tmp) / "sweep", log=lambda line: None, workers=workers, baseline=False)
        seconds = time.perf_counter() - started
    failed = [row["build"] for row in rows if row.get("error")]
    if failed:
        raise SystemExit(f"sweep points failed: {failed}")
    return seconds


def timed_resnet18() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        full = BuildOptions(model="resnet18", **roots(Path(tmp)))
        started = time.perf_counter()
        build(full)
        full_seconds = time.perf_counter() - started
        started = time.perf_counter()
        build(replace(full, target_fps=2000))
        return full_seconds, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args(argv)
    lines = []
    if not args.skip_sweep:
        sequential = timed_sweep(None)
        parallel = timed_sweep(2)
        lines += [f"6-point sweep (ResNet18, P {PS[0]}..{PS[-1]}): one after another {sequential:.1f} s, "
                  f"workers=2 {parallel:.1f} s (x{sequential / parallel:.2f})"]
    if not args.skip_resnet:
        full, folding_only = timed_resnet18()
        lines += [f"ResNet18 (width 1, zcu104): full build {full:.1f} s, folding-only point {folding_only:.1f} s"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
