"""The row-stationary vocabulary: the array's parameters, a layer's shape, a mapping, a plan.

:class:`Hardware` is the TOML ``[params]`` table in words; :class:`Shape` one group of a
layer in the JSSC letters; :class:`Mapping` the JSSC Table II tuple; :class:`Plan` a
mapping with its counts; :func:`strip_rows` the ifmap rows a strip-mined layer reads. The
mapper (:mod:`.mapper`) searches mappings and counts them.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any

__all__ = ["DTYPES", "LEVELS", "Hardware", "Mapping", "Plan", "Shape", "strip_rows"]

DTYPES = ("weights", "ifmaps", "psums")
LEVELS = ("dram", "glb", "noc", "rf")


@dataclass(frozen=True)
class Hardware:
    """The array, storage and energy parameters (the TOML ``[params]`` table, in words)."""

    rows: int
    cols: int
    filter_spad: int
    ifmap_spad: int
    psum_spad: int
    glb_banks: int
    bank_words: int
    glb_filter_words: int
    bus_words: int  # filter GIN, psum GIN and GON: words a cycle each
    ifmap_bus_words: int  # ifmap GIN: words a cycle
    energy: tuple[float, float, float, float, float]  # mac, rf, noc, glb, dram
    rlc: tuple[int, int, int, int]  # run bits, level bits, pairs per word, word bits
    estimation: str = "chip"  # "chip" (as the JSSC chip runs) or "paper" (CVPR 2017's count)

    @classmethod
    def from_params(cls, p: MappingABC[str, Any]) -> Hardware:
        """The parameters of a target's ``[params]`` table, converted to words."""
        word = p["word_bits"] // 8
        e = p["energy_relative"]
        return cls(
            rows=p["pe_rows"],
            cols=p["pe_cols"],
            filter_spad=p["filter_spad_words"],
            ifmap_spad=p["ifmap_spad_words"],
            psum_spad=p["psum_spad_words"],
            glb_banks=p["glb_ifmap_psum_banks"],
            bank_words=p["glb_bank_bytes"] // word,
            glb_filter_words=p["glb_filter_bytes"] // word,
            bus_words=p["noc_bus_bits"] // p["word_bits"],
            ifmap_bus_words=max(1, p["ifmap_gin_bits"] // p["word_bits"]),
            energy=(e["mac"], e["rf"], e["noc"], e["glb"], e["dram"]),
            rlc=(
                p["rlc_run_bits"],
                p["rlc_level_bits"],
                p["rlc_pairs_per_word"],
                p["rlc_word_bits"],
            ),
            estimation=p.get("estimation", "chip"),
        )


@dataclass(frozen=True)
class Shape:
    """One group of a layer in row-stationary terms (``H``/``W`` padded; ``*_real`` not)."""

    N: int
    C: int
    M: int
    H: int
    W: int
    R: int
    S: int
    E: int
    F: int
    U: int = 1
    V: int = 1
    G: int = 1
    H_real: int = 0
    W_real: int = 0
    pad_top: int = 0


@dataclass(frozen=True)
class Mapping:
    """JSSC Table II: ofmap channels in the GLB, images per pass, PE-set width, filters and
    channels per PE, PE sets for different channels and for different filters."""

    m: int
    n: int
    e: int
    p: int
    q: int
    r: int
    t: int

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in "mnepqrt"}


@dataclass(frozen=True)
class Plan:
    """A mapping with its counts (for all groups of the layer).

    Attributes:
        access: ``(dtype, level) -> accesses`` in 16-bit words (DRAM: compressed words).
        macs: MACs performed (non-zero ifmaps); ``macs_dense`` all of them.
        energy: normalised energy (one MAC = 1).
    """

    mapping: Mapping
    active_pes: int
    passes: int
    compute_cycles: float
    cycles: float
    access: dict[tuple[str, str], float]
    dram_words: dict[str, float]
    macs: float
    macs_dense: float
    energy: float


def strip_rows(s: Shape, e: int) -> tuple[int, int]:
    """Padded ifmap rows that the strips of ``e`` ofmap rows read in all, and the real ones.

    Strip ``i`` reads the rows ``[U*e*i, U*(its last ofmap row) + R)``, and its real rows
    are those inside ``[pad_top, pad_top + H_real)``. The sums are taken in closed form, so
    that a layer of a billion rows costs no more to map than a small one.
    """
    strips = -(-s.E // e)
    if strips < 1:
        return 0, 0
    step, length = s.U * e, s.U * (e - 1) + s.R  # a full strip: start step*i, length rows
    last_lo, last_hi = step * (strips - 1), s.U * (s.E - 1) + s.R
    pad = (strips - 1) * length + last_hi - last_lo
    # Real rows of [lo, hi) are clip(hi) - clip(lo), clipping to the real rows' range.
    top, bottom = s.pad_top, s.pad_top + s.H_real
    his = _clipped_sum(length, step, strips - 1, top, bottom) + min(max(last_hi, top), bottom)
    return pad, his - _clipped_sum(0, step, strips, top, bottom)


def _clipped_sum(first: int, step: int, count: int, lo: int, hi: int) -> int:
    """``sum(min(max(first + step*i, lo), hi) for i in range(count))`` for ``step > 0``, in
    O(1): the terms below ``lo`` and above ``hi`` are counted, those between summed."""
    below = min(max(-(-(lo - first) // step), 0), count)  # terms < lo
    above = min(max(-(-(hi - first) // step), below), count)  # first term >= hi
    mid = above - below
    return below * lo + mid * first + step * ((below + above - 1) * mid // 2) + (count - above) * hi
