"""Exact integer checks of the P-bit accumulator simulator (flow.overflow)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import flow.experiments.overflow as overflow
from flow.core.accumulator import (
    a2q_l1_bound,
    datatype_bound_bits,
    exact_acc_bits,
    signed_bits_for_range,
    weight_l1_norms,
)
from flow.core.errors import FlowError
from flow.experiments.overflow import MODES, logits_metrics, simulate_accumulation


def signed_range(acc_bits: int) -> tuple[int, int]:
    return -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1


def reference_saturate(weights, inputs, acc_bits, order):
    """Plain loop per dot product: (saturated sums, overflow flags), both (B, C)."""
    lo, hi = signed_range(acc_bits)
    n_rows, n_outputs = len(inputs), len(weights)
    acc = np.zeros((n_rows, n_outputs), dtype=np.int64)
    overflowed = np.zeros((n_rows, n_outputs), dtype=bool)
    for b in range(n_rows):
        for c in range(n_outputs):
            total = 0
            for j in order:
                total += int(weights[c][j]) * int(inputs[b][j])
                if not lo <= total <= hi:
                    overflowed[b, c] = True
                    total = min(max(total, lo), hi)
            acc[b, c] = total
    return acc, overflowed


def exact_sums(weights, inputs):
    """(B, C) exact dot products as Python ints in an object array."""
    return np.array([[sum(int(w) * int(x) for w, x in zip(w_row, x_row)) for w_row in weights] for x_row in inputs],
                    dtype=object)


def random_orders(rng, n_orders, k):
    return np.stack([rng.permutation(k) for _ in range(n_orders)])


@pytest.mark.parametrize("acc_bits", [2, 3, 5, 8, 12, 20])
def test_wrap_is_exact_sum_reduced_modulo_2p(acc_bits):
    rng = np.random.default_rng(acc_bits)
    weights = rng.integers(-128, 128, size=(4, 37))
    inputs = rng.integers(-8, 8, size=(6, 37))
    exact = exact_sums(weights, inputs)
    lo, _ = signed_range(acc_bits)
    expected = np.array([[(int(v) - lo) % 2**acc_bits + lo for v in row] for row in exact], dtype=np.int64)

    wrapped = simulate_accumulation(weights, inputs, acc_bits, "wrap")
    assert wrapped.acc.dtype == np.int64 and wrapped.acc.shape == (6, 4)
    np.testing.assert_array_equal(wrapped.acc, expected)
    np.testing.assert_array_equal(simulate_accumulation(weights, inputs, acc_bits, "exact").acc, exact.astype(np.int64))
    # Wraparound is order-independent: every ordering gives the same values.
    shuffled = simulate_accumulation(weights, inputs, acc_bits, "wrap", order=random_orders(rng, 3, 37))
    np.testing.assert_array_equal(shuffled.acc, np.broadcast_to(expected, (3, 6, 4)))


@pytest.mark.parametrize(("input_bits", "input_signed"), [(1, False), (4, False), (4, True), (8, True)])
def test_saturate_equals_exact_when_wide_enough(input_bits, input_signed):
    rng = np.random.default_rng(input_bits + 10 * input_signed)
    weights = rng.integers(-128, 128, size=(5, 50))
    lo_x, hi_x = (-(2 ** (input_bits - 1)), 2 ** (input_bits - 1) - 1) if input_signed else (0, 2**input_bits - 1)
    inputs = rng.integers(lo_x, hi_x + 1, size=(20, 50))
    inputs[0], inputs[1] = hi_x, lo_x  # extreme rows
    acc_bits = exact_acc_bits(weights, input_bits, input_signed)
    orders = random_orders(rng, 5, 50)

    saturated = simulate_accumulation(weights, inputs, acc_bits, "saturate", order=orders)
    exact = simulate_accumulation(weights, inputs, acc_bits, "exact").acc
    np.testing.assert_array_equal(saturated.acc, np.broadcast_to(exact, saturated.acc.shape))
    assert not saturated.overflowed.any()
    assert saturated.overflow_rate == 0.0


def test_two_orders_give_different_saturated_results():
    # P = 4 holds [-8, 7]. Terms 5, 5, -6; exact sum 4.
    weights, inputs = [[5, 5, -6]], [[1, 1, 1]]
    # Order (0, 1, 2): 5, 10 -> clamped to 7, 7 - 6 = 1.
    first = simulate_accumulation(weights, inputs, 4, "saturate", order=[0, 1, 2])
    assert first.acc.tolist() == [[1]] and first.overflowed.tolist() == [[True]]
    # Order (2, 0, 1): -6, -1, 4: never leaves the range.
    second = simulate_accumulation(weights, inputs, 4, "saturate", order=[2, 0, 1])
    assert second.acc.tolist() == [[4]] and second.overflowed.tolist() == [[False]]
    # Both at once, as R = 2 orderings.
    both = simulate_accumulation(weights, inputs, 4, "saturate", order=[[0, 1, 2], [2, 0, 1]])
    assert both.acc.tolist() == [[[1]], [[4]]] and both.overflowed.tolist() == [[[True]], [[False]]]
    # Wraparound recovers the exact 4 even though a partial sum (10) overflowed.
    wrapped = simulate_accumulation(weights, inputs, 4, "wrap")
    assert wrapped.acc.tolist() == [[4]] and wrapped.overflowed.tolist() == [[True]]

    # Terms 7, 7: exact 14 wraps to 14 - 16 = -2, saturates to 7, clips to 7.
    assert simulate_accumulation([[7, 7]], [[1, 1]], 4, "wrap").acc.tolist() == [[-2]]
    assert simulate_accumulation([[7, 7]], [[1, 1]], 4, "saturate").acc.tolist() == [[7]]
    assert simulate_accumulation([[7, 7]], [[1, 1]], 4, "clip_final").acc.tolist() == [[7]]
    assert simulate_accumulation([[7, 7]], [[1, 1]], 4, "exact").acc.tolist() == [[14]]


def test_clip_final_is_order_independent():
    rng = np.random.default_rng(3)
    weights = rng.integers(-128, 128, size=(6, 64))
    inputs = rng.integers(0, 2, size=(30, 64))
    lo, hi = signed_range(9)
    exact = exact_sums(weights, inputs).astype(np.int64)
    clipped = simulate_accumulation(weights, inputs, 9, "clip_final", order=random_orders(rng, 6, 64))
    np.testing.assert_array_equal(clipped.acc, np.broadcast_to(np.clip(exact, lo, hi), (6, 30, 6)))
    assert clipped.overflowed.any()  # the case is not trivial
    saturated = simulate_accumulation(weights, inputs, 9, "saturate", order=random_orders(rng, 6, 64))
    assert (saturated.acc != saturated.acc[0]).any()  # whereas saturation depends on the order


def scale_to_l1_budget(weights: np.ndarray, budget: float) -> np.ndarray:
    """Shrink each row toward zero (truncating) so that its l1 norm is <= budget."""
    l1 = weight_l1_norms(weights).astype(np.float64)
    factor = np.minimum(1.0, budget / np.maximum(l1, 1.0))
    return np.trunc(weights * factor[:, None]).astype(np.int64)


@pytest.mark.parametrize(("acc_bits", "input_bits", "input_signed", "k"), [(12, 1, False, 784), (14, 4, True, 96)])
def test_a2q_bounded_weights_never_overflow(acc_bits, input_bits, input_signed, k):
    rng = np.random.default_rng(acc_bits)
    budget = a2q_l1_bound(acc_bits, input_bits, input_signed)
    weights = scale_to_l1_budget(rng.integers(-128, 128, size=(10, k)), budget)
    assert (weight_l1_norms(weights) <= budget).all() and np.abs(weights).max() > 0
    lo_x, hi_x = (-(2 ** (input_bits - 1)), 2 ** (input_bits - 1) - 1) if input_signed else (0, 2**input_bits - 1)
    inputs = rng.integers(lo_x, hi_x + 1, size=(64, k))
    inputs[0], inputs[1] = lo_x, hi_x  # worst-case rows
    inputs[2] = np.where(weights[0] > 0, hi_x, lo_x)
    inputs[3] = np.where(weights[0] < 0, hi_x, lo_x)
    orders = random_orders(rng, 4, k)
    for mode in MODES:
        for order in (None, orders):
            assert simulate_accumulation(weights, inputs, acc_bits, mode, order=order).overflow_rate == 0.0


def test_random_8bit_layer_overflows_below_the_datatype_bound():
    rng = np.random.default_rng(784)
    weights = rng.integers(-128, 128, size=(10, 784))
    inputs = rng.integers(0, 2, size=(100, 784))
    assert datatype_bound_bits(784, 8, 1, False) == 19
    for mode in MODES:
        assert simulate_accumulation(weights, inputs, 19, mode).overflow_rate == 0.0
    exact = simulate_accumulation(weights, inputs, 19, "exact").acc
    for acc_bits in (10, 12):
        wrapped = simulate_accumulation(weights, inputs, acc_bits, "wrap")
        saturated = simulate_accumulation(weights, inputs, acc_bits, "saturate")
        assert wrapped.overflow_rate > 0.0
        np.testing.assert_array_equal(wrapped.overflowed, saturated.overflowed)
        assert (wrapped.acc != exact).any() and (saturated.acc != exact).any()


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize(
    ("weight_max", "input_min", "input_max"),
    [(8, 0, 2), (128, 0, 2), (128, -8, 8), (128, -128, 128), (2**10, -(2**10), 2**10), (2**20, -(2**24), 2**24)],
)  # int16, int32 and (last case) int64 state, depending on P
def test_vectorized_saturate_matches_reference_loop(monkeypatch, num_threads, weight_max, input_min, input_max):
    monkeypatch.setattr(overflow, "_TABLE_BYTES", 2048)  # force several batch chunks ...
    monkeypatch.setattr(overflow, "_STATE_ELEMENTS", 12)  # ... and several row slices per chunk
    rng = np.random.default_rng(weight_max + num_threads)
    k = 23
    weights = rng.integers(-weight_max, weight_max, size=(3, k))
    inputs = rng.integers(input_min, input_max, size=(9, k))
    inputs[-3:] //= 4  # smaller rows, so that some dot products fit where others overflow
    orders = random_orders(rng, 4, k)
    largest_abs_partial_sum = int((np.abs(inputs) @ np.abs(weights).T).max())
    needed_bits = signed_bits_for_range(-largest_abs_partial_sum, largest_abs_partial_sum)
    rates = []
    for acc_bits in sorted({2, needed_bits // 2, needed_bits - 3, needed_bits - 2, needed_bits - 1, needed_bits}):
        result = simulate_accumulation(weights, inputs, acc_bits, "saturate", order=orders, num_threads=num_threads)
        assert result.acc.shape == (4, 9, 3) and result.acc.dtype == np.int64
        for r, order in enumerate(orders):
            expected_acc, expected_overflow = reference_saturate(weights, inputs, acc_bits, order)
            np.testing.assert_array_equal(result.acc[r], expected_acc)
            np.testing.assert_array_equal(result.overflowed[r], expected_overflow)
        rates.append(result.overflow_rate)

        single = simulate_accumulation(weights, inputs, acc_bits, "saturate", order=orders[1], num_threads=num_threads)
        np.testing.assert_array_equal(single.acc, result.acc[1])
        identity = simulate_accumulation(weights, inputs, acc_bits, "saturate", num_threads=num_threads)
        np.testing.assert_array_equal(identity.acc, reference_saturate(weights, inputs, acc_bits, range(k))[0])
    assert any(0.0 < rate < 1.0 for rate in rates)  # some P mixes overflowing and fitting sums


def test_bad_arguments_raise_flow_error():
    weights, inputs = np.ones((2, 4), dtype=np.int64), np.ones((3, 4), dtype=np.int64)
    with pytest.raises(FlowError, match="exact, wrap, saturate, clip_final"):
        simulate_accumulation(weights, inputs, 8, "wraparound")
    for bad_bits in (1, 0, 2.5, True):
        with pytest.raises(FlowError, match="acc_bits"):
            simulate_accumulation(weights, inputs, bad_bits, "wrap")
    with pytest.raises(FlowError, match="K differs"):
        simulate_accumulation(weights, np.ones((3, 5), dtype=np.int64), 8, "wrap")
    with pytest.raises(FlowError, match="2-D"):
        simulate_accumulation(np.ones(4, dtype=np.int64), inputs, 8, "wrap")
    with pytest.raises(FlowError, match="integers"):
        simulate_accumulation(weights.astype(np.float32), inputs, 8, "wrap")
    with pytest.raises(FlowError, match="not a permutation"):
        simulate_accumulation(weights, inputs, 8, "saturate", order=[0, 0, 1, 2])
    with pytest.raises(FlowError, match="row 1 is not a permutation"):
        simulate_accumulation(weights, inputs, 8, "saturate", order=[[0, 1, 2, 3], [0, 1, 2, 4]])
    with pytest.raises(FlowError, match="permutation of range"):
        simulate_accumulation(weights, inputs, 8, "saturate", order=[0, 1, 2])
    with pytest.raises(FlowError, match="2\\^62"):
        simulate_accumulation(weights * 2**40, inputs * 2**30, 8, "wrap")
    with pytest.raises(FlowError, match="num_threads"):
        simulate_accumulation(weights, inputs, 8, "saturate", num_threads=0)


def test_logits_metrics():
    acc = np.array([[10, 2, 0], [0, 0, 4]])
    acc_ref = np.array([[10, 4, 0], [0, 6, 4]])
    scale = np.array([0.5, 1.0, 2.0])
    metrics = logits_metrics(acc, acc_ref, scale, labels=[0, 1])
    # scaled errors: [0, 2, 0, 0, 6, 0] -> mean 8/6; argmax of scale*acc: [0, 2] vs labels [0, 1].
    assert metrics == {"logits_mae": pytest.approx(8 / 6), "top1": 0.5}
    stacked = logits_metrics(np.stack([acc, acc_ref]), acc_ref, scale, labels=[0, 1])
    assert stacked == {"logits_mae": pytest.approx(4 / 6), "top1": 0.5}
    with pytest.raises(FlowError, match="labels"):
        logits_metrics(acc, acc_ref, scale, labels=[0, 1, 2])
    with pytest.raises(FlowError, match="broadcast"):
        logits_metrics(acc, acc_ref, np.ones(4), labels=[0, 1])


def test_wraparound_is_the_twos_complement_of_the_exact_sum():
    rng = np.random.default_rng(3)
    weights = rng.integers(-127, 128, size=(5, 40))
    inputs = rng.integers(0, 256, size=(7, 40))
    exact = inputs @ weights.T
    for bits in (8, 12, 16):
        wrapped = simulate_accumulation(weights, inputs, bits, "wrap").acc
        # independently: keep the low bits, read them as a signed number
        low = exact & (2**bits - 1)
        expected = np.where(low >= 2 ** (bits - 1), low - 2**bits, low)
        assert np.array_equal(wrapped, expected), bits
        assert (wrapped != exact).any()  # the width binds: these sums overflow 8..16 bits


def test_top1_counts_the_labels_the_logits_pick():
    acc = np.array([[1, 5, 2], [9, 0, 3], [0, 0, 4], [2, 8, 1]])
    labels = np.array([1, 0, 1, 1])  # right, right, wrong, right
    metrics = logits_metrics(acc, acc, 0.5, labels)
    assert metrics["top1"] == 0.75 and metrics["logits_mae"] == 0.0
    shifted = logits_metrics(acc + np.array([0, 0, 2]), acc, np.array([1.0, 1.0, 0.5]), labels)
    assert shifted["logits_mae"] == pytest.approx((1.0 * 4) / 12)  # 0.5 * 2 on the last logit of 4 rows


def test_each_bad_argument_is_named_in_a_whole_message():
    weights, inputs = np.ones((2, 4), dtype=np.int64), np.ones((3, 4), dtype=np.int64)
    cases = [
        ((weights.astype(np.float32), inputs, 8, "wrap"), {}, r"weights_int must hold integers, got dtype float32"),
        ((weights, inputs[0], 8, "wrap"), {}, r"inputs_int must be 2-D, got shape \(4,\)"),
        ((np.full((2, 4), 2**63, dtype=np.uint64), inputs, 8, "wrap"), {}, "weights_int has values above the int64 range"),
        ((weights, inputs, 8, "saturate"), {"order": np.zeros((0, 4), dtype=int)}, "order must hold at least one ordering"),
        ((weights, inputs, 8, "saturate"), {"order": np.arange(4.0)},
         r"order must be an integer permutation of range\(4\) or an \(R, 4\) array of them; got dtype float64, shape \(4,\)"),
        ((weights, inputs, 8, "saturate"), {"order": np.zeros((1, 1, 4), dtype=int)},
         r"order must be an integer permutation of range\(4\) or an \(R, 4\) array of them; got dtype int64, shape \(1, 1, 4\)"),
        ((weights, inputs, 8, "saturate"), {"num_threads": True}, "num_threads must be an integer >= 1, got True"),
        ((weights, inputs, 8, "saturate"), {"num_threads": 1.0}, r"num_threads must be an integer >= 1, got 1.0"),
        ((weights, inputs, 1, "wrap"), {}, "acc_bits must be an integer >= 2, got 1"),
        ((weights, inputs, 8, "Wrap"), {}, "mode must be one of exact, wrap, saturate, clip_final; got 'Wrap'"),
        ((weights, np.ones((3, 5), dtype=np.int64), 8, "wrap"), {},
         r"weights_int is \(C, K\) = \(2, 4\) and inputs_int is \(B, K\) = \(3, 5\): K differs"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(FlowError) as err:
            simulate_accumulation(*args, **kwargs)
        assert re.fullmatch(message, str(err.value)), (str(err.value), message)


def test_the_int64_limit_is_where_the_sum_of_products_reaches_2_to_62():
    # |w| * |x| * K == 2^62 exactly is refused; one less in |x| passes and is simulated exactly
    weights = np.full((1, 4), 2**30, dtype=np.int64)
    at_limit = np.full((1, 4), 2**30, dtype=np.int64)
    with pytest.raises(FlowError, match=r"^\|weights\| \* \|inputs\| \* K = 4611686018427387904 reaches 2\^62"):
        simulate_accumulation(weights, at_limit, 62, "exact")
    below = simulate_accumulation(weights, at_limit - 1, 62, "exact")
    assert int(below.acc[0, 0]) == 4 * 2**30 * (2**30 - 1)
    # past 2^53 the sums run in int64: a float64 product would round this odd total
    odd = simulate_accumulation(np.array([[2**40 + 1, 1]]), np.array([[2**12 + 1, 1]]), 63, "exact")
    assert int(odd.acc[0, 0]) == (2**40 + 1) * (2**12 + 1) + 1


def test_boolean_and_unsigned_inputs_are_read_as_integers():
    rng = np.random.default_rng(5)
    weights = rng.integers(-8, 8, size=(3, 6))
    bits = rng.integers(0, 2, size=(4, 6))
    as_bool = simulate_accumulation(weights, bits.astype(bool), 4, "saturate", num_threads=1)
    as_int = simulate_accumulation(weights, bits, 4, "saturate", num_threads=1)
    as_uint = simulate_accumulation(weights.astype(np.int8), bits.astype(np.uint64), 4, "saturate", num_threads=1)
    for result in (as_bool, as_uint):
        np.testing.assert_array_equal(result.acc, as_int.acc)
        np.testing.assert_array_equal(result.overflowed, as_int.overflowed)
    assert as_int.acc.dtype == np.int64 and as_int.overflowed.any()


def test_max_abs_and_thread_count():
    assert overflow._max_abs(np.zeros((0, 3), dtype=np.int64)) == 0
    assert overflow._max_abs(np.array([[-5, 3]])) == 5 and overflow._max_abs(np.array([[-3, 5]])) == 5
    assert overflow._max_abs(np.array([np.iinfo(np.int64).min])) == 2**63  # no int64 overflow
    assert overflow._thread_count(3) == 3 and overflow._thread_count(np.int64(2)) == 2
    assert overflow._thread_count(None) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("state_elements", "args", "expected"), [
    # one ordering, one thread: one task over all rows
    (2**17, (10, 4, 1, 1), [([0], (0, 10))]),
    # fewer orderings than threads: the rows are sliced so that every thread has work
    (2**17, (10, 4, 1, 4), [([0], (0, 2)), ([0], (2, 5)), ([0], (5, 8)), ([0], (8, 10))]),
    (2**17, (3, 4, 1, 8), [([0], (0, 1)), ([0], (1, 2)), ([0], (2, 3))]),
    # many orderings of a small state: grouped, ceil(orderings / threads) per group
    (2**17, (10, 4, 8, 2), [([0, 1, 2, 3], (0, 10)), ([4, 5, 6, 7], (0, 10))]),
    (2**17, (10, 4, 7, 2), [([0, 1, 2, 3], (0, 10)), ([4, 5, 6], (0, 10))]),
    # a group never holds more than state_elements // (rows * outputs) orderings
    (24, (3, 4, 10, 1), [([0, 1], (0, 3)), ([2, 3], (0, 3)), ([4, 5], (0, 3)), ([6, 7], (0, 3)), ([8, 9], (0, 3))]),
    # a state larger than state_elements is sliced by rows, one ordering per task
    (12, (10, 4, 2, 2), [([o], rows) for o in (0, 1) for rows in ((0, 2), (2, 5), (5, 8), (8, 10))]),
    (12, (2, 4, 1, 4), [([0], (0, 1)), ([0], (1, 2))]),
    # one ordering per group where only one fits; the division rounds down
    (12, (3, 4, 3, 1), [([0], (0, 3)), ([1], (0, 3)), ([2], (0, 3))]),
    (30, (3, 4, 10, 1), [([0, 1], (0, 3)), ([2, 3], (0, 3)), ([4, 5], (0, 3)), ([6, 7], (0, 3)), ([8, 9], (0, 3))]),
    (3, (1, 1, 4, 1), [([0, 1], (0, 1)), ([2, 3], (0, 1))]),
    # more slices than rows: no empty slice
    (4, (2, 10, 1, 1), [([0], (0, 1)), ([0], (1, 2))]),
])
def test_task_plan(monkeypatch, state_elements, args, expected):
    monkeypatch.setattr(overflow, "_STATE_ELEMENTS", state_elements)
    plan = overflow._plan_tasks(*args)
    assert [(group.tolist(), (rows.start, rows.stop)) for group, rows in plan] == expected


@pytest.mark.parametrize("seed", range(6))
def test_task_plan_covers_every_ordering_and_row_once(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(overflow, "_STATE_ELEMENTS", int(rng.integers(4, 64)))
    n_rows, n_outputs, n_orders, threads = (int(v) for v in rng.integers(1, 12, size=4))
    covered = np.zeros((n_orders, n_rows), dtype=int)
    for group, rows in overflow._plan_tasks(n_rows, n_outputs, n_orders, threads):
        assert rows.stop > rows.start
        covered[np.ix_(group, np.arange(rows.start, rows.stop))] += 1
    assert (covered == 1).all()


def test_no_wrap_or_clip_at_63_and_64_bits():
    # the sums stay below 2^62, so a 63- or 64-bit register holds them; 2^63 and 2^64 are outside int64
    weights, inputs = np.array([[2**39, -(2**38)]]), np.array([[2**20, 2**21]])
    for bits in (63, 64):
        for mode in ("wrap", "clip_final", "saturate"):
            assert simulate_accumulation(weights, inputs, bits, mode).acc.tolist() == [[0]], (bits, mode)


def test_sums_beyond_float64_precision_are_exact():
    # |w| * |x| * K >= 2^53: the product sums run in int64; float64 would round this odd total
    weights, inputs = np.array([[2**52 + 1, 2]]), np.array([[3, 1]])
    assert int(simulate_accumulation(weights, inputs, 62, "exact").acc[0, 0]) == 3 * (2**52 + 1) + 2


def test_an_unsigned_64_bit_value_at_the_int64_maximum_is_accepted():
    top = np.iinfo(np.int64).max
    read = overflow._as_int_matrix("weights_int", np.array([[top, 1]], dtype=np.uint64))
    assert read.dtype == np.int64 and read.tolist() == [[top, 1]]


def test_overflow_flags_are_booleans_on_every_path():
    weights, inputs = np.array([[100, 100, -100]]), np.array([[1, 1, 1], [0, 0, 1]])
    for num_threads in (1, 2):
        result = simulate_accumulation(weights, inputs, 8, "saturate", order=[[0, 1, 2], [2, 0, 1]], num_threads=num_threads)
        assert result.overflowed.dtype == np.bool_ and result.overflowed.tolist() == [[[True], [False]], [[False], [False]]]
    assert simulate_accumulation(weights, inputs, 16, "wrap").overflowed.dtype == np.bool_


def test_thread_count_follows_the_usable_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert overflow._thread_count(None) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert overflow._thread_count(None) == 3
    monkeypatch.delattr(os, "sched_getaffinity")  # platforms without it: the CPU count, 1 when unknown
    assert overflow._thread_count(None) == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert overflow._thread_count(None) == 1


def test_logits_metrics_errors_are_whole():
    acc = np.zeros((2, 3), dtype=np.int64)
    for args, message in (((np.zeros(3), np.zeros(3), 1.0, [0]), "acc must be (..., B, C), got shape (3,)"),
                          ((acc, np.zeros((4, 3)), 1.0, [0, 1]),
                           "acc (2, 3), acc_ref (4, 3) and scale () do not broadcast"),
                          ((acc, np.zeros((3, 2, 3)), 1.0, [0, 1]),
                           "acc_ref (3, 2, 3) and scale () must broadcast to acc (2, 3)")):
        with pytest.raises(FlowError) as err:
            logits_metrics(*args)
        assert str(err.value) == message
