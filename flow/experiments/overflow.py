"""Integer simulation of a quantized dot-product layer with a P-bit signed accumulator.

Used to reproduce the A2Q paper's overflow study: what a narrow accumulator does to a layer's
outputs under two's-complement wraparound, under saturation, and under different orders of
additions. Everything is in integer units (quantized weights and inputs before scaling); a conv
layer is simulated through its im2col matrix. ``acc_bits`` (P) is the width of a signed register
holding ``[-2^(P-1), 2^(P-1) - 1]``.

Fact used throughout: until the first overflow, a saturating register holds the exact partial
sums, so "some saturating partial sum left the range" and "some exact prefix sum left the range"
(in the same order) are the same event. Hence ``overflowed`` has one meaning for every mode.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from flow.core.errors import FlowError

MODES = ("exact", "wrap", "saturate", "clip_final")

_TABLE_BYTES = 512 * 2**20  # budget for the (K, C, batch-chunk) table of products
_STATE_ELEMENTS = 2**17  # C * rows updated per step by one task (keeps the state cache-resident)
_FLOAT_EXACT_LIMIT = 2**53  # |sums| below this are exact in float64, so BLAS can be used
_INT64_SAFE_LIMIT = 2**62  # sum of |products| must stay below this for exact int64 arithmetic


@dataclass(frozen=True)
class OverflowResult:
    """Accumulator values and overflow flags of one simulation.

    ``acc``: int64, (B, C), or (R, B, C) when R orderings were given as a 2-D ``order``.
    ``overflowed``: bool, same shape: whether any partial sum, in the order used, left the
    P-bit range (identity order unless ``order`` was given).
    """

    acc: np.ndarray
    overflowed: np.ndarray

    @property
    def overflow_rate(self) -> float:
        """Fraction of accumulator values (dot products) that overflowed; 0.0 when empty."""
        return float(self.overflowed.mean()) if self.overflowed.size else 0.0


def simulate_accumulation(
    weights_int,
    inputs_int,
    acc_bits: int,
    mode: str,
    order=None,
    *,
    num_threads: int | None = None,
) -> OverflowResult:
    """Simulate ``inputs_int @ weights_int.T`` accumulated in a signed ``acc_bits``-bit register.

    ``weights_int``: integer (C, K); ``inputs_int``: integer (B, K). ``mode``:

    * ``"exact"``: the int64 sum, no limit;
    * ``"wrap"``: two's-complement wraparound, i.e. the exact sum reduced modulo 2^P into the
      signed range (order-independent);
    * ``"saturate"``: every partial sum clamped to the range as it is accumulated, in ``order``;
    * ``"clip_final"``: the exact sum clamped once at the end.

    ``order``: None (identity), a permutation of ``range(K)``, or an (R, K) array of R
    permutations evaluated at once (results then gain a leading R axis). ``num_threads``:
    worker threads for the sequential saturating loop (default: the usable CPU count).
    """
    if mode not in MODES:
        raise FlowError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) or acc_bits < 2:
        raise FlowError(f"acc_bits must be an integer >= 2, got {acc_bits!r}")
    acc_bits = int(acc_bits)
    weights = _as_int_matrix("weights_int", weights_int)
    inputs = _as_int_matrix("inputs_int", inputs_int)
    if weights.shape[1] != inputs.shape[1]:
        raise FlowError(
            f"weights_int is (C, K) = {weights.shape} and inputs_int is (B, K) = {inputs.shape}: K differs"
        )
    k = weights.shape[1]
    orders = _as_orders(order, k)
    threads = _thread_count(num_threads)

    max_product = _max_abs(weights) * _max_abs(inputs)
    if max_product * k >= _INT64_SAFE_LIMIT:
        raise FlowError(
            f"|weights| * |inputs| * K = {max_product * k} reaches 2^62: too large for exact int64 simulation"
        )
    use_float = max_product * k < _FLOAT_EXACT_LIMIT
    negative_sums, positive_sums = _product_sums(weights, inputs, use_float)
    exact = negative_sums + positive_sums  # (B, C)

    lo, hi = -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1
    ordered = orders if orders is not None else np.arange(k, dtype=np.intp)[None, :]
    flag_acc, overflowed = _saturating_sums(
        weights, inputs, exact, (negative_sums, positive_sums), lo, hi, ordered, max_product, threads
    )

    if mode == "saturate":
        acc = flag_acc
    else:
        if mode == "exact" or acc_bits >= 63:  # |sums| < 2^62: nothing to wrap or clip
            final = exact
        elif mode == "wrap":
            final = np.mod(exact - lo, 2**acc_bits) + lo
        else:  # clip_final
            final = np.clip(exact, lo, hi)
        acc = np.broadcast_to(final, overflowed.shape).copy()

    if order is None or np.ndim(order) == 1:
        acc, overflowed = acc[0], overflowed[0]
    return OverflowResult(acc=acc, overflowed=overflowed)


def logits_metrics(acc, acc_ref, scale, labels) -> dict[str, float]:
    """Compare dequantized logits ``scale * acc`` against ``scale * acc_ref``.

    ``acc``: (..., B, C) integers; ``acc_ref``: broadcastable to ``acc``; ``scale``: scalar or
    per-output-channel (C,) (anything broadcastable); ``labels``: (B,) class indices.
    Returns ``logits_mae`` (mean absolute error of the logits, in logit units) and ``top1``
    (fraction of argmax(``scale * acc``) equal to ``labels``, over all leading axes too).
    """
    acc = np.asarray(acc)
    labels = np.asarray(labels)
    if acc.ndim < 2:
        raise FlowError(f"acc must be (..., B, C), got shape {acc.shape}")
    if labels.shape != acc.shape[-2:-1]:
        raise FlowError(f"labels must be (B,) = ({acc.shape[-2]},), got shape {labels.shape}")
    scale = np.asarray(scale, dtype=np.float64)
    try:
        logits = scale * acc
        abs_error = np.abs(logits - scale * np.asarray(acc_ref))
    except ValueError as err:
        raise FlowError(f"acc {acc.shape}, acc_ref {np.shape(acc_ref)} and scale {scale.shape} do not broadcast") from err
    if abs_error.shape != acc.shape:
        raise FlowError(f"acc_ref {np.shape(acc_ref)} and scale {scale.shape} must broadcast to acc {acc.shape}")
    top1 = (np.argmax(logits, axis=-1) == labels).mean()
    return {"logits_mae": float(abs_error.mean()), "top1": float(top1)}


def _as_int_matrix(name: str, values) -> np.ndarray:
    """``values`` as a 2-D int64 array; FlowError if not integer (bool counts as 0/1)."""
    array = np.asarray(values)
    if array.dtype == np.bool_:
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise FlowError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise FlowError(f"{name} must be 2-D, got shape {array.shape}")
    if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
        raise FlowError(f"{name} has values above the int64 range")
    return array.astype(np.int64, copy=False)


def _as_orders(order, k: int) -> np.ndarray | None:
    """``order`` as an (R, K) intp array of permutations of range(K), or None."""
    if order is None:
        return None
    orders = np.asarray(order)
    if not np.issubdtype(orders.dtype, np.integer) or orders.ndim not in (1, 2) or orders.shape[-1] != k:
        raise FlowError(
            f"order must be an integer permutation of range({k}) or an (R, {k}) array of them; "
            f"got dtype {orders.dtype}, shape {orders.shape}"
        )
    orders = orders.reshape(-1, k).astype(np.intp)
    if orders.shape[0] == 0:
        raise FlowError("order must hold at least one ordering")
    not_permutation = (np.sort(orders, axis=1) != np.arange(k)).any(axis=1)
    if not_permutation.any():
        row = int(np.flatnonzero(not_permutation)[0])
        raise FlowError(f"order row {row} is not a permutation of range({k})")
    return orders


def _thread_count(num_threads: int | None) -> int:
    if num_threads is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise FlowError(f"num_threads must be an integer >= 1, got {num_threads!r}")
    return int(num_threads)


def _max_abs(array: np.ndarray) -> int:
    """max |array| as a Python int (0 for an empty array); no int64 overflow at -2^63."""
    if array.size == 0:
        return 0
    return max(-int(array.min()), int(array.max()))


def _exact_matmul(a: np.ndarray, b: np.ndarray, use_float: bool) -> np.ndarray:
    """Exact int64 ``a @ b``; through float64 BLAS when every |partial sum| < 2^53."""
    if use_float:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


def _saturating_sums(weights, inputs, exact, product_sums, lo, hi, orders, max_product, threads):
    """Saturated sums (int64) and overflow flags (bool), both (R, B, C), for ``orders`` (R, K).

    Rows whose partial sums provably stay in [lo, hi] in every order (each partial sum lies
    between the sum of the negative and the sum of the positive products) are copied from
    ``exact``; the rest run the sequential clamped loop, vectorized over outputs and batch rows.
    """
    n_orders, k = orders.shape
    n_rows, n_outputs = exact.shape
    acc = np.broadcast_to(exact, (n_orders, n_rows, n_outputs)).copy()
    overflowed = np.zeros(acc.shape, dtype=bool)
    lower, upper = product_sums
    risky_rows = np.flatnonzero(((lower < lo) | (upper > hi)).any(axis=1))
    if risky_rows.size == 0:
        return acc, overflowed

    # The state holds ``partial sum - lo`` in [0, span]; one step adds a product to it, so it needs
    # span + max_product of headroom. Viewed as unsigned, a state is > span exactly when it left the
    # range on either side, so one running max records overflow.
    span = hi - lo
    state_dtype, unsigned_dtype = next(
        (np.dtype(signed), np.dtype(unsigned))
        for signed, unsigned in ((np.int16, np.uint16), (np.int32, np.uint32), (np.int64, np.uint64))
        if span + max_product <= np.iinfo(signed).max
    )
    start, zero, top = state_dtype.type(-lo), state_dtype.type(0), state_dtype.type(span)

    weights_t = np.ascontiguousarray(weights.T)
    rows_per_chunk = max(1, _TABLE_BYTES // max(1, k * n_outputs * state_dtype.itemsize))
    for chunk_start in range(0, risky_rows.size, rows_per_chunk):
        chunk_rows = risky_rows[chunk_start : chunk_start + rows_per_chunk]
        # products[j, c, b] = weights[c, j] * inputs[b, j]: one contiguous (C, rows) slab per term.
        products = np.empty((k, n_outputs, chunk_rows.size), dtype=state_dtype)
        inputs_t = np.ascontiguousarray(inputs[chunk_rows].T)
        np.multiply(weights_t[:, :, None], inputs_t[:, None, :], out=products, casting="unsafe")

        def run_task(order_group: np.ndarray, row_slice: slice) -> None:
            slabs = products[:, :, row_slice]
            state = np.full((order_group.size, *slabs.shape[1:]), start, dtype=state_dtype)
            state_unsigned = state.view(unsigned_dtype)
            peak = np.zeros_like(state_unsigned)
            group_orders = orders[order_group]
            if order_group.size == 1:  # the (C, rows) slab of each term broadcasts over the state
                addends = (slabs[term] for term in group_orders[0].tolist())
            else:  # several orderings share one state array: gather their slabs (rows not sliced)
                gathered = np.empty_like(state)
                addends = (np.take(slabs, terms, axis=0, out=gathered, mode="clip") for terms in group_orders.T)
            for addend in addends:
                np.add(state, addend, out=state)
                np.maximum(peak, state_unsigned, out=peak)
                np.clip(state, zero, top, out=state)
            target = (order_group[:, None], chunk_rows[row_slice][None, :])
            acc[target] = (state.astype(np.int64) + lo).transpose(0, 2, 1)
            overflowed[target] = (peak > span).transpose(0, 2, 1)

        tasks = _plan_tasks(chunk_rows.size, n_outputs, n_orders, threads)
        if threads == 1 or len(tasks) == 1:
            for task in tasks:
                run_task(*task)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for future in [pool.submit(run_task, *task) for task in tasks]:
                    future.result()
    return acc, overflowed


def _plan_tasks(n_rows: int, n_outputs: int, n_orders: int, threads: int) -> list[tuple[np.ndarray, slice]]:
    """Split (orderings x rows) into tasks whose state is ~``_STATE_ELEMENTS`` and feed all threads.

    Large row counts are sliced (one ordering per task); small ones group several orderings into one
    state array, so that the per-step Python overhead is paid over enough elements.
    """
    row_elements = n_rows * n_outputs
    n_slices = max(1, -(-row_elements // _STATE_ELEMENTS))
    group_size = 1
    if n_slices == 1:
        group_size = max(1, min(_STATE_ELEMENTS // max(1, row_elements), -(-n_orders // threads)))
    if n_orders < threads:
        n_slices = max(n_slices, min(n_rows, -(-threads // n_orders)))
    row_bounds = np.linspace(0, n_rows, n_slices + 1).round().astype(int)
    row_slices = [slice(int(a), int(b)) for a, b in zip(row_bounds[:-1], row_bounds[1:]) if b > a]
    order_groups = np.array_split(np.arange(n_orders), -(-n_orders // group_size))
    return [(group, rows) for group in order_groups for rows in row_slices]


def _product_sums(weights, inputs, use_float):
    """Per (row, output): (sum of negative products, sum of positive products), int64 (B, C).

    Their total is the exact dot product, and every partial sum, in any order, lies between them.
    """
    w_pos, w_neg = np.maximum(weights, 0), np.minimum(weights, 0)
    x_pos, x_neg = np.maximum(inputs, 0), np.minimum(inputs, 0)
    positive = _exact_matmul(x_pos, w_pos.T, use_float)
    negative = _exact_matmul(x_pos, w_neg.T, use_float)
    if x_neg.any():
        positive += _exact_matmul(x_neg, w_neg.T, use_float)
        negative += _exact_matmul(x_neg, w_pos.T, use_float)
    return negative, positive
