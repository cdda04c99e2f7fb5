"""Write the mutation-testing report of `make mutation` (Markdown) from `mutmut results --all true`.

Survivors that are equivalent mutants (no input can tell them apart from the original) are listed in
EQUIVALENT with the reason; the score counts them as survivors all the same.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

EQUIVALENT = {
    "x_datatype_bound_bits__mutmut_23": "2^-a -> 3^-a: 2^a is an integer K*2^c, and ceil(log2(2^a + t)) is the same "
                                         "for every t in (0, 1]",
    "x_exact_acc_range__mutmut_20": "w > 0 -> w >= 0: zero weights add 0 to the positive sum",
    "x_exact_acc_range__mutmut_32": "w < 0 -> w <= 0: zero weights add 0 to the negative sum",
    "x_exact_acc_range__mutmut_33": "w < 0 -> w < 1: integer weights below 1 are the negative ones and zero",
    "x_signed_bits_for_range__mutmut_7": "max(..., 1) -> max(...): acc_max + 1 >= 1 for every range that contains 0",
    "x_weight_fingerprint__mutmut_8": "reshape(n, -1) -> reshape(n, -2): NumPy reads any negative size as 'infer'",
    "x_min_useful_acc_bits__mutmut_21": "the product's sign is covered by the other term of min()",
    "x_min_useful_acc_bits__mutmut_22": "the product's sign is covered by the other term of min()",
    "x_min_useful_acc_bits__mutmut_28": "the product's sign is covered by the other term of max()",
    "x_min_useful_acc_bits__mutmut_30": "the product's sign is covered by the other term of max()",
    "x__as_int_matrix__mutmut_21": "astype(None) -> float64: every later product sum is cast back to int64 or fits float64 exactly below 2^53 (the float path); values past 2^53 only reach the int path, which the weights' dtype does not choose",
    "x__as_int_matrix__mutmut_22": "copy=None vs copy=False: both avoid a copy where NumPy can; the result is the same array content",
    "x__as_int_matrix__mutmut_24": "dropping copy=False only adds a copy",
    "x__as_int_matrix__mutmut_25": "copy=True only adds a copy",
    "x__as_orders__mutmut_25": "reshape(-2, k) -> NumPy reads any negative size as 'infer'",
    "x__as_orders__mutmut_37": "np.sort without axis sorts along the last axis, which is axis 1 of the (R, K) orders",
    "x__exact_matmul__mutmut_3": "astype(None) is float64, the same type",
    "x__exact_matmul__mutmut_4": "astype(None) is float64, the same type",
    "x__plan_tasks__mutmut_33": "true division by the thread count changes group sizes by less than one ordering; np.array_split gives the same groups for the shapes it is called with (a pure performance plan: every result is checked against the reference loop)",
    "x__plan_tasks__mutmut_35": "n_orders == threads: the slice count becomes max(n, min(rows, 1)), unchanged",
    "x__plan_tasks__mutmut_49": "astype(None) keeps float bounds; slice() takes int() of them, the same integers",
    "x__product_sums__mutmut_26": "use_float=None takes the exact int64 path: the same sums, only slower",
    "x__product_sums__mutmut_33": "use_float=None takes the exact int64 path: the same sums, only slower",
    "x__product_sums__mutmut_41": "use_float=None takes the exact int64 path: the same sums, only slower",
    "x__product_sums__mutmut_49": "use_float=None takes the exact int64 path: the same sums, only slower",
    "x_simulate_accumulation__mutmut_48": "use_float=None takes the exact int64 path: the same sums, only slower",
    "x_simulate_accumulation__mutmut_50": "<= 2^53 instead of < 2^53: 2^53 itself is exact in float64",
    "x_simulate_accumulation__mutmut_54": "use_float=None takes the exact int64 path: the same sums, only slower",
    "x_simulate_accumulation__mutmut_77": "np.arange(k) without dtype is int64, which indexes like intp on 64-bit platforms",
    "x_simulate_accumulation__mutmut_79": "np.arange(k) without dtype is int64, which indexes like intp on 64-bit platforms",
    "x_simulate_accumulation__mutmut_119": "exact + lo and exact - lo differ by 2^P (lo = -2^(P-1)), which the modulo removes",
    "x__saturating_sums__mutmut_18": "a row whose negative sum equals lo never leaves the range: running it through the loop gives the same exact sums",
    "x__saturating_sums__mutmut_19": "a row whose positive sum equals hi never leaves the range: running it through the loop gives the same exact sums",
    "x__saturating_sums__mutmut_30": "at span + max_product == the dtype's maximum a wider state is chosen: the same results",
    "x__saturating_sums__mutmut_45": "at least two rows per chunk instead of one: chunking never changes results",
    "x__saturating_sums__mutmut_51": "a divisor of at least 2 instead of 1 only matters for an empty product table",
    "x__saturating_sums__mutmut_59": "one row per chunk: more chunks, the same results",
    "x__saturating_sums__mutmut_58": "range(0, rows_per_chunk) with a step of 1: chunks that overlap or are empty recompute the same rows",
    "x__saturating_sums__mutmut_77": "int64 products into the int16/int32/int64 state are a same-kind cast, allowed without casting='unsafe'; the state is wide enough for every product",
    "x__saturating_sums__mutmut_84": "np.full infers the state dtype from start, a scalar of that dtype",
    "x__saturating_sums__mutmut_87": "np.full infers the state dtype from start, a scalar of that dtype",
    "x__saturating_sums__mutmut_98": "out=None: np.take allocates instead of reusing the buffer, the same values",
    "x__saturating_sums__mutmut_104": "out=None: np.take allocates instead of reusing the buffer, the same values",
    "x__saturating_sums__mutmut_105": "mode=None is 'raise'; the indices are a permutation of range(K), never out of range",
    "x__saturating_sums__mutmut_109": "without out=, np.take allocates instead of reusing the buffer, the same values",
    "x__saturating_sums__mutmut_110": "without mode=, np.take raises on out-of-range indices, which a permutation never has",
    "x__saturating_sums__mutmut_143": "a float64 state plus lo is cast back into the int64 result array: exact below 2^53, which the state's range is",
    "x__saturating_sums__mutmut_167": "threaded or sequential execution of the tasks gives the same results",
    "x__saturating_sums__mutmut_168": "threaded or sequential execution of the tasks gives the same results",
    "x__saturating_sums__mutmut_169": "threaded or sequential execution of the tasks gives the same results",
    "x__saturating_sums__mutmut_170": "threaded or sequential execution of the tasks gives the same results",
    "x__saturating_sums__mutmut_171": "threaded or sequential execution of the tasks gives the same results",
    "x__saturating_sums__mutmut_172": "the pool's size does not change the results",
    "x_logits_metrics__mutmut_18": "asarray(scale) without float64: integer scales times integer accumulators are exact, and the mean is a float either way",
    "x_logits_metrics__mutmut_20": "asarray(scale) without float64: integer scales times integer accumulators are exact, and the mean is a float either way",
    "x__saturating_sums__mutmut_57": "detected by the timeout: range(rows, rows_per_chunk) steps one row at a time "
                                     "over a huge range, and the tests do not finish",
    "xǁSetA2QAccumulatorWidthǁapply__mutmut_154": "detected by the timeout: a pass that says it modified the graph makes "
                                                  "qonnx's transform() run it again forever",
    "x_layer_weights_by_channel__mutmut_30": "reshape(n, -2) -> NumPy reads any negative size as 'infer'",
    "x_to_graph_input__mutmut_6": "without float64 the input keeps its float32 (or integer) type; x / scale and rounding agree for the values an 8-bit-or-narrower input quantizer takes",
    "x_to_graph_input__mutmut_8": "without float64 the input keeps its float32 (or integer) type; x / scale and rounding agree for the values an 8-bit-or-narrower input quantizer takes",
    "xǁIntegerInputFromQuantǁapply__mutmut_25": "the scale has one element: reshape(1) and reshape(-1) agree",
    "xǁIntegerInputFromQuantǁapply__mutmut_26": "reshape(-2) -> NumPy reads any negative size as 'infer'",
    "xǁIntegerInputFromQuantǁapply__mutmut_34": "the scale has one element: reshape(1) and reshape(-1) agree",
    "xǁIntegerInputFromQuantǁapply__mutmut_35": "reshape(-2) -> NumPy reads any negative size as 'infer'",
    "xǁIntegerInputFromQuantǁapply__mutmut_73": "the default only matters for truthiness: 2 and 1 are both signed",
    "xǁIntegerInputFromQuantǁapply__mutmut_77": "qonnx names a 1-bit unsigned type BINARY: DataType['UINT1'] == DataType['BINARY']",
    "xǁIntegerInputFromQuantǁapply__mutmut_117": "a None datatype clears the annotation, which qonnx reads as FLOAT32, the value written",
}


def main() -> int:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True, text=True,
                         check=True).stdout
    status = {}
    for line in out.splitlines():
        name, _, state = line.strip().rpartition(": ")
        if name:
            status[name] = state
    modules = sorted({name.rsplit(".", 1)[0] for name in status})
    killed = sum(state == "killed" for state in status.values())
    lines = ["# Mutation testing", "",
             "`make mutation` (mutmut 3, configured in pyproject.toml: the modules and the fast tests that cover them).",
             "", f"All: {len(status)} mutants, {killed} killed, score {100 * killed / max(len(status), 1):.1f} %.", "",
             "| module | mutants | killed | score | by state |", "|---|---|---|---|---|"]
    for module in modules:
        states = Counter(state for name, state in status.items() if name.rsplit(".", 1)[0] == module)
        total = sum(states.values())
        lines.append(f"| `{module}` | {total} | {states.get('killed', 0)} | "
                     f"{100 * states.get('killed', 0) / max(total, 1):.1f} % | "
                     + ", ".join(f"{state} {n}" for state, n in sorted(states.items())) + " |")
    lines += ["", "## Mutants not killed", ""]
    for name, state in sorted(status.items()):
        if state != "killed":
            short = name.rsplit(".", 1)[-1]
            lines.append(f"- `{name}` ({state}): {EQUIVALENT.get(short, 'not explained: a test is missing')}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
