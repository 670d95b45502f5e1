"""Row-stationary mapping search and access counting for the Eyeriss family.

A layer (one group of a grouped convolution) is a :class:`Shape`; a :class:`Mapping` is the
JSSC Table II tuple ``(m, n, e, p, q, r, t)``. :func:`evaluate` counts, for arrays of
candidate mappings at once (numpy), every access of every data type at every level, the
processing cycles and the DRAM words; :func:`search` keeps the feasible one that minimises
the objective (energy x cycles, or energy).

Processing order (JSSC "processing pass"; outer to inner)::

    for each batch group of n images           ceil(N/n)
      for each block of m ofmap channels         ceil(M/m)   psums of n*m*e*F stay in the GLB
        for each strip of e ofmap rows           ceil(E/e)
          for each chunk of q*r channels         ceil(C/(q*r))  its ifmap rows are in the GLB
            for each group of p*t filters        ceil(m/(p*t))  = one processing pass
                                                 (a last, smaller group spreads over all t sets)

In a pass, ``r*t`` PE sets of ``R`` rows x ``e`` columns run; each PE holds ``p*q*S``
weights (filter spad), a ``q*S`` ifmap window (ifmap spad) and ``p`` psums (psum spad),
and does ``n*p*q*S*F`` MACs, one per cycle.

Counts per data type, following the ISCA 2016 framework (Eq. 3 for inputs, Eq. 4 for psums;
a move between two levels is charged at the dearer one, so GLB *reads* and NoC
*deliveries* are counted, not the writes that fill the level below):

* ifmaps: DRAM ``N*C*ceil(M/m)*rows_real*W`` (halo rows of each strip re-read) · GLB
  one read of the chunk's rows per pass · NoC one delivery of ``n*q*W_pad`` values to every
  active PE per pass · RF one read per MAC (zeros are read, then gate the rest).
* filters: DRAM and GLB ``ceil(N/n)*ceil(E/e)*M*C*R*S`` (once only if all of the layer's
  filters fit the filter GLB) · NoC each filter row to the ``e`` PEs of its set row · RF
  one read per *non-zero-ifmap* MAC (zero gating).
* psums: DRAM one ofmap write per output · GLB ``2(b-1)`` per output with ``b`` channel
  chunks · NoC ``R*sets - 1`` PE-to-PE hops per chunk · RF ``2(q*S - 1)`` per psum per PE.
* compute: one MAC per non-zero-ifmap MAC.

DRAM words are run-length coded (:func:`rlc_ratio`) where that makes them smaller.

Estimation (``Hardware.estimation``): ``"chip"`` counts as above, as the JSSC chip runs
(zero ifmaps gate the MAC and the filter-spad read; zero weights are read and multiplied).
``"paper"`` counts as Yang, Chen, Sze (CVPR 2017, Sec. 3) estimate energy for pruning: only
*effectual* MACs happen (non-zero weight and non-zero ifmap, a fraction ``d_in*d_w`` of
them), and with them their RF accesses (ifmap, weight, psum read and write); the weights
sit in DRAM compressed (the non-zero values: ``d_w`` of the dense words, the index not
counted). GLB and NoC traffic and the cycles are the chip's in both.

Cycles: ``N * sum(p_i) * sum(q_i) * ceil(E/e) * S * F`` MAC cycles, plus one cycle per
output position and filter to add the psum from the PE below (``1/(q*S)`` more: the PE has
one adder), stretched when a pass needs more psum words than the 64-bit GON or more ifmap
words than the 16-bit ifmap GIN carries, plus the filter-spad fills (``filter words loaded
/ bus words per cycle``, not overlapped with MACs).

Constraints (:func:`check`) besides the spads, the array and the GLB: sets of different
channels (``r``) must stack in the same columns (:func:`vertical_sets`), because their
psums add up the column.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import Any

import numpy as np

from hwcc.targets.eyeriss.dataflow import (
    DTYPES,
    LEVELS,
    Hardware,
    Mapping,
    Plan,
    Shape,
    strip_rows,
)

# The vocabulary is defined in .dataflow and re-exported: callers import it with the mapper.
__all__ = [
    "Hardware",
    "Shape",
    "Mapping",
    "Plan",
    "evaluate",
    "search",
    "check",
    "plan_of",
    "candidates",
    "rlc_ratio",
    "max_sets",
    "vertical_sets",
    "strip_rows",
    "DTYPES",
    "LEVELS",
]


def rlc_ratio(density: float, rlc: tuple[int, int, int, int]) -> float:
    """Words after run-length coding per word before, or 1 where coding would not save.

    A pair is a run of up to ``2**run_bits - 1`` zeros and a value; ``pairs`` pairs share a
    ``word_bits`` word (JSSC: 5-bit run, 16-bit level, 3 pairs per 64-bit word). With
    independent zeros of density ``d``, a pair covers ``(1-(1-d)**L)/d`` values on average
    (``L = 2**run_bits``), so it costs ``word_bits/pairs`` bits per that many values.
    """
    run_bits, level_bits, pairs, word_bits = rlc
    cap = 2**run_bits
    d = min(max(density, 0.0), 1.0)
    values_per_pair = cap if d == 0 else (1 - (1 - d) ** cap) / d
    return min(1.0, word_bits / pairs / level_bits / values_per_pair)


def max_sets(R: int, e: int, hw: Hardware) -> int:
    """PE sets of R rows x e columns that fit the array; a set wider than the array is
    folded into ``ceil(e/cols)`` segments stacked vertically (JSSC Fig. 5, CONV2)."""
    seg = -(-e // hw.cols)
    return (hw.rows // (R * seg)) * (hw.cols // min(e, hw.cols))


def vertical_sets(R: int, e: int, hw: Hardware) -> int:
    """PE sets of R x e that stack in the same columns: the most sets of *different
    channels* a pass can use (``r``), since their psums add up a column, over the local
    PE-to-PE network, which runs vertically only (JSSC Fig. 5: CONV4/5's r = 2 sets are
    stacked). Sets side by side can only take different filters (``t``)."""
    return hw.rows // (R * -(-e // hw.cols))


def _ceil(a, b):
    return -(-a // b)


def _folds(total, block, sets, per_pe):
    """``total`` items (filters or channels) cut into passes of ``block`` = ``sets`` PE sets x
    ``per_pe`` items; a last, partial pass spreads its items over all the sets.

    Returns (passes, sum over passes of items per PE, sum over passes of sets used).
    """
    full = np.floor(np.divide(total, block))
    rest = total - full * block
    rest_pe = np.ceil(rest / sets)
    rest_sets = np.where(rest > 0, np.ceil(rest / np.maximum(rest_pe, 1)), 0)
    return full + (rest > 0), full * per_pe + rest_pe, full * sets + rest_sets


def _fold_counts(s: Shape, m, p, t, q, r) -> dict[str, Any]:
    """How the filters (per block of m ofmap channels) and channels fold into passes."""
    mb = np.ceil(s.M / m)
    full = _folds(m, p * t, t, p)
    last = _folds(s.M - (mb - 1) * m, p * t, t, p)
    groups, sum_p, sets_t = ((mb - 1) * a + b for a, b in zip(full, last))
    chunks, sum_q, sets_r = _folds(s.C, q * r, r, q)
    return dict(
        mb=mb, groups=groups, sum_p=sum_p, sets_t=sets_t, chunks=chunks, sum_q=sum_q, sets_r=sets_r
    )


def _accesses(
    s: Shape,
    hw: Hardware,
    f: dict[str, Any],
    c: MappingABC[str, np.ndarray],
    nb,
    strips,
    dens: tuple[float, float, float],
) -> dict[tuple[str, str], np.ndarray]:
    """Accesses per (data type, level) for one group, in 16-bit words (see the module doc)."""
    d_in, d_out, d_w = dens
    paper = hw.estimation == "paper"
    eff = d_in * d_w if paper else 1.0  # the RF accesses' share that happen (see module doc)
    outputs = s.N * s.M * s.E * s.F
    macs = outputs * s.C * s.R * s.S
    filters = s.M * s.C * s.R * s.S
    ones = np.ones(np.shape(nb))
    loads = nb * strips * filters  # filter words all passes load from the GLB
    filter_dram = filters if filters <= hw.glb_filter_words else loads
    return {
        ("ifmaps", "dram"): (
            s.N * s.C * f["mb"] * c["rows_real"] * s.W_real * rlc_ratio(d_in, hw.rlc)
        ),
        ("ifmaps", "glb"): s.N * s.C * f["groups"] * c["rows_pad"] * s.W,
        ("ifmaps", "noc"): s.N * s.C * s.R * s.E * s.W * f["sets_t"],
        ("ifmaps", "rf"): macs * eff * ones,
        ("weights", "dram"): filter_dram * (d_w if paper else rlc_ratio(d_w, hw.rlc)) * ones,
        ("weights", "glb"): loads,
        ("weights", "noc"): nb * s.E * filters,
        ("weights", "rf"): macs * (eff if paper else d_in) * ones,
        ("psums", "dram"): outputs * rlc_ratio(d_out, hw.rlc) * ones,
        ("psums", "glb"): 2 * (f["chunks"] - 1) * outputs,
        ("psums", "noc"): (s.R * f["sets_r"] - f["chunks"]) * outputs,
        ("psums", "rf"): 2 * (macs - s.R * f["sets_r"] * outputs) * eff,
    }


def evaluate(
    s: Shape, hw: Hardware, c: MappingABC[str, np.ndarray], dens: tuple[float, float, float]
) -> dict[str, Any]:
    """Counts for arrays of candidate mappings ``c`` (keys ``m n e p q r t`` and the strips'
    ``rows_pad``/``rows_real`` from :func:`strip_rows`), for all ``G`` groups.

    ``dens`` is the (ifmap, ofmap, weight) density. Returns arrays keyed like :class:`Plan`.
    """
    m, n, e, p, q, r, t = (np.asarray(c[k], dtype=float) for k in "mnepqrt")
    nb, strips = np.ceil(s.N / n), np.ceil(s.E / e)
    f = _fold_counts(s, m, p, t, q, r)
    acc = {k: v * s.G for k, v in _accesses(s, hw, f, c, nb, strips, dens).items()}
    macs_dense = s.N * s.M * s.E * s.F * s.C * s.R * s.S * s.G
    compute = s.N * f["sum_p"] * f["sum_q"] * strips * s.S * s.F * s.G
    # A pass cannot run faster than its GLB-array paths carry its psums out (the GON) or
    # its ifmaps in (the ifmap GIN, one value a cycle, multicast to the sets that share it).
    psum_rate = t * e / (q * s.S * hw.bus_words)
    ifmap_rate = r * (s.U * (e - 1) + s.R) * s.W / (p * s.S * s.F * hw.ifmap_bus_words)
    stretch = np.maximum(1.0, np.maximum(psum_rate, ifmap_rate))
    fill = acc[("weights", "glb")] / hw.bus_words  # filter-spad fills, not overlapped
    # Each psum a PE passes up is first added to the one from below, one more cycle of its
    # single adder after the q*S MACs of that output position.
    add = 1 + 1 / (q * s.S)
    e_mac, e_rf, e_noc, e_glb, e_dram = hw.energy
    per_level = {"dram": e_dram, "glb": e_glb, "noc": e_noc, "rf": e_rf}
    macs = macs_dense * dens[0] * (dens[2] if hw.estimation == "paper" else 1.0)
    energy = macs * e_mac + sum(v * per_level[k[1]] for k, v in acc.items())
    return dict(
        access=acc,
        compute_cycles=compute,
        cycles=compute * add * stretch + fill,
        passes=nb * f["groups"] * strips * f["chunks"] * s.G,
        active_pes=s.R * e * r * t,
        macs=macs,
        macs_dense=macs_dense,
        energy=energy,
    )


def _banks(words, hw: Hardware):
    return _ceil(words, hw.bank_words)


def check(s: Shape, mp: Mapping, hw: Hardware) -> str | None:
    """None if ``mp`` fits the scratchpads, the array and the GLB; else why not."""
    m, n, e, p, q, r, t = (getattr(mp, k) for k in "mnepqrt")
    if min(s.N, s.C, s.M, s.E, s.F, s.R, s.S, s.U) < 1:
        return (
            f"the layer has an empty dimension (N={s.N}, C={s.C}, M={s.M}, E={s.E}, "
            f"F={s.F}, R={s.R}, S={s.S})"
        )
    if min(m, n, e, p, q, r, t) < 1 or n > s.N or e > s.E or p > s.M or q > s.C:
        return "parameters must be positive, with n <= N, e <= E, p <= M and q <= C"
    if t > _ceil(s.M, p) or r > _ceil(s.C, q):
        return f"t = {t} or r = {r} sets more than the filters (M/p) or channels (C/q) fill"
    if p * q * s.S > hw.filter_spad:
        return f"filter spad: p*q*S = {p * q * s.S} > {hw.filter_spad}"
    if q * s.S > hw.ifmap_spad:
        return f"ifmap spad: q*S = {q * s.S} > {hw.ifmap_spad}"
    if p > hw.psum_spad:
        return f"psum spad: p = {p} > {hw.psum_spad}"
    if r * t > max_sets(s.R, e, hw):
        return f"array: {r * t} sets of {s.R}x{e} PEs do not fit {hw.rows}x{hw.cols}"
    if r > vertical_sets(s.R, e, hw):
        return (
            f"r = {r} sets of different channels: only {vertical_sets(s.R, e, hw)} sets of "
            f"{s.R}x{e} PEs stack in one column, where their psums add up"
        )
    if (m % (p * t) and m != s.M) or m > _ceil(s.M, p * t) * p * t:
        return f"m = {m} must be M or a multiple of p*t = {p * t}, at most M rounded up to one"
    banks = _banks(n * q * r * (s.U * (e - 1) + s.R) * s.W, hw) + _banks(n * m * e * s.F, hw)
    if banks > hw.glb_banks:
        return f"GLB: the ifmap and psum blocks need {banks} banks > {hw.glb_banks}"
    if p * t * q * r * s.R * s.S > hw.glb_filter_words:
        return f"filter GLB: a pass needs {p * t * q * r * s.R * s.S} words > {hw.glb_filter_words}"
    return None


def plan_of(s: Shape, hw: Hardware, mp: Mapping, dens: tuple[float, float, float]) -> Plan:
    """The counts of one given mapping (check it with :func:`check` first)."""
    rows_pad, rows_real = strip_rows(s, mp.e)
    c = {k: np.array([v]) for k, v in mp.as_dict().items()}
    c.update(rows_pad=np.array([rows_pad]), rows_real=np.array([rows_real]))
    return _plan(evaluate(s, hw, c, dens), 0, mp)


def _plan(ev: dict[str, Any], i: int, mp: Mapping) -> Plan:
    def pick(a) -> float:
        a = np.asarray(a)
        return float(a.reshape(-1)[i] if a.ndim else a)

    access = {k: pick(v) for k, v in ev["access"].items()}
    return Plan(
        mapping=mp,
        active_pes=int(pick(ev["active_pes"])),
        passes=int(pick(ev["passes"])),
        compute_cycles=pick(ev["compute_cycles"]),
        cycles=pick(ev["cycles"]),
        access=access,
        dram_words={d: access[(d, "dram")] for d in DTYPES},
        macs=pick(ev["macs"]),
        macs_dense=pick(ev["macs_dense"]),
        energy=pick(ev["energy"]),
    )


def _divisors(n: int, most: int) -> list[int]:
    """Divisors of n up to ``most``; where there are many, the largest one below each power
    of two. Trial division stops at ``most``, so a batch of 10**12 is as quick as a small one."""
    ds = [d for d in range(1, min(n, most) + 1) if n % d == 0]
    if len(ds) <= 12:
        return ds
    return sorted({max(d for d in ds if d <= 2**k) for k in range(ds[-1].bit_length())} | {ds[-1]})


def _widths(total: int, most: int) -> list[int]:
    """The narrowest piece width for each number of pieces ``total`` items can be cut
    into, up to width ``most``: ``ceil(total/k)`` over all ``k``, found from the widths
    (``w`` gives ``ceil(total/w)`` pieces), so ``total`` may be huge."""
    return sorted({_ceil(total, _ceil(total, w)) for w in range(1, min(total, most) + 1)})


def _grid(s: Shape, hw: Hardware) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, q, r) triples that fit the spads. For each q, r runs over the smallest value for
    each channel-chunk count ceil(C/(q*r)): a larger r with the same count only leaves
    fewer PE sets for filters."""
    out = []
    for q in range(1, min(s.C, hw.ifmap_spad // s.S) + 1):
        p = np.arange(1, min(hw.psum_spad, s.M, hw.filter_spad // (q * s.S)) + 1)
        rs = np.array(_widths(_ceil(s.C, q), hw.rows * hw.cols), dtype=int)
        if p.size and rs.size:
            out.append((np.repeat(p, rs.size), np.full(p.size * rs.size, q), np.tile(rs, p.size)))
    if not out:
        return (np.zeros(0, dtype=int),) * 3
    return tuple(np.concatenate(a) for a in zip(*out))


def candidates(s: Shape, hw: Hardware) -> dict[str, np.ndarray]:
    """The mappings the search tries: (n, e, p, q, r) and, for each, the largest t and then
    the largest m that the array and the GLB allow.

    Pruning: e is the narrowest width for each strip count; r the smallest for each
    channel-chunk count; t the most sets that fit (more filter sets never cost energy); m
    as large as the GLB allows (fewest ifmap re-reads), then evened out over the blocks it
    needs; n divides N (for large N, a divisor near each power of two) and is at most the
    words of the GLB's banks (a larger batch group never fits them). Against exhaustive
    enumeration on small layers this keeps the least-energy mapping; the least-EDP one can
    be missed by a fraction of a percent (a larger r with the same chunk count can even out
    the last chunk and save cycles).
    """
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (*"mnepqrt", "rows_pad", "rows_real")}
    if check(s, Mapping(1, 1, 1, 1, 1, 1, 1), hw) is not None:
        # The smallest mapping needs the least of every resource: if it does not fit, none
        # does; and the sizes that make it fail (rows wider than the GLB) would overflow the
        # int64 arithmetic below.
        return {k: np.zeros(0, dtype=int) for k in cols}
    p_all, q_all, r_all = _grid(s, hw)
    batches = _divisors(s.N, hw.glb_banks * hw.bank_words)
    for e in _widths(s.E, hw.cols * (hw.rows // s.R)):  # wider sets than this do not fit the array
        sets = max_sets(s.R, e, hw)
        rows_pad, rows_real = strip_rows(s, e)
        fit = r_all <= min(sets, vertical_sets(s.R, e, hw))
        p, q, r = p_all[fit], q_all[fit], r_all[fit]
        for n in batches:
            ifmap_banks = _banks(n * q * r * (s.U * (e - 1) + s.R) * s.W, hw)
            free = (hw.glb_banks - ifmap_banks) * hw.bank_words
            t = np.minimum.reduce(
                [
                    sets // r,
                    _ceil(s.M, p),
                    hw.glb_filter_words // (p * q * r * s.R * s.S),
                    free // (n * p * e * s.F),
                ]
            )
            ok = t >= 1
            pp, qq, rr, tt, ff = p[ok], q[ok], r[ok], t[ok], free[ok]
            pt = pp * tt
            m = np.minimum(ff // (n * e * s.F) // pt, _ceil(s.M, pt)) * pt
            m = pt * _ceil(_ceil(s.M, pt), _ceil(s.M, m))  # same block count, blocks evened out
            m = np.minimum(m, s.M)  # one block: all M filters
            for k, v in zip("mnepqrt", (m, n, e, pp, qq, rr, tt)):
                cols[k].append(np.broadcast_to(v, pp.shape))
            cols["rows_pad"].append(np.full(pp.shape, rows_pad))
            cols["rows_real"].append(np.full(pp.shape, rows_real))
    return {k: np.concatenate(v) if v else np.zeros(0, dtype=int) for k, v in cols.items()}


def search(
    s: Shape, hw: Hardware, dens: tuple[float, float, float], objective: str = "edp"
) -> Plan | None:
    """The feasible mapping that minimises ``objective`` or None if none fits.

    ``"energy"``: least energy, ties broken by fewest cycles. ``"edp"``: least energy x
    cycles, ties broken by least energy.
    """
    c = candidates(s, hw)
    if c["m"].size == 0:
        return None
    ev = evaluate(s, hw, c, dens)
    if objective == "energy":
        i = int(np.lexsort((ev["cycles"], ev["energy"]))[0])
    elif objective == "edp":
        i = int(np.lexsort((ev["energy"], ev["energy"] * ev["cycles"]))[0])
    else:
        raise ValueError(f"unknown mapper objective {objective!r}: use 'energy' or 'edp'")
    return _plan(ev, i, Mapping(*(int(c[k][i]) for k in "mnepqrt")))
