"""Weight sharing by 1-D k-means, and what the shared weights cost to store.

Deep Compression (Han, Mao, Dally, ICLR 2016), Section 3: the ``n`` weights of a layer are
clustered into ``k`` groups minimising ``Σ_i Σ_{w ∈ c_i} |w − c_i|²``; every weight is
replaced by its centroid, so the layer needs only a ``log2 k``-bit index per weight and a
codebook of ``k`` values. Centroids start *linearly* spaced between the smallest and the
largest weight (the paper's best initialisation: it keeps the few large weights, which
matter most, represented). Lloyd's steps follow, on the sorted values: in 1-D the clusters
are intervals split at the midpoints between neighbouring centroids, so each step is a
``searchsorted`` and a difference of prefix sums; an empty cluster keeps its centroid. It
stops when a step leaves every cluster as it was (or after ``max_iter`` steps).

A layer that already has no more distinct non-zero values than centroids keeps them
exactly (zero error, k-means' optimum), so sharing twice changes nothing. Zeros (pruned
weights) are not clustered and stay exactly zero. At ``b`` bits:

* a layer without zeros gets ``k = 2**b`` centroids;
* a layer with zeros gets ``k = 2**b − 1`` centroids and codebook entry 0 is the value 0
  (EIE's convention, :mod:`hwcc.formats.sparse`), so a ``b``-bit index covers every weight
  including the padding entries of the sparse format.

Either way the layer holds at most ``2**b`` distinct values.

Two options fit the shared values to a chip's decoder (EIE, Han et al., ISCA 2016,
Section III-B: a 4-bit index into 16 shared values, index 0 being zero, each decoded to
16-bit fixed point):

* ``zero_slot``: codebook entry 0 is the value 0 in every layer, dense ones included, so
  a dense layer too gets ``k = 2**b − 1`` centroids. Only the non-zero weights are
  clustered: zeros stay zero and a non-zero weight goes to the nearest non-zero centroid
  (it is never moved to 0 for being close to it: making weights zero is pruning's
  business, and it changes the sparsity a cost model prices);
* ``codebook_bits = B > 0``: the centroids are rounded to ``B``-bit signed fixed point,
  ``c_q = q·2^−f`` with integer ``q ∈ [−2^(B−1), 2^(B−1) − 1]`` and one power-of-two scale
  ``2^−f`` per layer, ``f`` the most fraction bits that keep the largest ``|c|`` in range
  (:func:`hwcc.formats.fixed_point.frac_bits`; ``f`` may be negative or exceed ``B − 1``).
  Centroids that round to the same ``c_q`` merge; every weight then goes to the nearest
  ``c_q`` (rounding is monotone, so that is the nearest k-means cluster up to the
  boundaries moving by less than a step), and the layer holds exactly these values. A
  centroid within half a step of zero rounds to ``c_q = 0``: its weights become exactly
  zero (that is what the decoder would give them) and take index 0. The ``f`` reported is
  the most fraction bits in which the final values fit, a function of those values alone,
  so sharing twice gives the same ``f``. ``q`` has at most ``B ≤ 24`` bits, so ``c_q`` is
  exact in float32 (checked: a weight dtype that cannot hold it is an error).

Storage, in bits, of a layer of ``n`` weights with a ``rows × cols`` matrix view:

* dense format: ``n·b`` index bits;
* sparse format (layers with zeros; Deep Compression's relative-indexed CSC, which is
  EIE's format on one PE): ``entries·(b + 4) + (cols + 1)·16``, entries counting the
  non-zeros and one padding entry per 16 zeros of a gap longer than 15;
* the codebook, ``len(codebook)·32`` (float32 values), or ``len(codebook)·B`` with
  ``codebook_bits = B``, in both.

A layer with zeros is stored in whichever format is smaller. Huffman coding (see
:mod:`hwcc.formats.huffman`) replaces the fixed-length index stream (dense), or the
index and relative-index streams (sparse), by their Huffman-coded sizes; pointers and
the codebook are not Huffman-coded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.formats import fixed_point as _fixed_point
from hwcc.formats import sparse as eie_format
from hwcc.formats.huffman import stream_bits

__all__ = [
    "SharedWeights",
    "assign",
    "centroids_for",
    "eie_codebook",
    "kmeans_1d",
    "linear_init",
    "share_weights",
    "storage",
]

_Z_BITS, _POINTER_BITS, _CODEBOOK_BITS = 4, 16, 32


def linear_init(values: np.ndarray, k: int) -> np.ndarray:
    """``k`` centroids evenly spaced from ``min(values)`` to ``max(values)`` (float64)."""
    v = np.asarray(values, dtype=np.float64)
    return np.linspace(v.min(), v.max(), k)


def assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted ``centroids`` for each value (ties go low)."""
    c = np.asarray(centroids, dtype=np.float64)
    return np.searchsorted((c[1:] + c[:-1]) / 2, np.asarray(values, dtype=np.float64), side="left")


def kmeans_1d(
    values: np.ndarray, k: int, max_iter: int = 300, *, presorted: bool = False
) -> tuple[np.ndarray, int]:
    """Lloyd's k-means on scalars from a linear initialisation.

    Args:
        values: the data (any shape, at least one value).
        k: number of centroids.
        max_iter: most Lloyd steps.
        presorted: ``values`` is already a sorted float64 vector.

    Returns:
        ``(centroids, steps)``: the sorted float64 centroids and the steps taken.
    """
    x = values if presorted else np.sort(np.asarray(values, dtype=np.float64).ravel())
    prefix = np.concatenate([[0.0], np.cumsum(x)])
    c = linear_init(x, k)
    cut = None
    for step in range(1, max_iter + 1):
        # Values up to a midpoint go to the lower centroid, as ``assign`` does.
        new_cut = np.concatenate(
            [[0], np.searchsorted(x, (c[1:] + c[:-1]) / 2, side="right"), [x.size]]
        )
        if cut is not None and np.array_equal(new_cut, cut):
            return c, step - 1  # the clusters no longer change: neither will the centroids
        cut = new_cut
        counts = np.diff(cut)
        c = np.sort(
            np.where(counts > 0, (prefix[cut[1:]] - prefix[cut[:-1]]) / np.maximum(counts, 1), c)
        )
    return c, max_iter


def centroids_for(values: np.ndarray, k: int, max_iter: int = 300) -> tuple[np.ndarray, int]:
    """:func:`kmeans_1d`, except that at most ``k`` distinct values are kept exactly (zero
    error: k-means' optimum), so sharing already shared weights changes nothing."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    fresh = np.concatenate([[True], x[1:] != x[:-1]])
    if np.count_nonzero(fresh) <= k:
        return x[fresh], 0
    return kmeans_1d(x, k, max_iter, presorted=True)


def eie_codebook(w: np.ndarray, index_bits: int) -> np.ndarray:
    """An EIE codebook for ``w``: ``[0]`` and ``2**index_bits − 1`` shared non-zero values."""
    nz = w[w != 0]
    if nz.size == 0:
        return np.zeros(2)
    return np.concatenate([[0.0], centroids_for(nz, (1 << index_bits) - 1)[0]])


@dataclass(frozen=True)
class SharedWeights:
    """A layer's weights after sharing.

    Attributes:
        values: the weights replaced by their shared values (the input's dtype and shape).
        index: the codebook index of every weight (0 for zeros when ``zero_slot``).
        codebook: the distinct shared values in the weights' dtype, sorted after the zero
            slot; ``codebook[0] == 0`` if ``zero_slot``.
        sparse: ``values`` has zeros (the layer's own, which stay zero, or weights whose
            fixed-point centroid rounded to zero).
        steps: Lloyd steps taken.
        zero_slot: codebook entry 0 is zero (a layer with zeros, or ``zero_slot`` asked).
        frac_bits: with ``codebook_bits``, the fraction bits ``f`` of the fixed-point
            values (``values·2^f`` are integers in range); ``None`` for float32 values.
    """

    values: np.ndarray
    index: np.ndarray
    codebook: np.ndarray
    sparse: bool
    steps: int
    zero_slot: bool = False
    frac_bits: int | None = None


def share_weights(
    w: np.ndarray,
    bits: int,
    max_iter: int = 300,
    *,
    zero_slot: bool = False,
    codebook_bits: int = 0,
) -> SharedWeights:
    """Cluster the non-zero weights of ``w`` for a ``bits``-bit index (module docstring).

    Args:
        w: the layer's weights.
        bits: index width ``b``.
        max_iter: most Lloyd steps.
        zero_slot: keep codebook entry 0 for zero even if ``w`` has no zeros.
        codebook_bits: ``B > 0`` rounds the shared values to ``B``-bit fixed point with a
            per-layer power-of-two scale; 0 keeps the centroids as ``w``'s dtype holds them.
    """
    nonzero = w != 0
    slot = zero_slot or not bool(nonzero.all())
    nz = w[nonzero]
    if nz.size == 0:  # all zero: nothing to cluster
        f = _fixed_point.frac_bits(0.0, 0.0, codebook_bits) if codebook_bits else None
        return SharedWeights(
            w.copy(), np.zeros(w.shape, dtype=np.int64), np.zeros(1, w.dtype), True, 0, True, f
        )
    centroids, steps = centroids_for(nz, (1 << bits) - (1 if slot else 0), max_iter)
    f = None
    if codebook_bits:
        f = _fixed_point.frac_bits(centroids.min(), centroids.max(), codebook_bits)
        centroids = np.unique(_fixed_point.to_fixed(centroids, f, codebook_bits))
        f = _fixed_point.frac_bits(centroids.min(), centroids.max(), codebook_bits)
    book = centroids.astype(w.dtype)
    if codebook_bits and not np.array_equal(book.astype(np.float64), centroids):
        raise HwccError(
            f"k-means: {codebook_bits}-bit fixed-point values with {f} fraction bits do not fit "
            f"{w.dtype} weights exactly",
            "use fewer codebook_bits, or float32 weights",
        )
    values = np.zeros_like(w)
    values[nonzero] = book[assign(nz, centroids)]
    slot = slot or bool((book == 0).any())
    entries = np.unique(book[book != 0])
    index = np.zeros(w.shape, dtype=np.int64)
    kept = values != 0
    index[kept] = np.searchsorted(entries, values[kept]) + (1 if slot else 0)
    codebook = np.concatenate([np.zeros(1, w.dtype), entries]) if slot else entries
    return SharedWeights(values, index, codebook, not bool(kept.all()), steps, slot, f)


def storage(
    shared: SharedWeights, view: np.ndarray, bits: int, codebook_bits: int = 0
) -> dict[str, Any]:
    """Bits to store a shared layer, fixed-length and Huffman-coded (module docstring).

    Args:
        shared: the layer after :func:`share_weights`.
        view: ``shared.values`` as the layer's ``rows × cols`` matrix.
        bits: index width ``b``.
        codebook_bits: bits of a codebook entry; 0 for float32 (32).

    Returns:
        ``format`` (``dense`` or ``sparse``), ``index_bits`` / ``index_huffman_bits`` (the
        coded streams, fixed-length and Huffman), ``overhead_bits`` (pointers and
        codebook), ``fixed_bits`` and ``huffman_bits`` (totals), ``huffman_saving`` (of
        the coded streams) and, for the sparse format, ``entries`` and ``padding``.
    """
    book_bits = len(shared.codebook) * (codebook_bits or _CODEBOOK_BITS)
    dense = {
        "format": "dense",
        "index_bits": shared.index.size * bits,
        "index_huffman_bits": stream_bits(shared.index),
        "overhead_bits": book_bits,
    }
    best = dense
    if shared.sparse:
        # encode wants two entries at least; an all-zero layer (codebook [0]) uses none
        book = shared.codebook.astype(np.float64) if len(shared.codebook) > 1 else np.zeros(2)
        m = eie_format.encode(
            view, 1, index_bits=bits, codebook=book, z_bits=_Z_BITS, pointer_bits=_POINTER_BITS
        )
        v, z = m.v[0], m.z[0]
        sparse = {
            "format": "sparse",
            "index_bits": len(v) * (bits + _Z_BITS),
            "index_huffman_bits": stream_bits(v) + stream_bits(z),
            "overhead_bits": m.pointer_bits_per_pe + book_bits,
            "entries": len(v),
            "padding": int(m.padding_per_pe[0]),
        }
        if (
            sparse["index_bits"] + sparse["overhead_bits"]
            < dense["index_bits"] + dense["overhead_bits"]
        ):
            best = sparse
    fixed, huff = best["index_bits"], best["index_huffman_bits"]
    return {
        **best,
        "fixed_bits": fixed + best["overhead_bits"],
        "huffman_bits": huff + best["overhead_bits"],
        "huffman_saving": 1.0 - huff / fixed if fixed else 0.0,
    }
