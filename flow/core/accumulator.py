"""Accumulator bit-width math for quantized dot products (A2Q, ICCV 2023; A2Q+).

All widths are in bits. ``k`` is the dot-product length, ``weight_bits`` (M) and ``input_bits`` (N)
the integer widths of weights and inputs, ``input_signed`` whether the inputs are two's complement.

Three bounds, from loosest to tightest:

* :func:`datatype_bound_bits`: the paper's data-type bound, from widths alone;
* :func:`a2q_l1_bound` / :func:`a2q_plus_l1_bound`: the l1-norm budget per output channel that
  Brevitas enforces so that a P-bit accumulator cannot overflow;
* :func:`exact_acc_range` / :func:`exact_acc_bits`: from the actual integer weights and the input
  range. Because every input range here contains zero, each product ``q*x`` lies between zero and
  its extreme, so the extreme sums bound *every partial sum in every order of additions*.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from flow.core.errors import FlowError

MAX_ACC_BITS = 32


def input_range(input_bits: int, input_signed: bool) -> tuple[int, int]:
    """Integer range [min, max] of an ``input_bits``-bit input (two's complement if signed)."""
    if input_bits < 1:
        raise FlowError(f"input_bits must be >= 1, got {input_bits}")
    if input_signed:
        return -(2 ** (input_bits - 1)), 2 ** (input_bits - 1) - 1
    return 0, 2**input_bits - 1


def datatype_bound_bits(k: int, weight_bits: int, input_bits: int, input_signed: bool) -> int:
    """Smallest P with ``P >= alpha + phi(alpha) + 1`` (the paper's data-type bound).

    ``alpha = log2(K) + N + M - 1 - signed(x)`` and ``phi(a) = log2(1 + 2^-a)``.
    Example from the paper: K=784, N=1 (unsigned), M=8 gives 19 bits.
    """
    if k < 1 or weight_bits < 1 or input_bits < 1:
        raise FlowError(f"k, weight_bits and input_bits must be >= 1, got {k}, {weight_bits}, {input_bits}")
    alpha = math.log2(k) + input_bits + weight_bits - 1 - int(input_signed)
    phi = math.log2(1 + 2.0**-alpha)
    return math.ceil(alpha + phi + 1 - 1e-12)


def a2q_l1_bound(acc_bits: int, input_bits: int, input_signed: bool) -> float:
    """A2Q's l1-norm budget of one channel's integer weights: ``(2^(P-1)-1) * 2^(signed(x)-N)``."""
    return (2.0 ** (acc_bits - 1) - 1) * 2.0 ** (int(input_signed) - input_bits)


def a2q_plus_l1_bound(acc_bits: int, input_bits: int) -> float:
    """A2Q+'s l1-norm budget for zero-centred weights: ``(2^P - 2) / (2^N - 1)``."""
    return (2.0**acc_bits - 2) / (2.0**input_bits - 1)


def l1_bound(quantizer: str, acc_bits: int, input_bits: int, input_signed: bool) -> float | None:
    """The l1 budget that ``quantizer`` ("a2q", "a2q+") enforces; None for other quantizers."""
    if quantizer == "a2q":
        return a2q_l1_bound(acc_bits, input_bits, input_signed)
    if quantizer == "a2q+":
        return a2q_plus_l1_bound(acc_bits, input_bits)
    return None


def weight_l1_norms(weights_int: np.ndarray) -> np.ndarray:
    """Per-output-channel l1 norm of an integer weight matrix shaped (channels, k)."""
    return np.abs(np.asarray(weights_int, dtype=np.int64)).sum(axis=1)


def exact_acc_range(weights_int: np.ndarray, input_min: int, input_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel [min, max] of every partial sum of ``weights_int @ x``, any order of additions.

    ``weights_int`` is (channels, k); ``input_min <= 0 <= input_max`` is required (true for every
    integer datatype), which is what makes the bound order-independent.
    """
    if input_min > 0 or input_max < 0:
        raise FlowError(f"input range [{input_min}, {input_max}] must contain 0")
    w = np.asarray(weights_int, dtype=np.int64)
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, w, 0).sum(axis=1)
    acc_max = pos * input_max + neg * input_min
    acc_min = pos * input_min + neg * input_max
    return acc_min, acc_max


def signed_bits_for_range(acc_min: int, acc_max: int) -> int:
    """Smallest P such that a signed P-bit register holds every value in [acc_min, acc_max]."""
    magnitude = max(-int(acc_min), int(acc_max) + 1, 1)
    return int(math.ceil(math.log2(magnitude))) + 1


def exact_acc_bits(weights_int: np.ndarray, input_bits: int, input_signed: bool) -> int:
    """Smallest signed accumulator width that never overflows for these weights (whole layer)."""
    lo, hi = input_range(input_bits, input_signed)
    acc_min, acc_max = exact_acc_range(weights_int, lo, hi)
    return signed_bits_for_range(int(acc_min.min()), int(acc_max.max()))


def finn_acc_datatype_name(acc_min: int, acc_max: int) -> str:
    """FINN's naming of the smallest accumulator type for a range: UINTn if acc_min >= 0, else INTn."""
    if acc_min >= 0:
        return f"UINT{int(math.ceil(math.log2(int(acc_max) + 1)))}"
    return f"INT{signed_bits_for_range(acc_min, acc_max)}"


def weight_fingerprint(weights_int: np.ndarray) -> str:
    """Layout-independent key of an integer weight tensor: K and the per-channel l1 norms.

    ``weights_int`` is (channels, ...); the key survives FINN's transposes and im2col reordering
    (both keep the channels and permute the inputs of each channel).
    """
    w = np.asarray(weights_int).reshape(len(weights_int), -1)
    key = f"{w.shape[1]}:" + ",".join(str(int(v)) for v in weight_l1_norms(w))
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def min_useful_acc_bits(weight_bits: int, input_bits: int, input_signed: bool) -> int:
    """Smallest P that holds one product of a full-range (narrow) weight and input: below it a
    layer cannot keep even one weight at full magnitude, so A2Q would zero the layer."""
    w_max = 2 ** (weight_bits - 1) - 1
    x_min, x_max = input_range(input_bits, input_signed)
    return signed_bits_for_range(min(-w_max * x_max, w_max * x_min), max(w_max * x_max, -w_max * x_min))


def check_acc_bits(acc_bits, weight_bits: int, input_bits: int, input_signed: bool = False) -> int:
    """The one validation of a target accumulator width P, in bits; returns it as an int.

    Valid: ``min_useful_acc_bits(weight_bits, input_bits, input_signed) <= P <= MAX_ACC_BITS``.
    """
    if isinstance(acc_bits, bool):
        raise FlowError(f"P must be an integer number of bits, got {acc_bits!r}", option="acc_bits")
    try:
        value = int(acc_bits)
        if value != float(acc_bits):
            raise ValueError
    except (TypeError, ValueError):
        raise FlowError(f"P must be an integer number of bits, got {acc_bits!r}", option="acc_bits") from None
    lowest = min_useful_acc_bits(weight_bits, input_bits, input_signed)
    if not lowest <= value <= MAX_ACC_BITS:
        kind = "signed" if input_signed else "unsigned"
        raise FlowError(
            f"P={value} is out of range: with {weight_bits}-bit weights and {input_bits}-bit {kind} inputs a single "
            f"product needs {lowest} bits, so valid P is {lowest}..{MAX_ACC_BITS}",
            option="acc_bits",
        )
    return value
