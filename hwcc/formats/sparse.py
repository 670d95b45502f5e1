"""The EIE weight format: relative-indexed, weight-shared CSC, interleaved over PEs.

Han et al., "EIE: Efficient Inference Engine on Compressed Deep Neural Network", ISCA 2016,
Section III-B/C and Figures 2-3. Numpy only, so that a pruning pass can share it.

Format, for a weight matrix ``W`` of shape ``rows × cols`` (``b = W a``: one row per
output, one column per input) on ``N`` processing elements (PEs):

1. Interleaving: row ``i`` lives on PE ``i mod N``, as local row ``i // N``.
2. Each PE stores its slice of every column ``j`` in CSC order: a vector ``v`` of
   ``index_bits``-bit codebook indices and an equal-length vector ``z`` of ``z_bits``-bit
   relative row indices (the number of zeros before the entry, counted from the previous
   entry of the same column, or from the column's first local row).
3. More than ``2**z_bits - 1`` (15) zeros before a non-zero: a padding entry ``v = 0,
   z = 15`` is inserted, which covers 15 zeros and itself. A gap of ``g`` zeros therefore
   costs ``g // 16`` padding entries and the non-zero gets ``z = g % 16``. Zeros after the
   last non-zero of a column cost nothing. Padding entries are work: the PE spends a
   cycle on each.
4. Column pointers ``p`` (``cols + 1`` per PE, ``pointer_bits`` = 16 bits each):
   column ``j`` occupies entries ``p[j] .. p[j+1] - 1`` (padding included).
5. Codebook: ``2**index_bits`` (16) shared values; entry 0 is the value 0.0, used by the
   padding entries, so at most 15 distinct non-zero values. Without a given codebook, a
   matrix with at most 15 distinct non-zero values keeps them exactly (sorted); otherwise
   they are clustered by 1-D k-means with linear initialisation between the minimum and
   the maximum (Deep Compression, Han, Mao, Dally, ICLR 2016).

Storage of one PE, exactly, in bits: ``entries · (index_bits + z_bits) + (cols + 1) ·
pointer_bits``; the sparse-matrix SRAM holds the entries and the pointer SRAM the pointers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "EIEMatrix",
    "encode_column",
    "decode_column",
    "work_counts",
    "make_codebook",
    "quantize",
    "encode",
    "decode",
]


@dataclass(frozen=True)
class EIEMatrix:
    """A matrix in EIE's interleaved CSC format.

    Attributes:
        shape: ``(rows, cols)`` of the dense matrix.
        n_pes: number of PEs the rows are interleaved over.
        codebook: the shared values; ``codebook[0] == 0`` (padding).
        v: per PE, the codebook index of every entry (padding entries are 0).
        z: per PE, the relative row index of every entry (zeros before it).
        p: per PE, ``cols + 1`` column pointers into ``v`` and ``z``.
        index_bits, z_bits, pointer_bits: field widths in bits.
    """

    shape: tuple[int, int]
    n_pes: int
    codebook: np.ndarray
    v: list[np.ndarray]
    z: list[np.ndarray]
    p: list[np.ndarray]
    index_bits: int = 4
    z_bits: int = 4
    pointer_bits: int = 16

    @property
    def entries_per_pe(self) -> np.ndarray:
        """Entries (non-zeros and padding) stored by each PE."""
        return np.array([len(v) for v in self.v], dtype=np.int64)

    @property
    def padding_per_pe(self) -> np.ndarray:
        """Padding entries of each PE (``v == 0``; non-zeros never get index 0)."""
        return np.array([int(np.count_nonzero(v == 0)) for v in self.v], dtype=np.int64)

    @property
    def nnz_per_pe(self) -> np.ndarray:
        return self.entries_per_pe - self.padding_per_pe

    @property
    def pointers_per_pe(self) -> int:
        return self.shape[1] + 1

    @property
    def spmat_bits_per_pe(self) -> np.ndarray:
        """Sparse-matrix SRAM use of each PE: ``entries · (index_bits + z_bits)``."""
        return self.entries_per_pe * (self.index_bits + self.z_bits)

    @property
    def pointer_bits_per_pe(self) -> int:
        """Pointer SRAM use of each PE: ``(cols + 1) · pointer_bits``."""
        return self.pointers_per_pe * self.pointer_bits

    @property
    def storage_bits(self) -> int:
        """All PEs: ``Σ entries · (index_bits + z_bits) + N · (cols + 1) · pointer_bits``."""
        return int(self.spmat_bits_per_pe.sum()) + self.n_pes * self.pointer_bits_per_pe

    def column_entries(self) -> np.ndarray:
        """``(n_pes, cols)`` entries per PE and column: ``p[j+1] - p[j]``."""
        return np.stack([np.diff(p) for p in self.p])


def _check_bits(name: str, bits: int) -> None:
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ValueError(f"{name} must be an integer from 1 to 16, got {bits!r}")


def encode_column(col: np.ndarray, z_bits: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """One column in relative-indexed form, values kept as given.

    Args:
        col: the column's values (codebook indices or weights); zeros are skipped.
        z_bits: width of the relative index; a run of ``2**z_bits`` zeros or more gets
            padding entries.

    Returns:
        ``(v, z)``: the stored values (0 for padding) and the zeros before each entry.
        The paper's example ``[0,0,1,2,0×18,3]`` gives ``v=[1,2,0,3]``, ``z=[2,0,15,2]``.
    """
    _check_bits("z_bits", z_bits)
    col = np.asarray(col).ravel()
    span = 1 << z_bits
    rows = np.flatnonzero(col)
    gaps = np.diff(rows, prepend=-1) - 1
    pads = gaps // span
    where = np.cumsum(pads + 1) - 1  # position of each non-zero among the entries
    n = int(where[-1]) + 1 if len(where) else 0
    v = np.zeros(n, dtype=col.dtype)
    z = np.full(n, span - 1, dtype=np.int64)
    v[where] = col[rows]
    z[where] = gaps % span
    return v, z


def decode_column(v: np.ndarray, z: np.ndarray, length: int) -> np.ndarray:
    """The dense column of ``length`` values that :func:`encode_column` produced ``(v, z)`` from."""
    rows = np.cumsum(np.asarray(z, dtype=np.int64) + 1) - 1
    if len(rows) and rows[-1] >= length:
        raise ValueError(f"entries reach row {rows[-1]}, beyond a column of {length}")
    out = np.zeros(length, dtype=np.asarray(v).dtype)
    out[rows] = v
    return out


def _interleaved_nonzeros(mask: np.ndarray, n_pes: int) -> tuple[np.ndarray, ...]:
    """``(pe, col, local_row)`` of every non-zero, in storage order (PE, column, row)."""
    rows, cols = mask.shape
    padded = -(-rows // n_pes) * n_pes
    if padded != rows:
        mask = np.concatenate([mask, np.zeros((padded - rows, cols), dtype=bool)])
    by_pe = mask.reshape(padded // n_pes, n_pes, cols).transpose(1, 2, 0)
    return np.nonzero(by_pe)


def _gaps(
    pe: np.ndarray, col: np.ndarray, local: np.ndarray, cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Zeros before each non-zero within its PE's column, and the (pe, column) group id."""
    group = pe.astype(np.int64) * cols + col
    gaps = local.astype(np.int64).copy()
    if len(gaps) > 1:
        same = group[1:] == group[:-1]
        gaps[1:][same] = local[1:][same] - local[:-1][same] - 1
    return gaps, group


def work_counts(W: np.ndarray, n_pes: int, z_bits: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Entries each PE stores for each column, without building the format.

    Walks the local rows in order, keeping per (PE, column) the last local row that held a
    non-zero; a non-zero at local row ``l`` follows a gap of ``l - last - 1`` zeros and so
    brings ``gap >> z_bits`` padding entries. Dense, O(rows · cols), in the memory order of
    ``W`` (a transposed view is walked along its columns).

    Args:
        W: ``rows × cols`` matrix (any dtype); only its zero pattern matters.
        n_pes: PEs the rows are interleaved over.
        z_bits: relative-index width (padding rule).

    Returns:
        ``(entries, nnz)``, both ``(n_pes, cols)`` int64: entries including padding (the
        cycles the PE spends on the column) and true non-zeros.
    """
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D, got shape {W.shape}")
    _check_bits("z_bits", z_bits)
    mask = W if W.dtype == bool else W != 0
    flip = mask.strides[0] < mask.strides[1]  # column-major memory: walk it as (cols, rows)
    src = mask.T if flip else mask
    shape = (src.shape[0], n_pes) if flip else (n_pes, src.shape[1])
    last = np.full(shape, -1, dtype=np.int32)  # int32: half the memory traffic of int64
    nnz, pads, gap = (np.zeros(shape, dtype=np.int32) for _ in range(3))
    for local, r0 in enumerate(range(0, mask.shape[0], n_pes)):
        hit = src[:, r0 : r0 + n_pes] if flip else src[r0 : r0 + n_pes]
        part = (slice(None), slice(0, hit.shape[1])) if flip else (slice(0, hit.shape[0]),)
        g = gap[part]
        np.subtract(local - 1, last[part], out=g)
        g >>= z_bits
        g *= hit
        pads[part] += g
        nnz[part] += hit
        np.copyto(last[part], local, where=hit)
    entries, nnz = (nnz + pads).astype(np.int64), nnz.astype(np.int64)
    return (
        (np.ascontiguousarray(entries.T), np.ascontiguousarray(nnz.T)) if flip else (entries, nnz)
    )


def make_codebook(values: np.ndarray, index_bits: int = 4, iters: int = 20) -> np.ndarray:
    """Shared weights: ``[0, c_1, ..., c_k]`` with ``k <= 2**index_bits - 1``.

    Exact (the sorted distinct values) when there are few enough; otherwise 1-D k-means
    with linear initialisation, ``iters`` Lloyd steps.
    """
    _check_bits("index_bits", index_bits)
    nz = np.asarray(values, dtype=np.float64).ravel()
    nz = nz[nz != 0]
    k = (1 << index_bits) - 1
    distinct = np.unique(nz)
    if len(distinct) <= k:
        return np.concatenate([[0.0], distinct])
    centers = np.linspace(nz.min(), nz.max(), k)
    for _ in range(iters):
        label = _nearest(nz, centers)
        sums = np.bincount(label, weights=nz, minlength=k)
        counts = np.bincount(label, minlength=k)
        centers = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
    return np.concatenate([[0.0], np.sort(centers)])


def _nearest(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest of sorted ``centers`` for every ``x``."""
    mid = (centers[1:] + centers[:-1]) / 2
    return np.searchsorted(mid, x)


def quantize(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Codebook index (1..len-1) of the nearest shared value of every non-zero; 0 for zeros."""
    codebook = np.asarray(codebook, dtype=np.float64)
    values = np.asarray(values)
    order = np.argsort(codebook[1:])
    idx = 1 + order[_nearest(values.astype(np.float64), codebook[1:][order])]
    return np.where(values != 0, idx, 0).astype(np.uint8)


def encode(
    W: np.ndarray,
    n_pes: int,
    index_bits: int = 4,
    codebook: np.ndarray | None = None,
    *,
    z_bits: int = 4,
    pointer_bits: int = 16,
) -> EIEMatrix:
    """Encode ``W`` (``rows × cols``, rows are outputs) for ``n_pes`` PEs.

    Args:
        W: the weight matrix.
        n_pes: PEs the rows are interleaved over (row ``i`` on PE ``i mod n_pes``).
        index_bits: codebook index width (16 shared values at 4 bits).
        codebook: shared values with ``codebook[0] == 0``; default :func:`make_codebook`.
        z_bits: relative row index width.
        pointer_bits: column pointer width (storage accounting).

    Returns:
        The :class:`EIEMatrix`.

    Raises:
        ValueError: ``W`` not 2-D, a bad width, or a codebook that does not start with 0
            or has more than ``2**index_bits`` entries.
    """
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D, got shape {W.shape}")
    if not isinstance(n_pes, (int, np.integer)) or n_pes < 1:
        raise ValueError(f"n_pes must be a positive integer, got {n_pes!r}")
    for name, bits in (
        ("index_bits", index_bits),
        ("z_bits", z_bits),
        ("pointer_bits", pointer_bits),
    ):
        _check_bits(name, bits)
    book = (
        make_codebook(W, index_bits) if codebook is None else np.asarray(codebook, dtype=np.float64)
    )
    if book.ndim != 1 or not 1 < len(book) <= 1 << index_bits or book[0] != 0:
        raise ValueError(
            f"codebook must be 1-D with 2..{1 << index_bits} entries and codebook[0] == 0"
        )
    cols = W.shape[1]
    pe, col, local = _interleaved_nonzeros(W != 0, n_pes)
    gaps, group = _gaps(pe, col, local, cols)
    pads = gaps >> z_bits
    where = np.cumsum(pads + 1) - 1
    total = int(where[-1]) + 1 if len(where) else 0
    v = np.zeros(total, dtype=np.uint8)
    z = np.full(total, (1 << z_bits) - 1, dtype=np.uint8)
    row = pe.astype(np.int64) + n_pes * local
    v[where] = quantize(W[row, col], book)
    z[where] = gaps & ((1 << z_bits) - 1)
    entries = np.bincount(group, weights=pads + 1, minlength=n_pes * cols).astype(np.int64)
    entries = entries.reshape(n_pes, cols)
    bounds = np.concatenate([[0], np.cumsum(entries.sum(axis=1))])
    ptrs = [np.concatenate([[0], np.cumsum(e)]) for e in entries]
    return EIEMatrix(
        shape=(W.shape[0], cols),
        n_pes=int(n_pes),
        codebook=book,
        v=[v[a:b] for a, b in zip(bounds[:-1], bounds[1:])],
        z=[z[a:b] for a, b in zip(bounds[:-1], bounds[1:])],
        p=ptrs,
        index_bits=index_bits,
        z_bits=z_bits,
        pointer_bits=pointer_bits,
    )


def decode(m: EIEMatrix) -> np.ndarray:
    """The dense matrix (shared values) that ``m`` encodes: ``decode(encode(W)) == quantized W``."""
    rows, cols = m.shape
    out = np.zeros((rows, cols), dtype=np.float64)
    for pe, (v, z, p) in enumerate(zip(m.v, m.z, m.p)):
        if not len(v):
            continue
        col = np.repeat(np.arange(cols), np.diff(p))
        step = z.astype(np.int64) + 1
        run = np.cumsum(step)
        start = np.repeat(
            run[p[:-1] - 1] * (p[:-1] > 0), np.diff(p)
        )  # running sum before the column
        row = pe + m.n_pes * (run - start - 1)
        keep = v != 0
        if np.any(row[keep] >= rows):
            raise ValueError(f"PE {pe}: an entry lies beyond row {rows - 1}")
        out[row[keep], col[keep]] = m.codebook[v[keep]]
    return out
