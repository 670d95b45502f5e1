"""The matrices of Winograd's minimal filtering F(2, 3) (Lavin & Gray 2016) and what the
``winograd`` pass derives from them: the offline filter transform, the tiling, and the
additions that apply ``Bᵀ`` and ``Aᵀ`` (both have entries 0 and ±1 only).

For a 1-D input tile ``d`` of 4 values and a filter ``g`` of 3, the 2 outputs of the
correlation ``y_i = Σ_k d_{i+k}·g_k`` are ``y = Aᵀ[(G·g) ⊙ (Bᵀ·d)]``: 4 multiplies instead
of 6. Nested, ``Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`` gives a 2×2 output tile from a 4×4 input
tile with 16 multiplies instead of 36.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["AT", "BT", "G", "MULTS_PER_OUTPUT", "additions", "filter_transform", "tiles"]

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

MULTS_PER_OUTPUT = 16 / 4
"""Multiplies per output and input channel: 16 per 2×2 tile, against 9 for a direct 3×3."""


def filter_transform(w: np.ndarray) -> np.ndarray:
    """``U = G g Gᵀ`` for every filter, as ``[16, M, C]`` (position ``ξ·4 + ν`` first).

    Args:
        w: Conv weights ``[M, C, 3, 3]``.

    Returns:
        float64 ``[16, M, C]``: ``U[4ξ+ν, m, c] = (G·w[m, c]·Gᵀ)[ξ, ν]``.
    """
    u = np.einsum("ik,mckl,jl->ijmc", G, w.astype(np.float64), G)
    return u.reshape(16, *w.shape[:2])


def tiles(out_size: int) -> int:
    """Tiles of 2 outputs covering ``out_size`` outputs along one axis."""
    return math.ceil(out_size / 2)


def additions(matrix: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Each row of a 0/±1 matrix as (indices added, indices subtracted).

    The graph applies ``Bᵀ`` and ``Aᵀ`` with Add/Sub nodes built from this, so the matrices
    above are the single source of the transforms.

    Raises:
        ValueError: an entry is not 0, 1 or -1.
    """
    if not np.isin(matrix, (-1, 0, 1)).all():
        raise ValueError("the transform has entries other than 0 and ±1")
    return [
        ([j for j, c in enumerate(row) if c == 1], [j for j, c in enumerate(row) if c == -1])
        for row in matrix
    ]
