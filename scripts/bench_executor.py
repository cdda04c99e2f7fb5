"""Benchmark flow.experiments.executor: the same CPU-bound grid run here, one task after another, and on a
local Ray instance with ``workers=2``; plus Ray's start-up overhead.

Each task is a point of the overflow study (``make overflow``): a 784-input, 10-output layer with 8-bit
weights accumulated in a saturating P-bit register over R orders of additions, on one thread
(``flow.experiments.overflow.simulate_accumulation``); a calibration run here sets R so that one task takes about
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


def overflow_point(acc_bits: int, seed: int, batch: int, orderings: int) -> dict:
    """Overflow rate of a saturating ``acc_bits``-bit accumulator (fraction of sums that differ from exact),
    and the CPU time (s) this call used."""
    import numpy as np

    from flow.experiments.overflow import simulate_accumulation

    cpu_start = time.process_time()
    rng = np.random.default_rng(seed)
    weights = rng.integers(-128, 128, size=(10, 784))
    inputs = rng.integers(0, 2, size=(batch, 784))
    orders = np.stack([rng.permutation(784) for _ in range(orderings)])
    rate = simulate_accumulation(weights, inputs, acc_bits, "saturate", order=orders, num_threads=1).overflow_rate
    return {"overflow_rate": rate, "cpu_s": time.process_time() - cpu_start}


def nothing() -> None:
    """An empty task: what remains of its run time is the executor's overhead."""


def timed_grid(tasks: list[Task], workers: int | None) -> dict:
    """One run_tasks call: wall time (s), the tasks' own wall and CPU times summed (s), and their values."""
    start = time.perf_counter()
    results = run_tasks(tasks, workers=workers, progress=False)
    wall = time.perf_counter() - start
    failed = [result for result in results if not result.ok]
    if failed:
        raise SystemExit(f"{len(failed)} tasks failed: {failed[0].error}\n{failed[0].traceback}")
    values = [result.value for result in results]
    return {"wall": wall, "own": sum(result.seconds for result in results),
            "cpu": sum(value["cpu_s"] for value in values if value), "values": values}


def descendants_cpu_seconds() -> float:
    """CPU time (s) used so far by the live processes started from this one (Ray's daemons and workers)."""
    import psutil

    total = 0.0
    for process in psutil.Process().children(recursive=True):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def ray_start_up(workers: int) -> dict[str, float]:
    """Seconds for ray.init (a local instance as run_tasks starts it), a first round trip, ray.shutdown;
    and the CPU seconds Ray's processes used to start and while idle for 10 s."""
    import ray

    times = {}
    # as run_tasks starts it: workers inherit the repository on PYTHONPATH
    os.environ["PYTHONPATH"] = str(REPO_ROOT)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    start, cpu_start = time.perf_counter(), time.process_time()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level=logging.ERROR)
    times["init"] = time.perf_counter() - start
    empty = ray.remote(nothing)
    start = time.perf_counter()
    ray.get([empty.remote() for _ in range(workers)])
    times["first_round_trip"] = time.perf_counter() - start
    start = time.perf_counter()
    ray.get([empty.remote() for _ in range(workers)])
    times["warm_round_trip"] = time.perf_counter() - start
    times["start_cpu"] = descendants_cpu_seconds() + time.process_time() - cpu_start
    idle_start = descendants_cpu_seconds()
    time.sleep(10)
    times["idle_cpu_per_s"] = (descendants_cpu_seconds() - idle_start) / 10
    import psutil

    times["rss_mib"] = sum(p.memory_info().rss for p in psutil.Process().children(recursive=True)) / 2**20
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

    sequential = timed_grid(tasks, workers=None)
    load_between = os.getloadavg()[0]
    parallel = timed_grid(tasks, workers=args.workers)
    rates = [[value["overflow_rate"] for value in run["values"]] for run in (sequential, parallel)]
    assert rates[0] == rates[1], f"the two runs disagree: {rates}"
    empty_wall = timed_grid([Task(f"empty{i}", nothing) for i in range(args.workers)], workers=args.workers)["wall"]
    start_up = ray_start_up(args.workers)

    print(f"{'':28s}{'wall (s)':>10s}{'speed-up':>10s}{'tasks: wall (s)':>17s}{'tasks: CPU (s)':>16s}")
    for name, run in (("sequential (this process)", sequential), (f"workers={args.workers} (local Ray)", parallel)):
        speed_up = sequential["wall"] / run["wall"]
        print(f"{name:28s}{run['wall']:10.1f}{speed_up:9.2f}x{run['own']:17.1f}{run['cpu']:16.1f}")
    print(f"load average {load_between:.1f} between the runs, {os.getloadavg()[0]:.1f} at the end "
          f"(a task's wall time above its CPU time is time spent waiting for a CPU)")
    print(f"Ray start-up: ray.init {start_up['init']:.1f} s, first round trip of {args.workers} empty tasks "
          f"{start_up['first_round_trip']:.1f} s, then {start_up['warm_round_trip'] * 1000:.0f} ms; "
          f"ray.shutdown {start_up['shutdown']:.1f} s; run_tasks(workers={args.workers}) of {args.workers} "
          f"empty tasks {empty_wall:.1f} s end to end")
    print(f"Ray's processes: {start_up['start_cpu']:.1f} CPU-s to start, {start_up['idle_cpu_per_s'] * 100:.0f}% "
          f"of a CPU while idle, {start_up['rss_mib']:.0f} MiB resident (daemons and {args.workers} idle workers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
