import itertools

import numpy as np
import pytest

from flow.core import accumulator as acc
from flow.core.errors import FlowError


def test_paper_example_datatype_bound_is_19_bits():
    # K=784 binary (1-bit unsigned) inputs, 8-bit weights: the paper's linear classifier.
    assert acc.datatype_bound_bits(784, weight_bits=8, input_bits=1, input_signed=False) == 19


@pytest.mark.parametrize(
    "k,m,n,signed,expected",
    [(1, 8, 8, True, 16), (1, 8, 8, False, 17), (2, 4, 4, True, 9), (4608, 4, 4, False, 21), (9, 8, 8, False, 20)],
)
def test_datatype_bound_matches_worst_case_product_sum(k, m, n, signed, expected):
    assert acc.datatype_bound_bits(k, m, n, signed) == expected
    # The bound must hold the worst case: K products of the largest magnitudes.
    w_min = -(2 ** (m - 1))
    x_lo, x_hi = acc.input_range(n, signed)
    worst = k * max(abs(w_min * x_lo), abs(w_min * x_hi))
    assert acc.signed_bits_for_range(-worst, worst) <= expected


def test_a2q_l1_bounds_as_brevitas_enforces_them():
    assert acc.a2q_l1_bound(16, input_bits=1, input_signed=False) == (2**15 - 1) / 2
    assert acc.a2q_l1_bound(16, input_bits=4, input_signed=True) == (2**15 - 1) / 8
    assert acc.a2q_plus_l1_bound(16, input_bits=4) == (2**16 - 2) / 15
    assert acc.l1_bound("baseline", 16, 4, True) is None


def test_signed_bits_for_range():
    assert acc.signed_bits_for_range(-128, 127) == 8
    assert acc.signed_bits_for_range(-129, 0) == 9
    assert acc.signed_bits_for_range(0, 128) == 9
    assert acc.signed_bits_for_range(0, 0) == 1
    assert acc.finn_acc_datatype_name(0, 255) == "UINT8"
    assert acc.finn_acc_datatype_name(-1, 255) == "INT9"


def test_exact_range_bounds_every_partial_sum_in_every_order():
    rng = np.random.default_rng(1)
    weights = rng.integers(-7, 8, size=(3, 5))
    lo_x, hi_x = acc.input_range(3, True)
    acc_min, acc_max = acc.exact_acc_range(weights, lo_x, hi_x)
    for channel in range(3):
        seen_min, seen_max = 0, 0
        for x in itertools.product([lo_x, 0, hi_x], repeat=5):
            for order in itertools.permutations(range(5)):
                partial = np.cumsum(weights[channel, list(order)] * np.asarray(x)[list(order)])
                seen_min, seen_max = min(seen_min, partial.min()), max(seen_max, partial.max())
        # attained exactly by the extreme inputs, never exceeded by any partial sum
        assert (seen_min, seen_max) == (acc_min[channel], acc_max[channel])


def test_a2q_budget_implies_p_bits():
    rng = np.random.default_rng(2)
    for p, n, signed in [(12, 4, False), (16, 1, False), (14, 3, True)]:
        budget = acc.a2q_l1_bound(p, n, signed)
        weights = rng.integers(-127, 128, size=(4, 500))
        scale = budget / np.abs(weights).sum(axis=1, keepdims=True)
        weights = np.trunc(weights * scale).astype(np.int64)  # round-to-zero, as A2Q
        assert (np.abs(weights).sum(axis=1) <= budget).all()
        assert acc.exact_acc_bits(weights, n, signed) <= p


def test_bad_arguments():
    with pytest.raises(FlowError, match="input_bits"):
        acc.input_range(0, False)
    with pytest.raises(FlowError, match="contain 0"):
        acc.exact_acc_range(np.ones((1, 2)), 1, 3)
