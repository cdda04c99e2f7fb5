"""Benchmark flow.experiments.executor: the same CPU-bound grid run here, one task after another, and on a
local Ray instance with ``workers=2``; plus Ray's start-up overhead.

Each task is a point of the overflow study (``make overflow``): a 784-input, 10-output layer with 8-bit
weights accumulated in a saturating P-bit register over R orders of additions, on one thread
(``flow.overflow.simulate_accumulation``); a calibration run here sets R so that one task takes about
``--seconds``. The tasks differ only in P and the seed, so every one does the same amount of work.

It prints the wall time of both runs side by side, the sum of the tasks' own times (where they ran), the
speed-up, and Ray's start-up: ``ray.init`` of a local instance, the first round trip of two empty tasks
(worker processes start), ``ray.shutdown``, and ``run_tasks(workers=2)`` of two empty tasks end to end.
The load average is printed too: other processes on the machine share its CPUs.

Run from the repository root: ``python scripts/bench_executor.py [--tasks 6] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flow.experiments.executor import REPO_ROOT, Task, run_tasks  # noqa: E402


def overflow_point(acc_bits: int, seed: int, batch: int, orderings: int) -> float:
    """Overflow rate of a saturating ``acc_bits``-bit accumulator (fraction of sums that differ from exact)."""
    import numpy as np

    from flow.overflow import simulate_accumulation

    rng = np.random.default_rng(seed)
    weights = rng.integers(-128, 128, size=(10, 784))
    inputs = rng.integers(0, 2, size=(batch, 784))
    orders = np.stack([rng.permutation(784) for _ in range(orderings)])
    return simulate_accumulation(weights, inputs, acc_bits, "saturate", order=orders, num_threads=1).overflow_rate


def nothing() -> None:
    """An empty task: what remains of its run time is the executor's overhead."""


def timed_grid(tasks: list[Task], workers: int | None) -> tuple[float, float, list]:
    """(wall time s, sum of the tasks' own times s, results) of one run_tasks call."""
    start = time.perf_counter()
    results = run_tasks(tasks, workers=workers, progress=False)
    wall = time.perf_counter() - start
    failed = [result for result in results if not result.ok]
    if failed:
        raise SystemExit(f"{len(failed)} tasks failed: {failed[0].error}\n{failed[0].traceback}")
    return wall, sum(result.seconds for result in results), results


def ray_start_up(workers: int) -> dict[str, float]:
    """Seconds for ray.init (local instance, as run_tasks starts it), a first round trip, ray.shutdown."""
    import ray

    times = {}
    start = time.perf_counter()
    # as run_tasks starts it: workers inherit the repository on PYTHONPATH
    os.environ["PYTHONPATH"] = str(REPO_ROOT)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.ERROR)
    times["init"] = time.perf_counter() - start
    empty = ray.remote(nothing)
    start = time.perf_counter()
    ray.get([empty.remote() for _ in range(workers)])
    times["first_round_trip"] = time.perf_counter() - start
    start = time.perf_counter()
    ray.get([empty.remote() for _ in range(workers)])
    times["warm_round_trip"] = time.perf_counter() - start
    start = time.perf_counter()
    ray.shutdown()
    times["shutdown"] = time.perf_counter() - start
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=6, help="tasks in the grid (default 6)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers of the parallel run (default 2)")
    parser.add_argument("--batch", type=int, default=2000, help="inputs per task (default 2000)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="target time of one task here; sets the orders of additions R (default 5)")
    parser.add_argument("--orderings", type=int, default=None, help="orders of additions R per task (fixed)")
    args = parser.parse_args(argv)
    os.environ.pop("RAY_ADDRESS", None)  # a local instance, whatever the shell says
    if args.orderings is None:
        # calibrate on this machine as loaded now: R scales the work linearly
        overflow_point(10, 0, args.batch, 4)  # imports, first-call costs
        start = time.perf_counter()
        overflow_point(10, 0, args.batch, 16)
        args.orderings = max(1, round(16 * args.seconds / (time.perf_counter() - start)))

    tasks = [Task(f"P{10 + i}", overflow_point,
                  {"acc_bits": 10 + i, "seed": i, "batch": args.batch, "orderings": args.orderings})
             for i in range(args.tasks)]
    print(f"machine: {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.1f} (1 min)")
    print(f"grid: {args.tasks} overflow-study points, each B={args.batch} x C=10 x K=784 x R={args.orderings} "
          "saturating additions on one thread")

    seq_wall, seq_own, seq_results = timed_grid(tasks, workers=None)
    load_between = os.getloadavg()[0]
    par_wall, par_own, par_results = timed_grid(tasks, workers=args.workers)
    assert [r.value for r in seq_results] == [r.value for r in par_results], "the two runs disagree"
    empty_wall = timed_grid([Task(f"empty{i}", nothing) for i in range(args.workers)], workers=args.workers)[0]
    start_up = ray_start_up(args.workers)

    print(f"{'':28s}{'wall (s)':>10s}{'tasks own (s)':>15s}{'speed-up':>10s}")
    print(f"{'sequential (this process)':28s}{seq_wall:10.1f}{seq_own:15.1f}{1:9.2f}x")
    print(f"{f'workers={args.workers} (local Ray)':28s}{par_wall:10.1f}{par_own:15.1f}{seq_wall / par_wall:9.2f}x")
    print(f"per task: {seq_own / len(tasks):.1f} s sequential, {par_own / len(tasks):.1f} s on a Ray worker; "
          f"load average {load_between:.1f} between the runs, {os.getloadavg()[0]:.1f} at the end")
    print(f"Ray start-up: ray.init {start_up['init']:.1f} s, first round trip of {args.workers} empty tasks "
          f"{start_up['first_round_trip']:.1f} s (worker processes start), then {start_up['warm_round_trip'] * 1000:.0f} ms; "
          f"ray.shutdown {start_up['shutdown']:.1f} s; run_tasks(workers={args.workers}) of {args.workers} empty tasks "
          f"{empty_wall:.1f} s end to end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
