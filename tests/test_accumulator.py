import hashlib
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


@pytest.mark.parametrize("bits,signed,expected", [(1, False, (0, 1)), (4, False, (0, 15)), (8, False, (0, 255)),
                                                   (1, True, (-1, 0)), (4, True, (-8, 7)), (8, True, (-128, 127))])
def test_input_ranges_are_the_datatypes(bits, signed, expected):
    assert acc.input_range(bits, signed) == expected


@pytest.mark.parametrize("k,weight_bits,input_bits", [(0, 8, 8), (784, 0, 1), (784, 8, 0)])
def test_the_datatype_bound_refuses_each_empty_dimension(k, weight_bits, input_bits):
    with pytest.raises(FlowError, match=f"must be >= 1, got {k}, {weight_bits}, {input_bits}"):
        acc.datatype_bound_bits(k, weight_bits, input_bits, False)


def test_the_datatype_bound_is_exact_where_alpha_is_a_whole_number():
    # K=1, N=1 unsigned, M=2: alpha = 0 + 1 + 2 - 1 = 2, phi = log2(1 + 1/4), P >= 3.32: 4 bits
    assert acc.datatype_bound_bits(1, 2, 1, False) == 4
    # K=2, N=2 signed, M=2: alpha = 1 + 2 + 2 - 1 - 1 = 3, phi = log2(1 + 1/8): P >= 4.17: 5 bits
    assert acc.datatype_bound_bits(2, 2, 2, True) == 5
    # K=1, N=1, M=1 signed: alpha = 0, phi = 1: P >= 2 exactly (no rounding up past a whole number)
    assert acc.datatype_bound_bits(1, 1, 1, True) == 2


def test_l1_bound_dispatches_by_quantizer():
    assert acc.l1_bound("a2q", 16, 4, False) == acc.a2q_l1_bound(16, 4, False) == 32767 / 16
    assert acc.l1_bound("a2q+", 16, 4, False) == acc.a2q_plus_l1_bound(16, 4) == 65534 / 15
    assert acc.l1_bound("baseline", 16, 4, False) is None


def test_norms_and_ranges_of_narrow_integer_arrays_do_not_wrap():
    # int8 arrays: abs(-128) wraps in int8; the arithmetic must widen first
    weights = np.array([[-128, -128, 127]], dtype=np.int8)
    assert acc.weight_l1_norms(weights).tolist() == [383]
    acc_min, acc_max = acc.exact_acc_range(weights, 0, 255)
    assert (acc_min.tolist(), acc_max.tolist()) == ([-128 * 2 * 255], [127 * 255])
    uint = np.array([[200, 200]], dtype=np.uint8)
    assert acc.exact_acc_range(uint, -1, 1)[1].tolist() == [400]


def test_zero_weights_add_nothing_to_either_side():
    acc_min, acc_max = acc.exact_acc_range(np.array([[0, 3, -2, 0]]), -8, 7)
    assert (acc_min.tolist(), acc_max.tolist()) == ([3 * -8 + -2 * 7], [3 * 7 + -2 * -8])


def test_finn_names_the_smallest_accumulator_type():
    assert acc.finn_acc_datatype_name(0, 255) == "UINT8" and acc.finn_acc_datatype_name(0, 256) == "UINT9"
    assert acc.finn_acc_datatype_name(0, 3) == "UINT2" and acc.finn_acc_datatype_name(-1, 0) == "INT1"
    assert acc.finn_acc_datatype_name(-129, 127) == "INT9" and acc.finn_acc_datatype_name(-128, 127) == "INT8"


def test_the_fingerprint_follows_k_and_the_channel_norms_only():
    weights = np.array([[1, -2, 3], [0, 4, -4]])
    assert acc.weight_fingerprint(weights) == acc.weight_fingerprint(weights[:, ::-1])  # inputs permuted
    assert acc.weight_fingerprint(weights) == acc.weight_fingerprint(weights.reshape(2, 3, 1, 1))
    assert acc.weight_fingerprint(weights) != acc.weight_fingerprint(weights[::-1])  # channels swapped
    assert acc.weight_fingerprint(weights) != acc.weight_fingerprint(np.array([[1, -2, 4], [0, 4, -4]]))
    assert acc.weight_fingerprint(weights) != acc.weight_fingerprint(np.pad(weights, ((0, 0), (0, 1))))  # K differs
    # the key format is what sidecars on disk hold: K, then the channel norms
    assert acc.weight_fingerprint(weights) == hashlib.sha1(b"3:6,8").hexdigest()[:16]


@pytest.mark.parametrize("weight_bits,input_bits,signed,lowest", [(8, 1, False, 8), (4, 4, False, 8), (4, 4, True, 7),
                                                                  (8, 8, False, 16), (2, 1, False, 2)])
def test_the_lowest_useful_p_holds_one_full_product(weight_bits, input_bits, signed, lowest):
    assert acc.min_useful_acc_bits(weight_bits, input_bits, signed) == lowest
    assert acc.check_acc_bits(lowest, weight_bits, input_bits, signed) == lowest
    kind = "signed" if signed else "unsigned"
    with pytest.raises(FlowError, match=f"P={lowest - 1} is out of range: with {weight_bits}-bit weights and "
                                        f"{input_bits}-bit {kind} inputs a single product needs {lowest} bits, "
                                        f"so valid P is {lowest}..32"):
        acc.check_acc_bits(lowest - 1, weight_bits, input_bits, signed)


@pytest.mark.parametrize("value", [33, True, 16.5, "16x", None])
def test_p_outside_the_range_or_not_a_whole_number_is_refused(value):
    with pytest.raises(FlowError) as err:
        acc.check_acc_bits(value, 4, 4)
    assert err.value.option == "acc_bits" and (repr(value) in str(err.value) or "P=33" in str(err.value))
    assert acc.check_acc_bits(32, 4, 4) == 32 and acc.check_acc_bits("16", 4, 4) == 16 and acc.check_acc_bits(16.0, 4, 4) == 16
    with pytest.raises(FlowError, match="4-bit unsigned inputs"):  # inputs are unsigned unless said otherwise
        acc.check_acc_bits(7, 4, 4)
