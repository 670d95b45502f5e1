"""Huffman code lengths and coded sizes, for storage accounting (Deep Compression's third
stage: Huffman coding of the quantized weight indices and of the sparse relative indices).

Huffman's algorithm: start with one tree per symbol that occurs, weighted by its count;
repeatedly merge the two lightest trees; a symbol's code length is its depth. The coded
size of a stream is ``Σ count_s · length_s``, the least of any prefix code, so never
more than a fixed-length code of ``ceil(log2(alphabet))`` bits. A stream of one distinct
symbol still needs one bit per symbol. The code table itself is not counted.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

__all__ = ["code_lengths", "coded_bits", "stream_bits"]


def code_lengths(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Huffman code length of each symbol, given how often each occurs (0 if never).

    Ties are broken by symbol order, so the lengths are deterministic.
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(len(counts), dtype=np.int64)
    used = [int(s) for s in np.flatnonzero(counts)]
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    heap = [(int(counts[s]), s, [s]) for s in used]
    heapq.heapify(heap)
    while len(heap) > 1:
        c1, t1, s1 = heapq.heappop(heap)
        c2, t2, s2 = heapq.heappop(heap)
        merged = s1 + s2
        lengths[merged] += 1
        heapq.heappush(heap, (c1 + c2, min(t1, t2), merged))
    return lengths


def coded_bits(counts: Sequence[int] | np.ndarray) -> int:
    """Bits of a stream with these symbol counts under its Huffman code."""
    counts = np.asarray(counts, dtype=np.int64)
    return int(np.dot(counts, code_lengths(counts)))


def stream_bits(symbols: np.ndarray) -> int:
    """Bits of a stream of non-negative integer symbols under its Huffman code."""
    symbols = np.asarray(symbols).ravel()
    if symbols.size == 0:
        return 0
    return coded_bits(np.bincount(symbols.astype(np.int64)))
