"""How an FC layer is laid out on EIE: row tiles, SRAM fit, and weight passes.

Han et al., ISCA 2016, Sections IV (Activation Read/Write) and VI (SRAM sizes).

1. Row tiles. A PE keeps its output accumulators in a register file of ``regs`` (64)
   activations, so ``regs · n_pes`` (4096) outputs are computed at a time; a layer with
   more outputs runs in ``ceil(rows / 4096)`` row tiles, each a full pass over the
   non-zero input activations, with every PE drained between tiles (the destination
   registers are written back to the activation SRAM). Each tile is its own CSC (column
   pointers per tile; the relative index restarts at the tile's first row).
2. SRAM fit. Each PE stores its entries of every tile (``index_bits + z_bits`` = 8 bits
   each) in the sparse-matrix SRAM and ``tiles · (cols + 1)`` pointers of ``pointer_bits``
   in the pointer SRAM. If both fit, the weights stay resident: one weight pass.
3. Otherwise the layer runs in weight passes: within each row tile, greedy contiguous
   column blocks, each as large as both SRAMs allow; before each pass the block's
   entries and pointers are loaded from DRAM (the paper's I/O mode: PEs idle).
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
        fits: the whole layer is resident in the SRAMs.
        spmat_bytes_max: largest per-PE sparse-matrix SRAM use of the whole layer.
        pointer_bytes: per-PE pointer SRAM use of the whole layer.
        reload_bits: bits loaded from DRAM per batch (0 when resident).
    """

    entries: list[np.ndarray]
    nnz: list[np.ndarray]
    units: list[tuple[int, int, int]]
    fits: bool
    spmat_bytes_max: float
    pointer_bytes: float
    reload_bits: int


def _blocks(entries: np.ndarray, cap: int, ptr_cap: int) -> list[tuple[int, int]]:
    """Greedy contiguous column blocks whose per-PE entries and pointers fit."""
    cols = entries.shape[1]
    csum = np.concatenate(
        [np.zeros((entries.shape[0], 1), np.int64), np.cumsum(entries, axis=1)], axis=1
    )
    out, start = [], 0
    while start < cols:
        # non-decreasing in the end column
        used = (csum[:, start + 1 :] - csum[:, [start]]).max(axis=0)
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
    n_ptr = len(entries) * (cols + 1)
    fits = bool(per_pe.max() <= cap and n_ptr <= ptr_cap)
    if fits:
        units = [(t, 0, cols) for t in range(len(entries))]
        reload = 0
    else:
        units = [(t, a, b) for t, e in enumerate(entries) for a, b in _blocks(e, cap, ptr_cap)]
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
    )
