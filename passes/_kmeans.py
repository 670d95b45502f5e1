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
  (EIE's convention, :mod:`hwcc.eie_format`), so a ``b``-bit index covers every weight
  including the padding entries of the sparse format.

Either way the layer holds at most ``2**b`` distinct values.

Storage, in bits, of a layer of ``n`` weights with a ``rows × cols`` matrix view:

* dense format: ``n·b`` index bits;
* sparse format (layers with zeros; Deep Compression's relative-indexed CSC, which is
  EIE's format on one PE): ``entries·(b + 4) + (cols + 1)·16``, entries counting the
  non-zeros and one padding entry per 16 zeros of a gap longer than 15;
* the codebook, ``len(codebook)·32`` (float32 values), in both.

A layer with zeros is stored in whichever format is smaller. Huffman coding (see
:mod:`hwcc.passes._huffman`) replaces the fixed-length index stream (dense), or the
index and relative-index streams (sparse), by their Huffman-coded sizes; pointers and
the codebook are not Huffman-coded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc import eie_format
from hwcc.passes._huffman import stream_bits

__all__ = ["SharedWeights", "assign", "centroids_for", "eie_codebook", "kmeans_1d", "linear_init", "share_weights",
           "storage"]

_Z_BITS, _POINTER_BITS, _CODEBOOK_BITS = 4, 16, 32


def linear_init(values: np.ndarray, k: int) -> np.ndarray:
    """``k`` centroids evenly spaced from ``min(values)`` to ``max(values)`` (float64)."""
    v = np.asarray(values, dtype=np.float64)
    return np.linspace(v.min(), v.max(), k)


def assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted ``centroids`` for each value (ties go low)."""
    c = np.asarray(centroids, dtype=np.float64)
    return np.searchsorted((c[1:] + c[:-1]) / 2, np.asarray(values, dtype=np.float64), side="left")


def kmeans_1d(values: np.ndarray, k: int, max_iter: int = 300, *, presorted: bool = False) -> tuple[np.ndarray, int]:
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
        new_cut = np.concatenate([[0], np.searchsorted(x, (c[1:] + c[:-1]) / 2, side="right"), [x.size]])
        if cut is not None and np.array_equal(new_cut, cut):
            return c, step - 1  # the clusters no longer change: neither will the centroids
        cut = new_cut
        counts = np.diff(cut)
        c = np.sort(np.where(counts > 0, (prefix[cut[1:]] - prefix[cut[:-1]]) / np.maximum(counts, 1), c))
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
        values: the weights replaced by their centroids (the input's dtype and shape).
        index: the codebook index of every weight (0 for zeros when ``sparse``).
        codebook: the shared values in the weights' dtype; ``codebook[0] == 0`` if sparse.
        sparse: the layer had zeros, which stay zero.
        steps: Lloyd steps taken.
    """

    values: np.ndarray
    index: np.ndarray
    codebook: np.ndarray
    sparse: bool
    steps: int


def share_weights(w: np.ndarray, bits: int, max_iter: int = 300) -> SharedWeights:
    """Cluster the non-zero weights of ``w`` for a ``bits``-bit index (module docstring)."""
    nonzero = w != 0
    sparse = not bool(nonzero.all())
    k = (1 << bits) - (1 if sparse else 0)
    nz = w[nonzero]
    if nz.size == 0:  # all zero: nothing to cluster
        return SharedWeights(w.copy(), np.zeros(w.shape, dtype=np.int64), np.zeros(1, w.dtype), True, 0)
    centroids, steps = centroids_for(nz, k, max_iter)
    labels = assign(nz, centroids)
    book = centroids.astype(w.dtype)
    values = np.zeros_like(w)
    values[nonzero] = book[labels]
    index = np.zeros(w.shape, dtype=np.int64)
    index[nonzero] = labels + (1 if sparse else 0)
    codebook = np.concatenate([np.zeros(1, w.dtype), book]) if sparse else book
    return SharedWeights(values, index, codebook, sparse, steps)


def storage(shared: SharedWeights, view: np.ndarray, bits: int) -> dict[str, Any]:
    """Bits to store a shared layer, fixed-length and Huffman-coded (module docstring).

    Args:
        shared: the layer after :func:`share_weights`.
        view: ``shared.values`` as the layer's ``rows × cols`` matrix.
        bits: index width ``b``.

    Returns:
        ``format`` (``dense`` or ``sparse``), ``index_bits`` / ``index_huffman_bits`` (the
        coded streams, fixed-length and Huffman), ``overhead_bits`` (pointers and
        codebook), ``fixed_bits`` and ``huffman_bits`` (totals), ``huffman_saving`` (of
        the coded streams) and, for the sparse format, ``entries`` and ``padding``.
    """
    codebook_bits = len(shared.codebook) * _CODEBOOK_BITS
    dense = {"format": "dense", "index_bits": shared.index.size * bits,
             "index_huffman_bits": stream_bits(shared.index), "overhead_bits": codebook_bits}
    best = dense
    if shared.sparse:
        book = shared.codebook.astype(np.float64)
        m = eie_format.encode(view, 1, index_bits=bits, codebook=book, z_bits=_Z_BITS,
                              pointer_bits=_POINTER_BITS)
        v, z = m.v[0], m.z[0]
        sparse = {"format": "sparse", "index_bits": len(v) * (bits + _Z_BITS),
                  "index_huffman_bits": stream_bits(v) + stream_bits(z),
                  "overhead_bits": m.pointer_bits_per_pe + codebook_bits,
                  "entries": len(v), "padding": int(m.padding_per_pe[0])}
        if sparse["index_bits"] + sparse["overhead_bits"] < dense["index_bits"] + dense["overhead_bits"]:
            best = sparse
    fixed, huff = best["index_bits"], best["index_huffman_bits"]
    return {**best, "fixed_bits": fixed + best["overhead_bits"], "huffman_bits": huff + best["overhead_bits"],
            "huffman_saving": 1.0 - huff / fixed if fixed else 0.0}
