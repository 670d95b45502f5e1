"""The arithmetic of ``low_rank``: truncated SVD factors, rank choice, and knob parsing.

Kept apart from the pass so that the tests can check the factorisation on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from hwcc.errors import HwccError

__all__ = ["choose_rank", "factor", "param_counts", "parse_layers", "parse_ranks"]


def factor(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Best rank-``rank`` factors of a matrix, ``w ≈ a @ b``.

    ``w = U Σ Vᵀ``; ``a = U_r·sqrt(Σ_r)`` and ``b = sqrt(Σ_r)·V_rᵀ``. By Eckart–Young ``a @ b``
    is the closest rank-``rank`` matrix to ``w`` in the Frobenius and spectral norms.

    The singular vectors of the smaller side come from the symmetric eigenproblem of the
    smaller Gram matrix (``w wᵀ`` or ``wᵀ w``, float64), and the other factor is a product
    with ``w``: for ``out <= in``, ``a = U_r·s``, ``b = (U_rᵀ w)/s`` with ``s = sqrt(σ)``. So
    ``a @ b = U_r U_rᵀ w`` is an orthogonal projection of ``w`` whatever the accuracy of
    small ``σ``: at ``rank = min(w.shape)`` it equals ``w`` up to rounding. Directions with
    ``σ`` under ``sqrt(ε₆₄)·σ_max ≈ 1.5e-8·σ_max`` are resolved only roughly, far below
    float32 resolution. This is several times faster than a direct SVD of a large FC layer.

    Args:
        w: a 2-D array ``out × in``.
        rank: ``1 <= rank <= min(w.shape)``.

    Returns:
        ``(a, b)``: float64 arrays of shapes ``out × rank`` and ``rank × in``.
    """
    if w.ndim != 2 or not 1 <= rank <= min(w.shape):
        raise ValueError(f"rank {rank} of a {w.shape} matrix")
    w = w.astype(np.float64)
    tall = w.shape[0] > w.shape[1]
    side = w.T if tall else w  # out' × in' with out' <= in'
    values, vectors = np.linalg.eigh(side @ side.T)  # ascending
    u = vectors[:, ::-1][:, :rank]
    sigma = np.sqrt(np.clip(values[::-1][:rank], 0.0, None))
    # Any positive scale cancels in a @ b; a floor keeps zero directions finite.
    scale = np.sqrt(np.maximum(sigma, max(sigma[0], 1.0) * 1e-30))
    a, b = u * scale, (u.T @ side) / scale[:, None]
    return (b.T, a.T) if tall else (a, b)


def choose_rank(full: int, rank_ratio: float, explicit: int | None) -> int:
    """The rank to keep: ``explicit`` if given (capped at ``full``), else
    ``max(1, round(rank_ratio · full))`` with halves rounded up."""
    if explicit is not None:
        return min(explicit, full)
    return max(1, min(full, math.floor(rank_ratio * full + 0.5)))


def param_counts(out: int, inp: int, rank: int) -> tuple[int, int]:
    """Weights before (``out·in``) and after (``rank·(out + in)``) factorising."""
    return out * inp, rank * (out + inp)


def parse_layers(text: str) -> list[str]:
    """Node names from ``"a,b,c"`` (blank: none)."""
    return [s.strip() for s in text.split(",") if s.strip()]


def parse_ranks(text: str, given: Mapping[str, int] | None = None) -> dict[str, int]:
    """Per-layer ranks from ``"fc1=64,conv2=8"``, over those ``given`` in Python.

    Raises:
        HwccError: an entry is not ``NAME=POSITIVE_INT``.
    """
    ranks = dict(given or {})
    for item in parse_layers(text):
        name, sep, value = item.partition("=")
        try:
            rank = int(value)
        except ValueError:
            rank = 0
        if not sep or not name.strip() or rank < 1:
            raise HwccError(
                f"low_rank: bad entry {item!r} in ranks",
                "write ranks as NODE=RANK pairs, e.g. ranks=fc1=64,conv2=8 (ranks >= 1)",
            )
        ranks[name.strip()] = rank
    for name, rank in ranks.items():
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise HwccError(f"low_rank: the rank of {name!r} is {rank!r}", "ranks are ints >= 1")
    return ranks
