"""How an FC layer is laid out on EIE: row tiles, input pieces, SRAM fit, weight passes.

Han et al., ISCA 2016, Sections IV (Pointer Read, Sparse Matrix Read, Activation
Read/Write, Central Unit) and VI (SRAM sizes, Table V capacity).

1. Row tiles. A PE keeps its output accumulators in a register file of ``regs`` (64)
   activations, so ``regs · n_pes`` (4096) outputs are computed at a time; a layer with
   more outputs runs in ``ceil(rows / 4096)`` row tiles, each a full pass over the
   non-zero input activations, with every PE drained between tiles (the destination
   registers are written back to the activation SRAM).
2. Input pieces. The source register file holds 4096 inputs as well: "when the
   activation vector has a length greater than 4K, the M×V will be completed in several
   batches, where each batch is of length 4K or less" (Section IV). Each piece is run
   like a layer of its own, "by setting the input length and starting address of pointer
   array" (Central Unit), so each (row tile, piece) has its own ``piece_cols + 1``
   pointers, relative to the piece's first entry: a 16-bit pointer (13-bit row of the
   64-bit-wide SRAM + 3-bit offset) reaches 64 K entries, half of the 128 KB, and the
   pieces are what lets a layer use all of it. The partial sums stay in the destination
   registers across pieces, so pieces of one row tile need no drain between them.
3. SRAM fit. The sparse-matrix SRAM holds the entries (``index_bits + z_bits`` = 8 bits
   each) and nothing else; the pointers live in their own SRAM banks (even/odd). The
   paper's capacity is that of the sparse-matrix SRAM alone: 128 KB = 131 K entries per
   PE, "84M" parameters on 64 PEs (Table V; 64 · 131 K entries at ~10 % density). A
   layer whose entries fit every PE's sparse-matrix SRAM is resident: loaded once in I/O
   mode, "one time cost" (Central Unit), and never reloaded per inference. Its pointer
   demand is reported beside the 32 KB pointer SRAM; the paper's capacity does not count
   it (84 M parameters at 10 % density would need more than the pointer SRAM's 16 K
   pointers per PE for any layer wider than 16 K inputs), so it decides nothing here.
4. A layer whose entries do not fit runs in weight passes: within each row tile and input
   piece, greedy contiguous column blocks, each as large as both SRAMs allow; before
   each pass the block's entries and pointers are loaded from DRAM (I/O mode: PEs idle),
   every inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwcc.errors import HwccError
from hwcc.formats.sparse import work_counts

__all__ = ["Plan", "plan_layer"]


@dataclass(frozen=True)
class Plan:
    """The layout of one layer.

    Attributes:
        entries: per row tile, ``(n_pes, cols)`` entries (non-zeros and padding).
        nnz: per row tile, ``(n_pes, cols)`` true non-zeros.
        units: ``(tile, first_col, end_col)`` passes in execution order; one per row tile
            when the layer fits.
        fits: the whole layer is resident: every PE's entries fit its sparse-matrix SRAM.
        spmat_bytes_max: largest per-PE sparse-matrix SRAM use of the whole layer.
        pointer_bytes: per-PE pointer demand of the whole layer (every row tile and
            input piece: ``tiles · (cols + pieces)`` pointers).
        reload_bits: bits loaded from DRAM per batch (0 when resident).
        pieces: input pieces of at most ``regs · n_pes`` columns.
        pointer_fits: the pointer demand fits the pointer SRAM (reported, see 3.).
    """

    entries: list[np.ndarray]
    nnz: list[np.ndarray]
    units: list[tuple[int, int, int]]
    fits: bool
    spmat_bytes_max: float
    pointer_bytes: float
    reload_bits: int
    pieces: int = 1
    pointer_fits: bool = True


def _blocks(
    entries: np.ndarray, cap: int, ptr_cap: int, first: int = 0, end: int | None = None
) -> list[tuple[int, int]]:
    """Greedy contiguous column blocks of ``[first, end)`` whose per-PE entries and
    pointers fit."""
    cols = entries.shape[1] if end is None else end
    csum = np.concatenate(
        [np.zeros((entries.shape[0], 1), np.int64), np.cumsum(entries, axis=1)], axis=1
    )
    out, start = [], first
    while start < cols:
        # non-decreasing in the end column
        used = (csum[:, start + 1 : cols + 1] - csum[:, [start]]).max(axis=0)
        n = min(int(np.searchsorted(used, cap, side="right")), ptr_cap - 1)
        if n == 0:
            raise HwccError(
                f"one column needs {int(used[0])} entries on a PE, more than the "
                f"{cap} its sparse-matrix SRAM holds",
                "give the target a larger spmat_sram_KB or more PEs",
            )
        out.append((start, start + n))
        start += n
    return out


def plan_layer(
    mask: np.ndarray,
    n_pes: int,
    regs: int,
    z_bits: int,
    entry_bits: int,
    pointer_bits: int,
    spmat_bytes: int,
    pointer_bytes: int,
) -> Plan:
    """Lay ``mask`` (``rows × cols``, True where a weight is non-zero) out on the PEs.

    Args:
        mask: the non-zero pattern of the weight matrix (rows are outputs).
        n_pes: PEs.
        regs: activation registers per file (outputs per PE per row tile).
        z_bits: relative-index width (padding rule).
        entry_bits: bits per stored entry (codebook index + relative index).
        pointer_bits: bits per column pointer.
        spmat_bytes: sparse-matrix SRAM per PE.
        pointer_bytes: pointer SRAM per PE.
    """
    rows, cols = mask.shape
    step = regs * n_pes
    tiles = [work_counts(mask[r : r + step], n_pes, z_bits) for r in range(0, max(rows, 1), step)]
    entries, nnz = [t[0] for t in tiles], [t[1] for t in tiles]
    cap = spmat_bytes * 8 // entry_bits
    ptr_cap = pointer_bytes * 8 // pointer_bits
    per_pe = sum(e.sum(axis=1) for e in entries)
    bounds = [(a, min(a + step, cols)) for a in range(0, max(cols, 1), step)]
    n_ptr = len(entries) * sum(b - a + 1 for a, b in bounds)
    fits = bool(per_pe.max() <= cap)
    if fits:
        # one pass per row tile: the pieces of a tile share its accumulators (no drain)
        units = [(t, 0, cols) for t in range(len(entries))]
        reload = 0
    else:
        units = [
            (t, a, b)
            for t, e in enumerate(entries)
            for lo, hi in bounds
            for a, b in _blocks(e, cap, ptr_cap, lo, hi)
        ]
        reload = sum(
            int(entries[t][:, a:b].sum()) * entry_bits + n_pes * (b - a + 1) * pointer_bits
            for t, a, b in units
        )
    return Plan(
        entries,
        nnz,
        units,
        fits,
        float(per_pe.max()) * entry_bits / 8,
        n_ptr * pointer_bits / 8,
        reload,
        len(bounds),
        n_ptr <= ptr_cap,
    )
