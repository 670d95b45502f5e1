"""16-bit dynamic fixed point, per layer (Qiu et al., FPGA 2016; the arithmetic of Eyeriss
and EIE).

A ``B``-bit two's-complement number with ``f`` fraction bits, ``Q(B−1−f).f``, holds the
values ``q·2^−f`` for integers ``q`` in ``[−2^(B−1), 2^(B−1) − 1]``; ``f`` may be negative
(a step above 1) or exceed ``B − 1`` (all fraction). The radix point is chosen per layer
from the data's range so that nothing saturates: ``f`` is the largest integer with

    round(max·2^f) ≤ 2^(B−1) − 1   and   round(min·2^f) ≥ −2^(B−1),

which is ``f = B − 1 − ceil(log2 max|x|)`` up to one step at the edges. Values are then
rounded to the nearest step (half to even) and, as a safeguard, clipped:

    x_q = clip(round(x·2^f), −2^(B−1), 2^(B−1) − 1) · 2^−f.

``x_q`` is exact in float32 (an integer of at most 16 bits times a power of two), so the
model stays float32 while holding only 16-bit fixed-point values.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TOTAL_BITS", "frac_bits", "to_fixed"]

TOTAL_BITS = 16


def frac_bits(lo: float, hi: float, total_bits: int = TOTAL_BITS) -> int:
    """The most fraction bits with which ``[lo, hi]`` fits ``total_bits`` signed bits.

    Args:
        lo: the smallest value to represent.
        hi: the largest value to represent.
        total_bits: the word width ``B``.

    Returns:
        ``f``; ``total_bits − 1`` when the range is all zeros.
    """
    m = max(abs(float(lo)), abs(float(hi)))
    if m == 0.0:
        return total_bits - 1
    qmax, qmin = 2 ** (total_bits - 1) - 1, -(2 ** (total_bits - 1))
    f = total_bits - math.ceil(math.log2(m))  # one above the estimate; step down until it fits
    while np.round(float(hi) * 2.0**f) > qmax or np.round(float(lo) * 2.0**f) < qmin:
        f -= 1
    return f


def to_fixed(x: np.ndarray, f: int, total_bits: int = TOTAL_BITS) -> np.ndarray:
    """``x`` rounded to ``Q(total_bits−1−f).f``, in ``x``'s dtype (a new array)."""
    scale = 2.0**f
    q = np.clip(
        np.round(np.asarray(x, dtype=np.float64) * scale),
        -(2 ** (total_bits - 1)),
        2 ** (total_bits - 1) - 1,
    )
    return (q / scale).astype(np.asarray(x).dtype)
