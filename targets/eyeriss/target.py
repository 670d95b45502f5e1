"""Eyeriss (JSSC 2017): the row-stationary dataflow on a 12x14 PE array.

Each convolution or FC layer is mapped by a search over the JSSC Table II parameters
``(m, n, e, p, q, r, t)`` (:mod:`hwcc.targets.eyeriss.mapper`), cached by layer shape and
densities. The chosen mapping gives every access of every data type at every level; the
model is the ISCA 2016 framework (Eq. 3 and 4) with the Table IV costs relative to a MAC::

    E_norm = MACs_nz * 1 + sum_{type, level} accesses(type, level) * cost(level)
             (MACs_nz: MACs whose ifmap value is not zero; accesses in 16-bit words)
    cost: RF 1, NoC (inter-PE) 2, GLB 6, DRAM 200          energy_j = E_norm * pj_per_mac
    processing_s = (compute cycles * stretch + filter-fill cycles) / 200 MHz
    dram_s       = DRAM bytes / (64 bit * 60 MHz)
    latency_s    = max(processing_s, dram_s)

Assumptions (each documented where it is used):

1. Processing order and reuse: see the mapper's docstring. Psums of ``m`` ofmap channels
   stay in the GLB until all channels are accumulated, so psums never spill to DRAM;
   filters are re-fetched from DRAM for every batch group and ofmap strip (the 8 KB filter
   GLB holds one pass's filters) unless all of a layer's filters fit it.
2. Constraints: ``p*q*S <= 224``, ``q*S <= 12``, ``p <= 24``; ``r*t`` sets of ``R x e``
   PEs tile the array (a set wider than 14 columns is folded into stacked segments), and
   the ``r`` sets of different channels stack in the same columns, where their psums add
   up; the ifmap and psum blocks take whole 4 KB banks, at most 25; one pass's filters
   fit 8 KB.
3. Zero gating: a zero ifmap gates the MAC and the filter-spad read (energy only; the
   JSSC chip gates, it does not skip cycles). The ifmap spad is still read, psums still
   move. Zero weights are not gated (the chip checks ifmaps only). The TOML's
   ``estimation = "paper"`` counts energy as the energy-aware pruning paper does instead
   (only effectual MACs; compressed weights in DRAM; see the mapper);
   :meth:`Eyeriss.with_estimation` gives the other setting of a loaded target.
4. RLC on every DRAM stream: 5-bit run + 16-bit value, 3 pairs per 64-bit word, zeros
   independent at the tensor's density; a stream that would grow is sent raw. Densities:
   ifmap = the layer's ``act_density``; ofmap = the density of the tensor written, i.e.
   the ``act_density`` of its first consumer (past a fused ReLU and layout-only ops; 1.0
   when the graph is not known); weights = ``weight_density``.
5. Latency: one MAC per PE per cycle, and one cycle per psum a PE passes up (adding the
   one from below: assumption, one adder per PE); a pass is stretched when it needs more
   psum words per cycle than the 64-bit GON carries, or more ifmap words than the 16-bit
   ifmap GIN; filter-spad fills (64-bit filter GIN) are not overlapped with MACs. DRAM
   traffic overlaps processing through the GLB ("memory traffic and computation overlap",
   ISSCC 2016), so ``latency_s`` is the larger of the two; both are in the breakdown.
6. Mapper objective: ``edp`` by default. Under this energy model the least-energy mapping
   of AlexNet CONV2 uses 90 PEs and runs 47 % slower than the chip's own Table III mapping
   for 2.8 % less energy; the chip's designers evidently weighed throughput too, so the
   default minimises energy x cycles (the Timeloop mapper's default metric). Set
   ``mapper_objective = "energy"`` for the least-energy mapping.
7. FC layers (Gemm, MatMul with a constant operand) are 1x1 convolutions on a 1x1 ifmap
   (``N`` rows, ``C = K``, ``M`` columns). Grouped convolutions run group by group.
8. A ReLU right after a convolution/FC is free (the chip's ReLU module on the output
   path); a lone ReLU streams its tensor DRAM -> chip -> DRAM. Reshape-like and Concat
   nodes are free (addressing only). Pooling, LRN, softmax and other element-wise ops run
   on the host (the JSSC chip runs the CONV layers; the ISCA paper only sketches pooling).
   Fusion and written densities need the graph: priced from a bare ``Workload``, every
   ReLU is a lone one and every ofmap is written dense.
9. Absolute energy: ``pj_per_mac`` is the one calibrated constant (see ``eyeriss.toml``);
   it makes DRAM 200 x 2.8 pJ = 0.56 nJ per 16-bit word, 2.2 nJ per 64 bits, inside
   Horowitz's 1.3-2.6 nJ.
10. Every value is a 16-bit word on the chip (its fixed-point format), whatever the
    graph's dtype; biases are ignored (negligible, ISCA 2016 Sec. VI-C). Costs are for
    the whole batch (``CostContext.batch`` images).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.workload import Layer, Workload
from hwcc.targets.base import Cost, CostContext, GraphCost, Target, register_family
from hwcc.targets.eyeriss.graph_paths import LAYOUT, STANDARD, output_paths
from hwcc.targets.eyeriss.mapper import (
    DTYPES,
    LEVELS,
    Hardware,
    Plan,
    Shape,
    check,
    plan_of,
    rlc_ratio,
    search,
)
from hwcc.targets.eyeriss.mapper import (
    Mapping as RSMapping,
)
from hwcc.targets.eyeriss.payload import write_eyeriss_payload

__all__ = ["Eyeriss", "EyerissContext", "layer_shape"]

_CONV = ("conv", "grouped_conv", "depthwise_conv")
_FC = ("gemm", "matmul")


@dataclass(frozen=True)
class EyerissContext(CostContext):
    """A :class:`CostContext` with what only the whole graph tells (filled by ``cost``).

    Attributes:
        out_density: layer name -> density of the tensor it writes to DRAM.
        fused: names of ReLU nodes folded into the layer before them.
    """

    out_density: Mapping[str, float] = field(default_factory=dict)
    fused: frozenset[str] = frozenset()


def layer_shape(layer: Layer) -> Shape:
    """One group of a convolution or FC layer in row-stationary terms (batch included)."""
    if layer.kind in _FC:
        return Shape(
            N=layer.N, C=layer.C, M=layer.M, H=1, W=1, R=1, S=1, E=1, F=1, H_real=1, W_real=1
        )
    g = layer.groups
    stride = tuple(layer.stride) or (1, 1)
    U, V = (1, stride[0]) if len(stride) == 1 else stride
    pads = tuple(layer.pads) or (0,) * (2 * len(stride))
    top, left, bottom, right = (0, pads[0], 0, pads[1]) if len(pads) == 2 else pads
    return Shape(
        N=layer.N,
        C=layer.C // g,
        M=layer.M // g,
        H=layer.H + top + bottom,
        W=layer.W + left + right,
        R=layer.R,
        S=layer.S,
        E=layer.P,
        F=layer.Q,
        U=U,
        V=V,
        G=g,
        H_real=layer.H,
        W_real=layer.W,
        pad_top=top,
    )


@register_family("eyeriss")
class Eyeriss(Target):
    """The row-stationary cost model; parameters in ``targets/eyeriss/eyeriss.toml``.

    ``Cost.breakdown`` of a convolution or FC layer holds joules by data type and level,
    ``<type>_<level>_j`` (type: weights, ifmaps, psums; level: dram, glb, noc, rf) and
    ``mac_j``, with their totals by level (``dram_j`` ...) and by type (``weights_j`` ...):
    sum the cells *or* one set of totals, not all ``_j`` keys. Also ``processing_s``,
    ``compute_s`` (MAC cycles only), ``dram_s``, ``dram_bytes`` and ``dram_<type>_bytes``,
    ``active_pes``, ``passes``, ``utilisation`` (MACs per PE-cycle of the 168 PEs) and the
    mapping as ``map_m`` ... ``map_t``. ``Cost.note`` shows the mapping compactly.
    """

    primary_metric = "energy_j"

    def __init__(self, name: str, spec: Mapping[str, Any], source=None):
        super().__init__(name, spec, source)
        p = self.params
        try:
            self.hw = Hardware.from_params(p)
            self.clock_hz = float(p["clock_hz"])
            self.link_bytes_per_s = p["link_bits"] / 8 * float(p["link_clock_hz"])
            self.pj = float(p["pj_per_mac"])
            self.word_bytes = p["word_bits"] // 8
            self.vstrides = tuple(p["vertical_strides"])
            self.max_hstride = int(p["max_horizontal_stride"])
            self.objective = p.get("mapper_objective", "edp")
        except KeyError as e:
            raise HwccError(f"target {name}: parameter {e} missing from [params]") from None
        if self.objective not in ("edp", "energy"):
            raise HwccError(
                f"target {name}: mapper_objective must be 'edp' or 'energy', not {self.objective!r}"
            )
        if self.hw.estimation not in ("chip", "paper"):
            raise HwccError(
                f"target {name}: estimation must be 'chip' or 'paper', not {self.hw.estimation!r}",
                "set estimation in the [params] table of the target's TOML file",
            )
        self._plans: dict[tuple, Plan | None] = {}

    @property
    def estimation(self) -> str:
        """How energy is counted: ``"chip"`` or ``"paper"`` (see the mapper's docstring)."""
        return self.hw.estimation

    def with_estimation(self, estimation: str) -> Eyeriss:
        """This target with its ``estimation`` setting replaced (same name, same host)."""
        spec = {**self.spec, "params": {**self.params, "estimation": estimation}}
        return type(self)(self.name, spec, self.source)

    # -- what runs here ----------------------------------------------------------------
    def supports(self, layer: Layer) -> str | None:
        if not layer.known:
            return f"not priced: {layer.reason}"
        if layer.op_type == "Relu" and layer.domain in STANDARD:
            return None
        if layer.kind == "data_movement":
            return (
                None
                if layer.op_type in LAYOUT
                else f"{layer.op_type} moves data Eyeriss has no unit for"
            )
        if layer.kind in _FC:
            if layer.params < layer.C * layer.M:  # a constant bias alone is not a filter
                return (
                    f"{layer.op_type} of two activations: Eyeriss needs a constant filter operand"
                )
            return None
        if layer.kind not in _CONV:
            return (
                f"{layer.kind} ({layer.op_type}) runs on the host: "
                "the Eyeriss chip runs convolutions and FC layers"
            )
        return self._conv_reason(layer) or self._fit_reason(layer)

    def _conv_reason(self, layer: Layer) -> str | None:
        if len(layer.stride) > 2:
            return "3-D convolution: the PE sets are 2-D"
        if layer.dilation and max(layer.dilation) > 1:
            return "dilated convolution is not a row-stationary primitive"
        U, V = (1, layer.stride[0]) if len(layer.stride) == 1 else (tuple(layer.stride) or (1, 1))
        if U not in self.vstrides or not 1 <= V <= self.max_hstride:
            return (
                f"stride {U}x{V}: Eyeriss takes vertical strides {self.vstrides} "
                f"and horizontal 1-{self.max_hstride}"
            )
        if layer.R > self.hw.rows:
            return f"filter height {layer.R} > {self.hw.rows} PE rows"
        if layer.S > self.hw.ifmap_spad:
            return f"filter width {layer.S} > the {self.hw.ifmap_spad}-entry ifmap spad"
        return None

    def _fit_reason(self, layer: Layer) -> str | None:
        # The smallest mapping needs the least of every resource: if it does not fit, none does.
        reason = check(layer_shape(layer), RSMapping(1, 1, 1, 1, 1, 1, 1), self.hw)
        return None if reason is None else f"no row-stationary mapping fits: {reason}"

    # -- pricing ---------------------------------------------------------------------------
    def cost(self, graph: Graph | Workload, ctx: CostContext | None = None) -> GraphCost:
        """As :meth:`Target.cost`, after finding ReLUs to fuse and the density of each
        layer's written output, which only the graph tells."""
        ctx = ctx or CostContext()
        if isinstance(graph, Workload):
            return super().cost(graph, ctx)
        flat = self.resolved(graph, ctx)  # an If is priced as the branch it takes
        work = self.workload(flat.graph, ctx)
        priced = super().cost(work, self.graph_context(flat.graph, work, ctx))
        priced.notes = list(flat.notes)
        return priced

    def graph_context(self, graph: Graph, work: Workload, ctx: CostContext) -> EyerissContext:
        """``ctx`` with the fused ReLUs and written densities of ``graph`` (analysed as
        ``work``)."""
        runs_here = {
            x.name for x in work.layers if x.kind in _CONV + _FC and self.supports(x) is None
        }
        out_density, fused = output_paths(graph, work, runs_here)
        given = getattr(ctx, "out_density", {})
        return EyerissContext(
            batch=ctx.batch,
            act_density=ctx.act_density,
            out_density={**out_density, **given},
            fused=frozenset(fused),
        )

    def cost_layer(self, layer: Layer, ctx: CostContext) -> Cost:
        if layer.kind == "data_movement":
            return Cost(0.0, 0.0, note="addressing only")
        if layer.op_type == "Relu":
            if layer.name in getattr(ctx, "fused", ()):
                return Cost(0.0, 0.0, note="fused: ReLU module on the output path")
            return self._lone_relu(layer, ctx)
        plan = self._plan(layer, self._densities(layer, ctx))
        if plan is None:
            raise HwccError(f"no row-stationary mapping fits {layer.name}", "run it on the host")
        return self._price(plan, layer)

    def _densities(self, layer: Layer, ctx: CostContext) -> tuple[float, float, float]:
        out = getattr(ctx, "out_density", {}).get(layer.name, 1.0)
        return (layer.act_density, out, layer.weight_density)

    def _plan(self, layer: Layer, dens: tuple[float, float, float]) -> Plan | None:
        s = layer_shape(layer)
        key = (s, tuple(round(d, 4) for d in dens))
        if key not in self._plans:
            self._plans[key] = search(s, self.hw, key[1], self.objective)
        return self._plans[key]

    def _price(self, plan: Plan, layer: Layer) -> Cost:
        e = dict(zip(("mac", "rf", "noc", "glb", "dram"), self.hw.energy))
        joule = self.pj * 1e-12
        bd: dict[str, float] = {}
        for (dtype, level), n in plan.access.items():
            bd[f"{dtype}_{level}_j"] = n * e[level] * joule
        bd["mac_j"] = plan.macs * e["mac"] * joule
        for level in LEVELS:
            bd[f"{level}_j"] = sum(bd[f"{d}_{level}_j"] for d in DTYPES)
        for dtype in DTYPES:
            bd[f"{dtype}_j"] = sum(bd[f"{dtype}_{level}_j"] for level in LEVELS)
        dram_bytes = sum(plan.dram_words.values()) * self.word_bytes
        processing = plan.cycles / self.clock_hz
        dram_s = dram_bytes / self.link_bytes_per_s
        mp = plan.mapping
        bd.update(
            processing_s=processing,
            compute_s=plan.compute_cycles / self.clock_hz,
            dram_s=dram_s,
            dram_bytes=dram_bytes,
            active_pes=plan.active_pes,
            passes=plan.passes,
            utilisation=plan.macs_dense / (plan.cycles * self.hw.rows * self.hw.cols),
            **{f"dram_{d}_bytes": w * self.word_bytes for d, w in plan.dram_words.items()},
            **{f"map_{k}": v for k, v in mp.as_dict().items()},
        )
        note = " ".join(f"{k}={v}" for k, v in mp.as_dict().items()) + f" · {plan.active_pes} PEs"
        if layer.groups > 1:
            note += f" · {layer.groups} groups"
        if dram_s > processing:
            note += " · DRAM-bound"
        return Cost(max(processing, dram_s), plan.energy * joule, bd, note)

    def _lone_relu(self, layer: Layer, ctx: CostContext) -> Cost:
        words = layer.output_bytes * 8 / (layer.act_bits or 32)  # elements; 16-bit words on chip
        d_out = getattr(ctx, "out_density", {}).get(layer.name, 1.0)
        dram = words * (rlc_ratio(layer.act_density, self.hw.rlc) + rlc_ratio(d_out, self.hw.rlc))
        e = self.hw.energy
        joule = self.pj * 1e-12
        bd = {
            "dram_j": dram * e[4] * joule,
            "glb_j": 2 * words * e[3] * joule,
            "dram_bytes": dram * self.word_bytes,
        }
        seconds = dram * self.word_bytes / self.link_bytes_per_s
        return Cost(
            seconds,
            bd["dram_j"] + bd["glb_j"],
            {**bd, "dram_s": seconds},
            "lone ReLU: DRAM -> ReLU module -> DRAM",
        )

    # -- for the artifact --------------------------------------------------------------
    def mapping_for(self, layer: Layer, ctx: CostContext | None = None) -> dict[str, Any]:
        """The row-stationary mapping of ``layer`` (already scaled to its batch) as plain
        values: the Table II parameters, active PEs, passes, groups, processing cycles."""
        reason = self.supports(layer)
        if reason is None and layer.kind not in _CONV + _FC:
            reason = f"{layer.op_type} has no row-stationary mapping"
        if reason is not None:
            raise HwccError(f"{layer.name}: {reason}")
        plan = self._plan(layer, self._densities(layer, ctx or CostContext()))
        return {
            **plan.mapping.as_dict(),
            "active_pes": plan.active_pes,
            "passes": plan.passes,
            "groups": layer.groups,
            "processing_cycles": plan.cycles,
            "objective": self.objective,
            "estimation": self.estimation,
        }

    def write_payload(
        self, graph: Graph, folder: Path, ctx: CostContext | None = None
    ) -> dict[str, str]:
        """``eyeriss/mapping.json``: each layer's row-stationary mapping and energy by data type
        and level, and where the other nodes run (:mod:`hwcc.targets.eyeriss.payload`)."""
        return write_eyeriss_payload(self, graph, folder, ctx)

    def plan_with(
        self, layer: Layer, mapping: Mapping[str, int], ctx: CostContext | None = None
    ) -> Cost:
        """The cost of ``layer`` under a given mapping (e.g. a published one), bypassing the
        search. Raises HwccError if the mapping does not fit the chip."""
        mp = RSMapping(**{k: int(mapping[k]) for k in "mnepqrt"})
        s = layer_shape(layer)
        reason = check(s, mp, self.hw)
        if reason is not None:
            raise HwccError(f"{layer.name}: mapping {mp.as_dict()} does not fit: {reason}")
        return self._price(
            plan_of(s, self.hw, mp, self._densities(layer, ctx or CostContext())), layer
        )
