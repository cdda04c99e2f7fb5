"""Comparing two evaluations of the same quantized network.

Two correct evaluations of one integer network (torch and QONNX, QONNX and FINN) agree exactly but for
one thing: float32 sums in a different order can put a value that lies on a rounding tie of a quantizer
on the other side of it, and that quantizer's output then differs by one step. Such flips are rare and
machine-dependent (thread count, SIMD width). :func:`compare_quantized` therefore compares in units of
the output quantizer's step: every element must agree to within one step, and at most
:data:`TIE_FLIP_FRACTION` of the elements (rounded down, but at least one: a small output, such as 8 samples
of 10 logits, can meet one tie) may differ by that one step. A wrong export or graph rewrite changes many
elements or changes them by more than a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIE_FLIP_FRACTION = 1e-3
# float rounding of a step-scaled value: anything closer than this to a whole step is that step
STEP_TOLERANCE = 1e-3
# unquantized (float) outputs: relative tolerance of float32 evaluations of the same arithmetic
FLOAT_RTOL = 1e-4


@dataclass
class OutputComparison:
    """``max_abs_diff`` in output units; ``mismatches`` elements differ at all, ``one_step_diffs`` of them
    by exactly one step (allowed up to ``allowed_one_step_diffs``); ``step`` is the output quantizer's
    step (None: float output)."""

    max_abs_diff: float
    elements: int
    mismatches: int
    one_step_diffs: int
    allowed_one_step_diffs: int
    step: float | None
    passed: bool


def compare_quantized(produced: np.ndarray, expected: np.ndarray, step: float | None) -> OutputComparison:
    """Compare two evaluations of a network whose output is quantized with scale ``step`` (see module doc).

    With ``step=None`` (a float output) the outputs must agree to :data:`FLOAT_RTOL` of their magnitude.
    """
    produced = np.asarray(produced, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if produced.shape != expected.shape:
        raise ValueError(f"shapes differ: {produced.shape} vs {expected.shape}")
    diff = np.abs(produced - expected)
    elements = int(diff.size)
    max_abs_diff = float(diff.max()) if elements else 0.0
    if step is None:
        scale = max(float(np.abs(expected).max()) if elements else 0.0, 1.0)
        passed = max_abs_diff <= FLOAT_RTOL * scale
        mismatches = int(np.count_nonzero(diff > FLOAT_RTOL * scale))
        return OutputComparison(max_abs_diff, elements, mismatches, 0, 0, None, passed)
    in_steps = diff / step
    whole = np.round(in_steps)
    off_grid = np.abs(in_steps - whole) > STEP_TOLERANCE
    one_step = int(np.count_nonzero((whole == 1) & ~off_grid))
    mismatches = int(np.count_nonzero((whole != 0) | off_grid))
    allowed = max(1, int(TIE_FLIP_FRACTION * elements))
    passed = not off_grid.any() and whole.max(initial=0) <= 1 and one_step <= allowed
    return OutputComparison(max_abs_diff, elements, mismatches, one_step, allowed, float(step), bool(passed))
