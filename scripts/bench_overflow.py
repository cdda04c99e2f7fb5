"""Benchmark the saturating P-bit accumulator simulator on the A2Q paper's Figure-3 workload.

On one seeded data set (binary inputs, 8-bit weights) it times
(a) ``flow.overflow.simulate_accumulation(..., "saturate", order=<R orderings>)``, end to end;
(b) a straightforward reference: a plain Python loop per dot product, timed on a random subset
    of dot products and extrapolated (checked against (a) on that subset);
(c) a plain int64 matmul of the same size (the exact, order-free sums), timed once per ordering
    count by scaling one matmul.
It prints additions per second, the ratios, and the projected time of the full Figure-3 run
(10,000 inputs x 10 outputs x K=784 x 100 orderings) against the 2-minute target.

Run from the repository root: ``python scripts/bench_overflow.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from flow.experiments.overflow import simulate_accumulation

FIGURE3_SIZE = {"batch": 10_000, "outputs": 10, "k": 784, "orderings": 100}
QUICK_SIZE = {"batch": 1_000, "outputs": 10, "k": 784, "orderings": 10}
TARGET_SECONDS = 120.0


def reference_saturate_dot(weight_row: list[int], input_row: list[int], order: list[int], lo: int, hi: int) -> int:
    """One dot product accumulated term by term in ``order``, clamped to [lo, hi] after each add."""
    total = 0
    for j in order:
        total += weight_row[j] * input_row[j]
        if total > hi:
            total = hi
        elif total < lo:
            total = lo
    return total


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=FIGURE3_SIZE["batch"], help="inputs B")
    parser.add_argument("--outputs", type=int, default=FIGURE3_SIZE["outputs"], help="output channels C")
    parser.add_argument("--k", type=int, default=FIGURE3_SIZE["k"], help="dot-product length K")
    parser.add_argument("--orderings", type=int, default=FIGURE3_SIZE["orderings"], help="orders of additions R")
    parser.add_argument("--acc-bits", type=int, default=12, help="accumulator width P (default 12)")
    parser.add_argument("--reference-dots", type=int, default=5000, help="dot products timed for (b)")
    parser.add_argument("--threads", type=int, default=None, help="threads for (a) (default: all usable CPUs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"small size: {QUICK_SIZE}")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK_SIZE.items():
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    batch, outputs, k, n_orders, acc_bits = args.batch, args.outputs, args.k, args.orderings, args.acc_bits
    rng = np.random.default_rng(args.seed)
    weights = rng.integers(-128, 128, size=(outputs, k))  # 8-bit signed
    inputs = rng.integers(0, 2, size=(batch, k))  # binary
    orders = np.stack([rng.permutation(k) for _ in range(n_orders)])
    additions = n_orders * batch * outputs * k
    figure3_additions = int(np.prod(list(FIGURE3_SIZE.values())))
    is_figure3 = (batch, outputs, k, n_orders) == tuple(FIGURE3_SIZE.values())

    print(f"data: B={batch} inputs x C={outputs} outputs x K={k} terms x R={n_orders} orderings, "
          f"P={acc_bits} bits, binary inputs, 8-bit weights, seed {args.seed}")
    print(f"saturating additions: {additions:.3e}")

    # (a) vectorized saturating simulator, end to end (bounds, product table, sequential loop),
    # after a tiny warm-up call (imports, thread start-up) that is not timed.
    simulate_accumulation(weights, inputs[:8], acc_bits, "saturate", order=orders[:2], num_threads=args.threads)
    start = time.perf_counter()
    result = simulate_accumulation(weights, inputs, acc_bits, "saturate", order=orders, num_threads=args.threads)
    vectorized_s = time.perf_counter() - start
    vectorized_rate = additions / vectorized_s
    threads = args.threads or "all usable"
    print(f"(a) vectorized saturate : {vectorized_s:8.2f} s   {vectorized_rate:.3e} additions/s  "
          f"(threads: {threads}; overflow rate at P={acc_bits}: {result.overflow_rate:.4f})")

    # (b) plain Python loop per dot product, on a random subset, extrapolated.
    n_dots = min(args.reference_dots, n_orders * batch * outputs)
    picks = rng.choice(n_orders * batch * outputs, size=n_dots, replace=False)
    pick_r, pick_b, pick_c = np.unravel_index(picks, (n_orders, batch, outputs))
    lo, hi = -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1
    weight_rows, input_rows, order_rows = weights.tolist(), inputs.tolist(), orders.tolist()
    start = time.perf_counter()
    reference = [
        reference_saturate_dot(weight_rows[c], input_rows[b], order_rows[r], lo, hi)
        for r, b, c in zip(pick_r.tolist(), pick_b.tolist(), pick_c.tolist())
    ]
    reference_s = time.perf_counter() - start
    reference_rate = n_dots * k / reference_s
    matches = bool(np.array_equal(reference, result.acc[pick_r, pick_b, pick_c]))
    print(f"(b) reference loop      : {reference_s:8.2f} s   {reference_rate:.3e} additions/s  "
          f"(timed on {n_dots} of {n_orders * batch * outputs} dot products and extrapolated: "
          f"{additions / reference_rate:.0f} s for this size; equals (a) on them: {'yes' if matches else 'NO'})")

    # (c) plain int64 matmul: one (B, K) @ (K, C) product, best of 3, scaled to R orderings.
    inputs64, weights64_t = inputs.astype(np.int64), np.ascontiguousarray(weights.T.astype(np.int64))
    matmul_s = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        exact = inputs64 @ weights64_t
        matmul_s = min(matmul_s, time.perf_counter() - start)
    matmul_rate = batch * outputs * k / matmul_s
    print(f"(c) int64 matmul (exact): {matmul_s * n_orders:8.2f} s   {matmul_rate:.3e} additions/s  "
          f"(one {batch}x{k} @ {k}x{outputs} matmul in {matmul_s:.3f} s, x{n_orders} orderings)")
    assert exact.shape == (batch, outputs)

    print(f"ratios: (a)/(b) = {vectorized_rate / reference_rate:.0f}x faster than the reference loop; "
          f"(a)/(c) = {vectorized_rate / matmul_rate:.2f}x the int64 matmul's rate")
    projected_s = figure3_additions / vectorized_rate
    how = "measured" if is_figure3 else "projected from (a)'s rate"
    print(f"Figure-3 experiment ({' x '.join(str(v) for v in FIGURE3_SIZE.values())} = {figure3_additions:.3e} "
          f"additions) at P={acc_bits}: {projected_s:.1f} s with (a) ({how}); "
          f"{figure3_additions / reference_rate / 3600:.1f} h with the reference loop (extrapolated)")
    meets = projected_s < TARGET_SECONDS
    print(f"meets the {TARGET_SECONDS / 60:.0f}-minute target: {'yes' if meets else 'no'}")
    return 0 if matches else 1


if __name__ == "__main__":
    sys.exit(main())
