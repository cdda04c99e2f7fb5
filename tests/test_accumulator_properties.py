"""Property-based tests (hypothesis) of the accumulator arithmetic, against brute force on random integer
weights, input types, inputs and orders of addition."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from flow.core import accumulator as acc

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def layers(draw, max_k=24, max_weight_bits=8):
    """(integer weights (channels, k), weight bits, input bits, input signed)."""
    weight_bits = draw(st.integers(2, max_weight_bits))
    top = 2 ** (weight_bits - 1) - 1
    channels = draw(st.integers(1, 4))
    k = draw(st.integers(1, max_k))
    weights = draw(arrays(np.int64, (channels, k), elements=st.integers(-top, top)))
    return weights, weight_bits, draw(st.integers(1, 8)), draw(st.booleans())


@SETTINGS
@given(layers(), st.data())
def test_no_partial_sum_leaves_the_exact_range_in_any_order(layer, data):
    weights, _, input_bits, signed = layer
    lo, hi = acc.input_range(input_bits, signed)
    acc_min, acc_max = acc.exact_acc_range(weights, lo, hi)
    x = data.draw(arrays(np.int64, weights.shape[1], elements=st.integers(lo, hi)))
    order = data.draw(st.permutations(range(weights.shape[1])))
    partial = np.cumsum((weights * x)[:, list(order)], axis=1)
    assert (partial >= acc_min[:, None]).all() and (partial <= acc_max[:, None]).all()
    # and a register of the exact width holds every one of them
    bits = acc.exact_acc_bits(weights, input_bits, signed)
    assert (partial >= -(2 ** (bits - 1))).all() and (partial <= 2 ** (bits - 1) - 1).all()


@SETTINGS
@given(layers())
def test_the_adversarial_inputs_reach_the_exact_range(layer):
    weights, _, input_bits, signed = layer
    lo, hi = acc.input_range(input_bits, signed)
    acc_min, acc_max = acc.exact_acc_range(weights, lo, hi)
    to_max = np.where(weights > 0, hi, lo)  # x = max where q > 0, min where q < 0
    to_min = np.where(weights > 0, lo, hi)
    assert np.array_equal((weights * to_max).sum(axis=1), acc_max)
    assert np.array_equal((weights * to_min).sum(axis=1), acc_min)
    # one bit less than the exact width cannot hold the extremes (unless the range is trivially small)
    bits = acc.exact_acc_bits(weights, input_bits, signed)
    if bits > 2:
        assert acc_min.min() < -(2 ** (bits - 2)) or acc_max.max() > 2 ** (bits - 2) - 1


@SETTINGS
@given(layers(max_k=64), st.integers(4, 20))
def test_a2q_budget_implies_the_guarantee(layer, acc_bits):
    """Weights inside A2Q's l1 budget for P never need more than P bits, whatever the data type bound says."""
    weights, _, input_bits, signed = layer
    budget = acc.a2q_l1_bound(acc_bits, input_bits, signed)
    norms = acc.weight_l1_norms(weights)
    scaled = weights.copy()
    for channel, norm in enumerate(norms):  # shrink each channel into the budget (round towards zero)
        if norm > budget:
            scaled[channel] = np.trunc(weights[channel] * (budget / norm)).astype(np.int64)
    assert (acc.weight_l1_norms(scaled) <= budget).all()
    if scaled.any():
        assert acc.exact_acc_bits(scaled, input_bits, signed) <= acc_bits


@SETTINGS
@given(layers(max_k=64), st.integers(4, 20))
def test_a2q_plus_budget_implies_the_guarantee_for_zero_centred_weights(layer, acc_bits):
    """Zero-centred weights (each channel's positive and negative parts equal) inside A2Q+'s budget fit P,
    with unsigned inputs (A2Q+'s setting)."""
    weights, _, input_bits, _ = layer
    centred = np.concatenate([weights, -weights], axis=1)  # sum zero per channel
    budget = acc.a2q_plus_l1_bound(acc_bits, input_bits)
    norms = acc.weight_l1_norms(centred)
    for channel, norm in enumerate(norms):
        if norm > budget:
            half = np.trunc(weights[channel] * (budget / norm)).astype(np.int64)
            centred[channel] = np.concatenate([half, -half])
    assert (acc.weight_l1_norms(centred) <= budget).all()
    if centred.any():
        assert acc.exact_acc_bits(centred, input_bits, False) <= acc_bits


@SETTINGS
@given(st.integers(1, 4096), st.integers(1, 8), st.integers(1, 8), st.booleans())
def test_the_datatype_bound_holds_for_the_worst_weights(k, weight_bits, input_bits, signed):
    """The paper's data-type bound is never below what the worst-case weights (all at the most negative
    value, or all at the maximum) need."""
    bound = acc.datatype_bound_bits(k, weight_bits, input_bits, signed)
    for value in (-(2 ** (weight_bits - 1)), 2 ** (weight_bits - 1) - 1):
        if value == 0:
            continue
        assert acc.exact_acc_bits(np.full((1, k), value), input_bits, signed) <= bound
