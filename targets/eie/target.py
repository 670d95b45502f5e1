"""EIE: the sparse, weight-shared FC engine (Han et al., ISCA 2016), as a cycle model.

EIE runs ``b = ReLU(W a)`` with ``W`` pruned and weight-shared, stored in interleaved CSC
(:mod:`hwcc.formats.sparse`): row ``i`` on PE ``i mod N``, 4-bit codebook index and 4-bit
relative row index per entry, a padding entry per 16 zeros, 16-bit column pointers. Only
non-zero input activations are broadcast; each PE then walks its entries of that column,
one entry per cycle. Parameters come from ``targets/eie/eie.toml`` (each with its source).

Latency, per layer (the equations of the cycle model are in :mod:`.sim`):

1. The weight matrix is the layer's own initializer (``W = Bᵀ`` for ``Gemm``/``MatMul``;
   ``W = B`` with ``transB``; behind a DequantizeLinear, a weight is zero where it equals
   the zero point); a Gemm bias is one more column with activation 1 (Section III-A). The
   entries ``c[p, j]`` each PE ``p`` holds in column ``j`` (padding included) are counted
   on the real zero pattern.
2. The broadcast columns are the non-zeros of the input vector: measured activation
   vectors when given (``cost(..., activations=...)``, see :mod:`hwcc.data.activations`; the
   mean over at most ``max_vectors`` vectors), else a seeded random pattern with exactly
   ``round(act_density · cols)`` non-zeros (density from ``CostContext.act_density``,
   default 1.0).
3. Each pass (:mod:`.plan`: row tiles of 4096 outputs, input pieces of 4096 inputs; weight
   passes only if the entries do not fit the 128 KB sparse-matrix SRAM, the paper's
   capacity) is simulated: per-PE activation queues of depth
   8, one broadcast per cycle, pointer-read and matrix-read stages, 4-stage pipeline; a
   pass lasts at least ``ceil(cols / N)`` cycles, the LNZD scanning N activations a cycle.
   ``compute_s = Σ cycles / f`` per vector, times the layer's vectors (rows × batch: EIE
   has no batching, each vector is one M×V).
4. A layer whose entries do not fit reloads its weights from DRAM once per batch:
   ``reload_s = bits / dram_bandwidth`` (an assumption: EIE publishes no DMA bandwidth).
5. ``theoretical_s = Σ entries / (N · f)``: perfect balance, padding counted as work (the
   paper's Table IV "theoretical time"); ``load_balance_efficiency = theoretical_s /
   compute_s`` (the paper's 1 − bubble cycles / total cycles, Section VI-C).

Energy (the paper's own method, Section VI-B: time × measured power)::

    P = N · P_PE + n_LNZD · P_LNZD     = 64 · 9.157 mW + 21 · 0.023 mW = 586.5 mW
    energy = P · latency + reload_bits / 32 · E_DRAM(32 b)

``P_PE`` is split by module (Table II) in the breakdown; ``n_LNZD`` is the size of the
quadtree of fan-in 4 over ``N`` PEs (16 + 4 + 1 for 64). Per-access energies are not
published for EIE's SRAMs, so none are used.

What runs on EIE: Gemm (``transA = 0``) and MatMul whose weight operand (input B) is a
constant 2-D matrix; the Relu that reads such a layer's output (applied when outputs are
written: zero cycles); Reshape, Flatten, Squeeze, Unsqueeze, Identity and Dropout (free
views). Everything else runs on the declared host, priced there and reported apart.

Assumptions: the activation-SRAM traffic of inputs longer than 4096 (read once per chunk)
and of row tiles (written back once) is not timed; the broadcast network is pipelined
(constant latency, not counted); each layer's SRAM fit is checked on its own (a model's
layers share the SRAM in hardware); the 16-bit pointers are relative to each input
piece's base (the paper's 13-bit row + 3-bit offset address 64 of the 128 KB); the pointer
SRAM (32 KB) does not bound residency, as in the paper's own capacity figure (Table V,
84 M parameters from the sparse-matrix SRAM alone): a layer needing more pointers is
resident with a note (a layer wider than 16 K inputs, e.g. one of ~100 M weights at 4 %,
whose ~100 KB of entries fit); a
workload without its graph (no weights to read) is priced on a seeded random pattern at
the layer's weight density, and says so in the note.

Validation (``tests/targets/test_eie.py``; random weights at Table III's densities, seeded
activations, nothing fitted): actual time within 6 % of Table IV for Alex-6, Alex-7 and
NT-Wd, -13 % for NT-We, and -18 % for Alex-8, a miss: at 25 % density random weights need
no padding, yet the paper's theoretical time for Alex-8 is 19 % above nnz·act/(64·f), so
its real weights place more work per non-zero activation than a uniform pattern does.
Load-balance efficiency is within 7 % of Table IV's theoretical/actual for all five.
"""

from __future__ import annotations

import math
import weakref
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.workload import Layer, Workload
from hwcc.targets.base import Cost, CostContext, GraphCost, Target, register_family
from hwcc.targets.eie.graph_view import FREE, GraphView, view_of
from hwcc.targets.eie.payload import write_eie_payload
from hwcc.targets.eie.plan import Plan, plan_layer
from hwcc.targets.eie.sim import simulate

__all__ = ["EIE"]

_CACHE_SIZE = 64


@dataclass
class _Laid:
    """A cached layout: weak references to the weights it was made from, and its runs."""

    refs: list
    plan: Plan
    cols: int
    bias: bool
    runs: dict[bytes, tuple[int, int, int, int]] = field(default_factory=dict)


@register_family("eie")
class EIE(Target):
    """EIE's PE array: cycle-simulated sparse M×V on the layer's real weights."""

    uses_activation_vectors = True

    def __init__(self, name: str, spec: Mapping[str, Any], source=None):
        super().__init__(name, spec, source)
        p = self.params
        try:
            self.n_pes, self.clock_hz = int(p["num_pes"]), float(p["clock_mhz"]) * 1e6
            self.fifo, self.stages = int(p["fifo_depth"]), int(p["pipeline_stages"])
            self.index_bits, self.z_bits = int(p["index_bits"]), int(p["z_bits"])
            self.pointer_bits = int(p["pointer_bits"])
            self.spmat_bytes, self.pointer_bytes = (
                int(p["spmat_sram_KB"] * 1024),
                int(p["pointer_sram_KB"] * 1024),
            )
            self.regs = int(p["act_regs_per_file"])
            modules = {k: float(v) for k, v in p["module_power_mW"].items()}
            pe_w, lnzd_w = float(p["pe_power_mW"]) * 1e-3, float(p["lnzd_power_mW"]) * 1e-3
            fanin = int(p["lnzd_fanin"])
            self.dram_j_per_bit = float(p["dram_pj_per_32b"]) * 1e-12 / 32
            self.dram_bits_per_s = float(p["dram_bandwidth_GBps"]) * 8e9
            self.seed, self.max_vectors = int(p["seed"]), int(p["max_vectors"])
        except KeyError as e:
            raise HwccError(f"target {name}: missing parameter {e.args[0]!r} in [params]") from None
        if abs(sum(modules.values()) * 1e-3 - pe_w) > 0.01 * pe_w:
            raise HwccError(f"target {name}: module_power_mW does not sum to pe_power_mW")
        # The legal form's k-means codebook, as [legal_form.quantize_kmeans] or through the
        # alias [legal_form.quantize] with mode = "kmeans": its index must fit the chip's.
        for pass_name, shared in self.legal_form.items():
            kmeans = pass_name == "quantize_kmeans" or (
                pass_name == "quantize" and shared.get("mode") == "kmeans"
            )
            if kmeans and shared.get("bits", self.index_bits) > self.index_bits:
                raise HwccError(
                    f"target {name}: legal_form shares weights at {shared['bits']} bits, more "
                    f"than the chip's {self.index_bits}-bit codebook index",
                    "set bits = index_bits",
                )
        # Table II's modules sum to 9.158 mW against a 9.157 mW total (rounding): split the
        # total in their proportions so that the parts add up to it.
        self.module_w = {
            k: pe_w * self.n_pes * v / sum(modules.values()) for k, v in modules.items()
        }
        n, self.n_lnzd = self.n_pes, 0
        while n > 1:  # quadtree levels: 16 + 4 + 1 for 64 PEs
            n = math.ceil(n / fanin)
            self.n_lnzd += n
        self.lnzd_w = lnzd_w * self.n_lnzd
        self.power_w = pe_w * self.n_pes + self.lnzd_w
        self._view: GraphView | None = None
        self._plans: dict[tuple, _Laid] = {}

    # ------------------------------------------------------------------ the contract
    def cost(
        self,
        graph: Graph | Workload,
        ctx: CostContext | None = None,
        *,
        activations: Mapping[str, np.ndarray] | None = None,
    ) -> GraphCost:
        """Price ``graph``; EIE layers read their weights (and ``activations``) from it.

        Args:
            graph: the graph (or an analysed workload, priced on synthetic weights).
            ctx: batch and activation density.
            activations: measured input activations per layer name (from
                :func:`hwcc.data.activations.capture_activations`); they override the density.
                Default: ``ctx.activations``.
        """
        if activations is None and ctx is not None:
            activations = ctx.activations
        previous = self._view
        if isinstance(graph, Graph):  # an If is priced as the branch it takes
            graph = self.resolved(graph, ctx).graph
        self._view = view_of(graph, activations) if isinstance(graph, Graph) else None
        if activations and self._view is None:
            raise HwccError("activations need the graph, not an analysed workload")
        try:
            return super().cost(graph, ctx)
        finally:
            self._view = previous

    def write_payload(
        self, graph: Graph, folder: Path, ctx: CostContext | None = None
    ) -> dict[str, str]:
        """Each FC layer run on EIE in the chip's format, and ``eie/manifest.json``
        (:mod:`hwcc.targets.eie.payload`); ``graph`` holds shared weights (the legal form)."""
        return write_eie_payload(self, graph, folder, ctx)

    def supports(self, layer: Layer) -> str | None:
        if layer.op_type in ("Gemm", "MatMul") and layer.domain in ("", "ai.onnx"):
            if self._view is not None and layer.name in self._view.reasons:
                return self._view.reasons[layer.name]
            return (
                None if layer.known and layer.C and layer.M else f"shapes of {layer.name} unknown"
            )
        if layer.op_type in FREE:
            return None
        if layer.op_type == "Relu":
            if self._view is not None and layer.name in self._view.fused:
                return None
            return "a Relu that does not read an FC layer run on EIE"
        return f"EIE runs FC layers (Gemm/MatMul with constant weights) only, not {layer.op_type}"

    def cost_layer(self, layer: Layer, ctx: CostContext) -> Cost:
        if layer.op_type in FREE:
            return Cost(0.0, 0.0, {}, "free: a view of the same activations")
        if layer.op_type == "Relu":
            return Cost(0.0, 0.0, {}, "fused: applied as the FC layer writes its outputs")
        return self._cost_fc(layer)

    # ------------------------------------------------------------------ FC layers
    def _cost_fc(self, layer: Layer) -> Cost:
        laid, w_note = self._plan(layer)
        plan, cols = laid.plan, laid.cols
        patterns, a_note = self._patterns(layer, cols)
        runs = [self._run(laid, pat) for pat in patterns]
        vectors = layer.N or 1
        mean = lambda i: sum(r[i] for r in runs) / len(runs)  # noqa: E731
        cycles, work, nnz, bcast = mean(0), mean(1), mean(2), mean(3)
        f, N = self.clock_hz, self.n_pes
        compute_s = cycles / f * vectors
        reload_s = plan.reload_bits / self.dram_bits_per_s
        latency = compute_s + reload_s
        dram_j = plan.reload_bits * self.dram_j_per_bit
        theoretical_s = work / (N * f) * vectors
        breakdown = {
            "compute_s": compute_s,
            "reload_s": reload_s,
            "theoretical_s": theoretical_s,
            "ideal_s": nnz / (N * f) * vectors,
            "load_balance_efficiency": theoretical_s / compute_s if compute_s else 1.0,
            "cycles_per_vector": cycles,
            "vectors": vectors,
            "vectors_simulated": len(runs),
            "broadcasts_per_vector": bcast,
            "entries_per_vector": work,
            "macs_per_vector": nnz,
            "padding_per_vector": work - nnz,
            "real_work_fraction": nnz / work if work else 1.0,
            "row_tiles": len(plan.entries),
            "input_chunks": plan.pieces,
            "weight_passes": len(plan.units),
            "sram_fits": float(plan.fits),
            "spmat_bytes_max_pe": plan.spmat_bytes_max,
            "pointer_bytes_pe": plan.pointer_bytes,
            "pointer_sram_fits": float(plan.pointer_fits),
            **{f"{k}_j": w * latency for k, w in self.module_w.items()},
            "lnzd_j": self.lnzd_w * latency,
            "dram_j": dram_j,
        }
        notes = [w_note, a_note]
        if plan.fits and not plan.pointer_fits:
            notes.append(
                f"resident: {plan.spmat_bytes_max / 1024:.0f} of {self.spmat_bytes / 1024:g} KB "
                f"sparse-matrix SRAM per PE; its {plan.pointer_bytes / 1024:.1f} KB of pointers "
                f"exceed the {self.pointer_bytes / 1024:g} KB pointer SRAM, which the paper's "
                f"capacity (Table V) does not count"
            )
        if not plan.fits:
            notes.append(
                f"does not fit: {plan.spmat_bytes_max / 1024:.0f} KB of entries per PE for a "
                f"{self.spmat_bytes / 1024:g} KB sparse-matrix SRAM (pointers "
                f"{plan.pointer_bytes / 1024:.1f} KB, own {self.pointer_bytes / 1024:g} KB SRAM); "
                f"split into {len(plan.units)} weight passes over {len(plan.entries)} row "
                f"tiles, reloaded from DRAM each batch"
            )
        elif len(plan.entries) > 1:
            notes.append(f"{len(plan.entries)} row tiles of {self.regs * N} outputs")
        return Cost(
            latency, self.power_w * latency + dram_j, breakdown, "; ".join(n for n in notes if n)
        )

    def _plan(self, layer: Layer) -> tuple[_Laid, str]:
        """The layout of the layer's weights (cached per weight array)."""
        ref = self._view.weights.get(layer.name) if self._view is not None else None
        if ref is None:
            shape, d = (int(layer.M), int(layer.C)), float(layer.weight_density)
            key: tuple = ("synthetic", shape, d)
            note = f"weights not available: seeded random pattern at weight density {d:.3g}"
        else:
            key, note = ref.key, ""
        arrays = [] if ref is None else [a for a in (ref.b, ref.bias) if a is not None]
        hit = self._plans.get(key)
        if hit is not None and all(r() is a for r, a in zip(hit.refs, arrays)):
            return hit, note
        if ref is None:
            rng = np.random.default_rng((self.seed, shape[0], shape[1]))
            mask, bias = rng.random(shape, dtype=np.float32) < d, None
        else:
            mask, bias = ref.masks()
        full = mask if bias is None else np.concatenate([mask, bias[:, None]], axis=1)
        plan = plan_layer(
            full,
            self.n_pes,
            self.regs,
            self.z_bits,
            self.index_bits + self.z_bits,
            self.pointer_bits,
            self.spmat_bytes,
            self.pointer_bytes,
        )
        laid = _Laid([weakref.ref(a) for a in arrays], plan, mask.shape[1], bias is not None)
        if len(self._plans) >= _CACHE_SIZE:
            self._plans.pop(next(iter(self._plans)))
        self._plans[key] = laid
        return laid, note

    def _patterns(self, layer: Layer, cols: int) -> tuple[list[np.ndarray], str]:
        """Broadcast columns (non-zero input activations) of each simulated vector."""
        acts = self._view.activations.get(layer.name) if self._view is not None else None
        if acts is not None:
            a = np.asarray(acts)
            if a.size == 0 or a.size % cols:
                raise HwccError(
                    f"activations for {layer.name} have {a.size} elements, "
                    f"not a multiple of its {cols} inputs"
                )
            rows = a.reshape(-1, cols)[: self.max_vectors]
            return [np.flatnonzero(r) for r in rows], f"activations: {len(rows)} measured vector(s)"
        d = float(layer.act_density)
        k = int(round(d * cols))
        rng = np.random.default_rng((self.seed, zlib.crc32(layer.name.encode()), cols))
        pattern = np.sort(rng.choice(cols, size=k, replace=False))
        return [pattern], f"activations: seeded pattern at density {d:.3g}"

    def _run(self, laid: _Laid, nz: np.ndarray) -> tuple[int, int, int, int]:
        """``(cycles, entries, non-zeros, broadcasts)`` of one vector over every pass."""
        key = nz.tobytes()
        if key in laid.runs:
            return laid.runs[key]
        plan = laid.plan
        # the bias column: activation 1
        cols = np.concatenate([nz, [laid.cols]]) if laid.bias else nz
        cycles = work = macs = 0
        for t, a, b in plan.units:
            sel = cols[(cols >= a) & (cols < b)]
            r = simulate(plan.entries[t][:, sel], sel - a, self.n_pes, self.fifo, self.stages)
            scan = -(-(b - a) // self.n_pes)  # the LNZD reads n_pes activations per cycle
            cycles, work = cycles + max(r.cycles, scan), work + r.work
            macs += int(plan.nnz[t][:, sel].sum())
        if len(laid.runs) >= _CACHE_SIZE:
            laid.runs.pop(next(iter(laid.runs)))
        laid.runs[key] = out = (cycles, work, macs, len(cols))
        return out
