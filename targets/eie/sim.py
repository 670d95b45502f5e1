"""Cycle model of EIE's PE array for one sparse matrix × sparse vector pass.

Han et al., ISCA 2016, Section IV ("Activation Queue and Load Balancing", "Pointer Read
Unit", "Sparse Matrix Read Unit", "Distributed Leading Non-Zero Detection"). Every
quantity is in clock cycles; the cycle counts come from the per-PE work of the actual
matrix, column by column, in the order the activations are broadcast.

Per broadcast ``k`` (the k-th non-zero input activation, column ``j_k``) and PE ``p``,
with ``c[p, k]`` the entries (non-zeros and padding) PE ``p`` holds in column ``j_k``:

1. Broadcast (CCU, root of the LNZD quadtree): at most one activation per cycle; the
   LNZD scans one row of ``n_pes`` activations (one per PE) per cycle, so column ``j``
   cannot go out before cycle ``j // n_pes``; and the broadcast is disabled while any
   PE's queue is full (depth ``D``)::

       B[k] = max(B[k-1] + 1, j_k // n_pes, max_p Q[p, k-D] + 1)

2. Pointer read stage: takes the queue head one cycle after it was written, once the
   stage is free; reads ``p[j], p[j+1]`` in one cycle (even/odd banks)::

       Q[p, k] = max(B[k] + 1, H[p, k-1])

3. Sparse-matrix read / arithmetic: an empty column (``c = 0``) leaves the pointer
   stage after its one cycle; a non-empty one is handed over when the matrix reader is
   free and streams one entry per cycle, back to back with the previous column::

       c == 0:  H[p, k] = Q[p, k] + 1
       c  > 0:  S = max(Q[p, k] + 1, F[p]);  F[p] = S + c;  H[p, k] = S

4. The pass ends when every PE has drained, plus the arithmetic pipeline's depth::

       cycles = max_p max(F[p], H[p, K-1]) + pipeline_stages

The paper's load-balance efficiency is ``1 - bubble cycles / total cycles``; averaged over
the PEs this is ``Σ c / (n_pes · cycles)``, i.e. the theoretical (perfectly balanced)
time over the simulated one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PassResult", "simulate"]


@dataclass(frozen=True)
class PassResult:
    """One simulated pass.

    Attributes:
        cycles: from the first broadcast to the last write-back.
        work: entries processed (non-zeros and padding), summed over PEs.
        broadcasts: non-zero activations broadcast.
        queue_full_stalls: cycles the broadcast waited on a full queue.
    """

    cycles: int
    work: int
    broadcasts: int
    queue_full_stalls: int


def simulate(
    work: np.ndarray, columns: np.ndarray, n_pes: int, fifo_depth: int, pipeline_stages: int
) -> PassResult:
    """Simulate one pass over the broadcast columns.

    Args:
        work: ``(n_pes, K)`` entries per PE of each broadcast column, in broadcast order.
        columns: ``(K,)`` the columns' indices within the activation vector (for the
            LNZD scan bound).
        n_pes: PEs (also the activations the LNZD scans per cycle).
        fifo_depth: activation queue depth ``D`` per PE.
        pipeline_stages: arithmetic pipeline depth, added once at the end.

    Returns:
        The :class:`PassResult`.
    """
    work = np.asarray(work, dtype=np.int64)
    if work.ndim != 2 or work.shape[0] != n_pes or work.shape[1] != len(columns):
        raise ValueError(f"work must be ({n_pes}, {len(columns)}), got {work.shape}")
    if fifo_depth < 1:
        raise ValueError(f"fifo_depth must be at least 1, got {fifo_depth}")
    K = work.shape[1]
    if K == 0:
        return PassResult(0, 0, 0, 0)
    by_col = np.ascontiguousarray(work.T)
    busy = by_col > 0
    earliest = (np.asarray(columns, dtype=np.int64) // n_pes).tolist()
    taken_max = [0] * K  # max_p Q[p, k]
    free = np.ones(n_pes, dtype=np.int64)  # H + 1 (H: pointer stage free from this cycle)
    done = np.zeros(n_pes, dtype=np.int64)  # F: matrix reader free from this cycle
    q1, start = np.empty_like(free), np.empty_like(free)
    b_prev, stalls = -1, 0
    for k in range(K):
        b = max(b_prev + 1, earliest[k])
        if k >= fifo_depth and taken_max[k - fifo_depth] + 1 > b:
            stalls += taken_max[k - fifo_depth] + 1 - b
            b = taken_max[k - fifo_depth] + 1
        b_prev = b
        np.maximum(free, b + 2, out=q1)  # Q + 1 = max(H, B + 1) + 1
        taken_max[k] = int(q1.max()) - 1
        np.maximum(q1, done, out=start)  # S
        # An empty column leaves F unchanged in effect: S >= F, and every later
        # Q + 1 exceeds this S, so F = S + 0 never delays anything.
        np.add(start, by_col[k], out=done)
        np.copyto(q1, start, where=busy[k])  # H = S if the column has entries, else Q + 1
        q1 += 1
        free, q1 = q1, free
    cycles = int(max(done.max(), free.max() - 1)) + pipeline_stages
    return PassResult(cycles, int(work.sum()), K, stalls)
