"""TPU v1 (Jouppi et al., ISCA 2017): an int8 weight-stationary systolic array fed by DDR3.

Symbols (``targets/tpu/tpu.toml``): ``A×A`` the matrix unit (256×256), ``f`` its clock
(700 MHz), ``BW`` the Weight Memory bandwidth (34 GB/s), ``D`` the weight FIFO depth
(4 tiles), ``shift`` the cycles to shift a tile into the array (256), ``fill`` the cycles a
wavefront takes to cross the array (256), ``s`` the speed (1 for 8×8-bit operands, 1/2 for
8×16, 1/4 for 16×16), ``R_pass`` the rows one accumulator pass holds (4096 entries, halved
for double buffering: 2048, the size the paper gives for running at the roofline knee).

Matrix layers (Gemm, MatMul, Conv and their QLinear/Integer forms):

1. Lowering. Gemm/MatMul: ``rows = N`` (batch dims folded in), ``K = C``, ``Ncol = M``; a
   constant first operand (``W·X``) is multiplied as ``Xᵀ·Wᵀ``, and a MatMul whose weight
   carries the batch dims is one multiply per batch entry. Conv as im2col, done by the
   Convolve instruction's addressing (not materialised): ``rows = B·P·Q``,
   ``K = C·R·S/g``, ``Ncol = M/g`` for each of ``g`` groups. Weights are dense: zeros
   save nothing (the paper: "designed for dense matrices").
2. Tiles. ``T = g·ceil(K/A)·ceil(Ncol/A)``; a partial tile costs a whole one (the paper's
   600×600 matrix takes 9 steps). Groups that each fit in one tile are packed
   block-diagonally, ``min(A//K, A//Ncol)`` per tile (assumption: the paper is silent).
3. Passes. ``c = ceil(rows/R_pass)`` accumulator passes of ``r_j`` rows (split evenly);
   each pass streams every tile again: weights live in DDR3, the FIFO holds only D tiles.
4. Matrix unit. A MatrixMultiply of ``r`` rows takes ``r`` pipelined cycles (``r/s`` at
   reduced speed); the next tile shifts into the array's second weight buffer meanwhile,
   so a tile costs ``max(ceil(r_j/s), shift)`` cycles: ``t_mxu = T·Σ_j max(ceil(r_j/s), shift)/f``.
5. Drain. The next layer reads this one's output from the Unified Buffer only after it has
   left the array and passed through Activate (the paper's "delay slot"):
   ``t_drain = (fill + r_last)/f``, Activate handling one 256-wide row per cycle. Tiles of
   one layer pipeline through the array without a drain between them.
6. Weights. Bytes streamed ``W = c·T·A²·max(8, b_w)/8``, ``t_w = W/BW``; one tile loads in
   ``t_tile = A²·max(8, b_w)/8/BW`` (1.93 µs at int8).
7. Overlap. Read_Weights is decoupled from MatrixMultiply through the FIFO, so the layer
   takes the longer of the matrix unit's path and the weight memory's path::

       latency = max(t_mxu + t_drain,  t_w + max(0, t_drain − D·t_tile)) + t_spill

   During the drain the weight memory keeps loading the next layer's tiles until the
   D-deep FIFO is full, hence the second term. ``t_spill = max(0, in + out − UB)/host_link``
   charges activations that do not fit in the 24 MiB Unified Buffer a round trip over PCIe
   (assumption). Exact for runs of layers in one regime (a layer's tiles are uniform); not
   charged: the graph's first tile load (2 µs), host transfers (paper Table 5), RAW stalls
   beyond the drain.
8. Energy. ``E = latency·(P_idle + (P_busy − P_idle)·u)`` with ``u = T·Σ_j ceil(r_j/s)/f /
   latency``, the fraction of time rows stream through the array (28 W idle, 40 W busy).

Recurrent ops (LSTM, GRU, RNN) are the input projection (``rows = T·B``, ``K = input``,
``Ncol = gates·hidden``) plus ``T`` dependent steps (``rows = B``, ``K = hidden``) per
direction, each a matrix layer as above; their gate functions run in Activate.

Vector unit. Activation functions (ReLU, sigmoid, tanh, ...), element-wise arithmetic,
batch-norm affines, (re)quantization and pooling run in Activate, 256 values per cycle:
``ceil(max(in, out elements)/256)/f`` at idle power; so does data movement (Concat,
Transpose, ...) through the 256-wide paths. Applied to the output of the layer that
produced it, when it is that output's only reader, such a node is fused into that layer's
Activate pass and costs nothing more. DequantizeLinear is free (int8 stays in the Unified
Buffer; its scale folds into the consumer's requantization), so are reshapes. Assumption:
the paper names ReLU and sigmoid "and so on"; this model takes one-input functions and
element-wise +, −, ×, max, min, and sends Softmax, Exp, Div, reductions and normalisations
other than batch-norm to the host.

Roofline. Operations count 2 per MAC (92 TOPS = 65536·2·0.7 GHz); the paper's operational
intensity (Table 1) counts one op per MAC per weight byte, so ``roof = min(2·A²·f,
2·I·BW)`` with ``I`` = MACs per weight byte, ridge ``A²·f/BW`` = 1349. Since ``latency ≥
t_mxu ≥ MACs/(A²·f)`` and ``latency ≥ t_w ≥ weight bytes/BW``, no layer is above the roof.

Legality. Float operands (float32, float16, ...) or integers wider than 16 bits are not
legal on the TPU: :meth:`TPU.supports` says so and the base prices the node on the host.
A :class:`Layer` alone carries only bit widths (16-bit reads as int16); priced from a
graph, element types are read too, and a vector node is legal when its inputs come from
the TPU even if the graph keeps them in float (a QDQ graph's Relu). :meth:`TPU.check_legal`
lists the nodes that would leave the TPU, for a compiler's strict mode.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.workload import Layer, Workload, analyze
from hwcc.targets.base import Cost, CostContext, GraphCost, Target, register_family
from hwcc.targets.tpu.payload import write_tpu_payload
from hwcc.targets.tpu.placement import (
    ACTIVATE,
    DTYPE,
    FREE,
    FUSED,
    MATRIX,
    NO_WEIGHTS,
    ON_CHIP,
    RECURRENT,
    VECTOR,
    WEIGHT_FIRST,
    flag,
    placed,
)

__all__ = ["TPU"]

_PARAMS = (
    "clock_hz",
    "array_rows",
    "array_cols",
    "tile_shift_cycles",
    "pipeline_fill_cycles",
    "weight_fifo_tiles",
    "weight_bandwidth_Bps",
    "accumulator_entries",
    "accumulator_double_buffered",
    "unified_buffer_bytes",
    "host_link_Bps",
    "vector_lanes",
    "mixed_8_16_speed",
    "both_16_speed",
    "power_idle_w",
    "power_busy_w",
)


@register_family("tpu")
class TPU(Target):
    """The TPU v1 cost model; the equations are in the module docstring."""

    def __init__(self, name: str, spec: dict[str, Any], source: Any = None):
        super().__init__(name, spec, source)
        missing = [k for k in _PARAMS if k not in self.params]
        if missing:
            raise HwccError(
                f"target {name}: [params] lacks {', '.join(missing)}",
                "copy them from targets/tpu/tpu.toml",
            )
        p = self.params
        self.clock = float(p["clock_hz"])
        self.rows, self.cols = int(p["array_rows"]), int(p["array_cols"])
        self.shift, self.fill = int(p["tile_shift_cycles"]), int(p["pipeline_fill_cycles"])
        self.fifo, self.bandwidth = int(p["weight_fifo_tiles"]), float(p["weight_bandwidth_Bps"])
        self.pass_rows = int(p["accumulator_entries"]) // (
            2 if p["accumulator_double_buffered"] else 1
        )
        self.ub_bytes, self.host_link = float(p["unified_buffer_bytes"]), float(p["host_link_Bps"])
        self.lanes = int(p["vector_lanes"])
        self.speeds = (1.0, float(p["mixed_8_16_speed"]), float(p["both_16_speed"]))
        self.p_idle, self.p_busy = float(p["power_idle_w"]), float(p["power_busy_w"])

    # -- roofline ----------------------------------------------------------------------
    @property
    def peak_ops_per_s(self) -> float:
        """Peak operations per second, 2 per MAC (92 TOPS for the TPU v1)."""
        return 2.0 * self.rows * self.cols * self.clock

    @property
    def ridge_macs_per_byte(self) -> float:
        """Operational intensity (MACs per weight byte) where the roofline bends (1349)."""
        return self.rows * self.cols * self.clock / self.bandwidth

    def roofline_ops_per_s(self, macs_per_weight_byte: float) -> float:
        """The roof at an intensity counted as in the paper's Table 1 (one op per MAC per byte)."""
        return min(self.peak_ops_per_s, 2.0 * macs_per_weight_byte * self.bandwidth)

    # -- legality ----------------------------------------------------------------------
    def supports(self, layer: Layer) -> str | None:
        """None if the TPU runs ``layer``; else why not (the base then prices it on the host)."""
        if not layer.known:
            return layer.reason
        if layer.kind == "constant":
            return None
        if layer.kind in MATRIX + RECURRENT:
            if not layer.params or layer.weight_bits is None or NO_WEIGHTS in layer.flags:
                return (
                    f"{layer.op_type} of two activations: the matrix unit takes its weights "
                    "only from Weight Memory"
                )
            return self._operand_reason(layer, max(layer.weight_bits, layer.act_bits or 8))
        if layer.kind == "data_movement":
            if layer.params:
                return f"{layer.op_type} of a constant table: embedding lookups run on the host"
        elif layer.kind == "conv_transpose":
            return "ConvTranspose is not lowered to the matrix unit by this model"
        elif layer.kind not in VECTOR or layer.op_type not in ACTIVATE:
            return (
                f"{layer.op_type} is not an Activate function of the TPU v1 "
                "(activations, element-wise arithmetic, pooling)"
            )
        if ON_CHIP in layer.flags:
            return None
        return self._operand_reason(layer, layer.act_bits or 8)

    @staticmethod
    def _operand_reason(layer: Layer, bits: int) -> str | None:
        dtype = flag(layer, DTYPE) or (
            None if bits <= 16 else "float64" if bits > 32 else "float32"
        )
        return None if dtype is None else f"{dtype} is not legal on the TPU: quantize to int8"

    def check_legal(self, graph: Graph) -> list[str]:
        """Every node of ``graph`` the TPU cannot run, as ``"name (op): reason"``; [] if none."""
        work = analyze(graph)
        return [
            f"{x.name} ({x.op_type}): {why}"
            for x in placed(graph, work, self.supports)
            if x.kind != "constant" and (why := self.supports(x)) is not None
        ]

    # -- pricing -----------------------------------------------------------------------
    def cost(self, graph: Graph | Workload, ctx: CostContext | None = None) -> GraphCost:
        """Price ``graph``; from a Graph, element types and Activate fusion are taken into account.

        A bare :class:`Workload` has no edges: each vector node is then priced on its own
        and a 16-bit operand counts as int16.
        """
        if isinstance(graph, Workload):
            return super().cost(graph, ctx)
        ctx = ctx or CostContext()
        if ctx.batch < 1:
            raise HwccError(f"batch must be at least 1, got {ctx.batch}")
        flat = self.resolved(graph, ctx)  # an If is priced as the branch it takes
        work = self.workload(flat.graph, ctx)
        priced = super().cost(
            Workload(placed(flat.graph, work, self.supports), work.activation_bytes, work.name),
            ctx,
        )
        priced.notes = list(flat.notes)
        return priced

    def cost_layer(self, layer: Layer, ctx: CostContext) -> Cost:
        """The cost of one supported layer, already scaled to ``ctx.batch``."""
        if layer.kind in MATRIX:
            rows, k, ncol, g = self._lowered(layer)
            run = self._matmul(rows, k, ncol, g, layer.weight_bits, layer.act_bits or 8)
            conv = layer.kind not in ("gemm", "matmul")
            run["spill_s"] = self._spill(
                layer,
                layer.N * layer.C * layer.H * layer.W if conv else rows * k * g,
                rows * ncol * g,
            )
            return self._priced(run, f"{run['tiles']} tiles x {run['passes']} pass(es)")
        if layer.kind in RECURRENT:
            return self._priced(*self._recurrent(layer))
        if layer.kind == "constant" or layer.op_type in FREE:
            return Cost(0.0, 0.0, {}, "free: stays in the Unified Buffer")
        owner = flag(layer, FUSED)
        if owner is not None:
            return Cost(0.0, 0.0, {}, f"in the Activate pass of {owner}")
        return self._vector(layer)

    @staticmethod
    def _lowered(layer: Layer) -> tuple[int, int, int, int]:
        """(rows, K, Ncol, groups) of the matrix multiply a layer lowers to."""
        if layer.kind in ("gemm", "matmul"):
            if WEIGHT_FIRST in layer.flags:
                return layer.M, layer.C, layer.N, 1
            # A batched MatMul whose weight has the batch dims too: one matrix per batch entry.
            g = max(1, layer.params // (layer.C * layer.M)) if layer.kind == "matmul" else 1
            return layer.N // g, layer.C, layer.M, g
        g = layer.groups
        return layer.N * layer.P * layer.Q, layer.C // g * layer.R * layer.S, layer.M // g, g

    def _tiles(self, k: int, ncol: int, groups: int) -> int:
        kt, nt = math.ceil(k / self.rows), math.ceil(ncol / self.cols)
        if groups > 1 and kt == nt == 1:
            return math.ceil(groups / min(self.rows // k, self.cols // ncol))
        return groups * kt * nt

    def _speed(self, weight_bits: int, act_bits: int) -> float:
        return self.speeds[(weight_bits > 8) + (act_bits > 8)]

    def _matmul(
        self, rows: int, k: int, ncol: int, groups: int, weight_bits: int, act_bits: int
    ) -> dict:
        """Steps 2-7 for one ``rows×K · K×Ncol`` multiply (per group): times and counts."""
        s, tiles = self._speed(weight_bits, act_bits), self._tiles(k, ncol, groups)
        passes = math.ceil(rows / self.pass_rows)
        small, big = divmod(rows, passes)  # ``big`` passes carry small + 1 rows, the last one small
        cycles = {r: math.ceil(r / s) for r in (small + 1, small)}
        active = tiles * (big * cycles[small + 1] + (passes - big) * cycles[small])
        busy = tiles * (
            big * max(cycles[small + 1], self.shift)
            + (passes - big) * max(cycles[small], self.shift)
        )
        tile_bytes = self.rows * self.cols * max(8, weight_bits) / 8
        drain = (self.fill + small) / self.clock
        weights = passes * tiles * tile_bytes / self.bandwidth
        mxu_path = busy / self.clock + drain
        weight_path = weights + max(0.0, drain - self.fifo * tile_bytes / self.bandwidth)
        return {
            "latency_s": max(mxu_path, weight_path),
            "mxu_s": busy / self.clock,
            "weights_s": weights,
            "drain_s": drain,
            "active_s": active / self.clock,
            "tiles": tiles,
            "passes": passes,
            "weight_bytes_streamed": passes * tiles * tile_bytes,
            "weight_bound": float(weight_path > mxu_path),
        }

    def _recurrent(self, layer: Layer) -> tuple[dict, str]:
        """Input projection over all steps, then ``seq_len`` dependent steps, per direction."""
        gh, wb, ab = layer.gates * layer.M, layer.weight_bits, layer.act_bits or 8
        proj = self._matmul(layer.seq_len * layer.N, layer.C, gh, 1, wb, ab)
        step = self._matmul(layer.N, layer.M, gh, 1, wb, ab)
        run = {key: layer.directions * (proj[key] + layer.seq_len * step[key]) for key in proj}
        run["weight_bound"] = float(run["weight_bound"] > 0)
        run["vector_s"] = math.ceil(layer.ops / self.lanes) / self.clock
        run["latency_s"] += run["vector_s"]
        note = (
            f"projection of {proj['tiles']:g} tiles, "
            f"then {layer.seq_len} steps of {step['tiles']:g} tiles"
            + (f", x{layer.directions} directions" if layer.directions > 1 else "")
        )
        return run, note

    def _spill(self, layer: Layer, in_elems: int, out_elems: int) -> float:
        width = 1 if (layer.act_bits or 8) <= 8 else 2
        return max(0.0, (in_elems + out_elems) * width - self.ub_bytes) / self.host_link

    def _priced(self, run: dict, what: str) -> Cost:
        """Step 8: energy from the time and the fraction of it the array streams rows."""
        latency = run.pop("latency_s") + run.get("spill_s", 0.0)
        u = min(1.0, run["active_s"] / latency) if latency else 0.0
        static, dynamic = latency * self.p_idle, latency * (self.p_busy - self.p_idle) * u
        run.update(array_active=u, static_j=static, dynamic_j=dynamic)
        bound = "weight-memory" if run["weight_bound"] else "matrix-unit"
        return Cost(latency, static + dynamic, run, f"{bound}-bound: {what}")

    def _vector(self, layer: Layer) -> Cost:
        """A standalone Activate/pooling pass: 256 values per cycle, at idle power."""
        in_elems = layer.input_bytes * 8 // layer.act_bits if layer.act_bits else 0
        if layer.kind == "pool":
            out_elems = layer.ops // max(1, (layer.R or 1) * (layer.S or 1))
        else:
            out_elems = layer.ops if layer.kind != "data_movement" else in_elems
        t = math.ceil(max(in_elems, out_elems) / self.lanes) / self.clock
        return Cost(
            t,
            t * self.p_idle,
            {"vector_s": t, "static_j": t * self.p_idle},
            f"vector unit: {max(in_elems, out_elems)} values",
        )

    # -- for the artifact ----------------------------------------------------------------
    def multiplies(self, layer: Layer) -> list[tuple[str, int, int, int, int]]:
        """The matrix multiplies ``layer`` lowers to, in order, as ``(what, rows, K, Ncol,
        groups)``: one for a matrix layer (step 1); per direction, the input projection and
        then each step for a recurrent one (as :meth:`cost_layer` prices them)."""
        if layer.kind in MATRIX:
            return [("", *self._lowered(layer))]
        if layer.kind not in RECURRENT:
            return []
        gh, out = layer.gates * layer.M, []
        for d in range(layer.directions):
            out.append((f"dir{d}.projection", layer.seq_len * layer.N, layer.C, gh, 1))
            out += [(f"dir{d}.step{t}", layer.N, layer.M, gh, 1) for t in range(layer.seq_len)]
        return out

    def tiling(self, rows: int, k: int, ncol: int, groups: int) -> tuple[int, list[int]]:
        """``(T, [r_0, r_1, ...])``: the weight tiles of one multiply and the rows of each of its
        ``c`` accumulator passes (steps 2 and 3; the first ``rows mod c`` passes take one more)."""
        passes = max(1, math.ceil(rows / self.pass_rows))
        small, big = divmod(rows, passes)
        return self._tiles(k, ncol, groups), [small + 1] * big + [small] * (passes - big)

    def write_payload(
        self, graph: Graph, folder: Path, ctx: CostContext | None = None
    ) -> dict[str, str]:
        """``tpu/weights.npz`` (the int8 weights of the matrix layers the TPU runs) and
        ``tpu/program.txt`` (their instruction listing; :mod:`hwcc.targets.tpu.payload`)."""
        return write_tpu_payload(self, graph, folder, ctx)
