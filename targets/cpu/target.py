"""This machine's CPU, measured with onnxruntime: lookup tables of fused kernels.

The cost of a graph is predicted the way nn-Meter does it (Zhang et al., MobiSys 2021):
split the graph into the kernels the runtime executes (:mod:`.kernels` replays
onnxruntime's fusions and NCHWc layout), look each kernel up in a table measured on this
machine (:mod:`.table`), and add them up:

    latency = t_session + sum over kernels k of  t_k
    t_k     = cold_k(D_k) + f * (hot_k - cold_k(D_k))
    f       = min(1, L2 / WS),   D_k = WS - ws_k
    energy  = P_package * latency

* ``t_session`` is onnxruntime's per-inference cost outside the kernels (``Run`` from
  Python, feeding inputs, fetching outputs), measured once per table:
  ``a + b * (input + output bytes)`` from two one-node models timed with ``run`` and with
  pre-bound buffers.
* ``hot_k`` / ``cold_k(D)``: the kernel measured as a one-kernel model
  (:class:`.measure.Timer`), with its data in L2, and after ``D`` bytes of other
  data were read (rounded up to 2, 4 or 8 MiB). Between two runs of kernel ``k`` the rest
  of the network touches ``D_k = WS - ws_k`` bytes (``WS``: every weight, activation
  written and input of one inference; ``ws_k``: the kernel's weights, inputs and
  outputs, padded as executed). Non-compute nodes onnxruntime keeps (``Flatten``,
  ``Reshape``, reorders) are kernels too: their measured time is their per-node
  overhead. Nodes it removes or fuses cost zero.
* ``f`` is the share of a kernel's data still in L2 when it runs again: an L2 of ``L2``
  bytes (read from sysfs) swept cyclically by ``WS`` bytes keeps about ``L2 / WS`` of
  them (the hit rate of random replacement; true LRU would keep none once ``WS > L2``,
  Intel's pseudo-LRU lies in between). A share per kernel from its own reuse distance,
  ``min(1, L2 / ws_k) * exp(-D_k / L2)``, was tried on the same tables and measurements:
  better on the bench's 30 variants (seed 0, four runs: 57-83 % within +-10 % against
  50-77 %), worse on 30 others (seed 7, two runs: 40-50 % against 50-67 %), so the
  simpler share stays.
* Energy is a model, not a measurement: power is not measured on this machine. It is
  the package power ``package_power_w`` of ``cpu.toml`` times the latency, as the EIE
  paper computes its CPU baseline's energy (Han et al., ISCA 2016, Table V: Core
  i7-5930K, 73 W measured with pcm-power, socket + DRAM).

Assumptions: one inference at a time, ``intra_op_num_threads`` threads (default 1: on a
shared 2-core machine one thread is what can be timed repeatably), ``ORT_ENABLE_ALL``, fp32
or whatever types the model holds. Latency is the inference thread's CPU time, which is
the wall-clock latency on an otherwise idle core. This shared machine also slows down by
up to about 1.8x, for seconds at a time, when its neighbours are busy; a probe kernel
timed around every measurement says when, and latencies are those of the fast phase, the
machine's own speed: the only one that is reproducible (measurements wait for it, see
:class:`.measure.Timer` and :meth:`.table.KernelTable.speed`).
A batch of ``N`` scales the ``N`` of conv, Gemm and reorder kernels (measured so); other
kernels are measured at batch 1 and multiplied by ``N``. Activation sparsity is not
exploited by these dense kernels and is ignored. ``cost_layer`` (pricing a node for an
accelerator whose host is the CPU) rebuilds the node alone from its workload
(:mod:`.layer_model`) and prices it the same way; nodes whose workload does not say
enough (data movement, element-wise ops) are priced as a same-sized stand-in, named in
the note.

An ``If`` is priced as the branch it takes (:mod:`hwcc.ir.workload_flow`): its nodes are
planned and looked up like top-level ones, fused only among themselves, as onnxruntime
optimizes a branch as a graph of its own; the ``If``'s dispatch of the nested graph (some
microseconds) is not priced. The silero voice detector (opset 15, three ``If`` nodes, one
holding its LSTM) was predicted at 49.0 us against 49.4 to 52.5 us measured whole (one
thread, this machine).

Measuring and pricing are apart. :meth:`CpuTarget.prepare` measures what a graph needs at
a batch and the table lacks (its kernels as planned, and the session overhead once), and
:meth:`CpuTarget.prepare_layers` what the layers an accelerator sends to its host need;
``hwcc profile`` does the same with a progress bar. :meth:`CpuTarget.cost` and
:meth:`CpuTarget.cost_layer` only look up: a kernel the table lacks is a
:class:`~hwcc.targets.base.NotPrepared` error naming it, and no file is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.onnx_io import to_proto
from hwcc.ir.workload import Layer, Workload
from hwcc.targets.base import (
    ZERO,
    Cost,
    CostContext,
    GraphCost,
    LayerCost,
    NotPrepared,
    Target,
    load_target,
    register_family,
    scale_batch,
)
from hwcc.targets.cpu.device import fingerprint
from hwcc.targets.cpu.kernels import Kernel, Plan, plan_kernels
from hwcc.targets.cpu.layer_model import BUILT_FROM_DIMS, layer_graph
from hwcc.targets.cpu.measure import Timer, measure_models, session_overhead
from hwcc.targets.cpu.profiling import ProfileReport, profile_graph
from hwcc.targets.cpu.table import KernelTable

__all__ = ["CpuTarget", "ProfileReport", "profile", "measure_models", "fingerprint", "layer_graph"]

_PREPARE = "call prepare(graph) or price(graph) on the target being priced first"
_PROFILE = "or measure them with `hwcc profile --target cpu --model MODEL`"


# ---------------------------------------------------------------------- the target
@register_family("cpu")
class CpuTarget(Target):
    """This machine's CPU under onnxruntime, priced from measured kernel tables."""

    runs_dynamic_int8 = True

    def __init__(self, name: str, spec: dict[str, Any], source: Path | None = None):
        super().__init__(name, spec, source)
        p = self.params
        self.threads = int(p.get("intra_op_num_threads", 1))
        self.step, self.panel = int(p.get("channel_step", 8)), int(p.get("gemm_column_panel", 0))
        self.power_w = float(p.get("package_power_w", 73.0))
        self.evict_bytes = int(float(p.get("cold_evict_mib", 8)) * (1 << 20))
        runs = ("warmup", "rounds", "hot_runs", "cold_runs")
        self.protocol = {k: int(p[k]) for k in runs if k in p}
        if self.threads < 1:
            raise HwccError(f"target {name}: intra_op_num_threads must be at least 1")
        self._table: KernelTable | None = None
        self._layer_memo: dict[tuple, Cost] = {}  # cost_layer's lookups: the table only grows

    @property
    def table(self) -> KernelTable:
        """The lookup table of this device (fingerprinted and opened on first use)."""
        if self._table is None:
            fp = fingerprint(self.threads, self.evict_bytes)
            pr = self.protocol
            timer = Timer(
                self.threads,
                self.evict_bytes,
                fp["nchwc_block"],
                l1_bytes=fp["l1_bytes"],
                warmup=pr.get("warmup", 3),
                rounds=pr.get("rounds", 20),
                hot=pr.get("hot_runs", 3),
                cold=pr.get("cold_runs", 2),
            )
            self._table = KernelTable(
                fp, timer, step=self.step, block=fp["nchwc_block"], panel=self.panel
            )
        return self._table

    def use_table(self, table: KernelTable) -> None:
        """Price with ``table`` (another device's file, or a test double)."""
        self._table = table
        self._layer_memo.clear()

    def supports(self, layer: Layer) -> str | None:
        return None  # the host runs everything

    def profile(self, graph: Graph, progress: bool = True) -> ProfileReport:
        """``hwcc profile --target cpu``: measure every kernel of ``graph`` into the table."""
        return profile(graph, self, progress)

    def measure_latency(
        self, graphs: list[Graph], *, rounds: int = 5, runs: int = 50
    ) -> list[float]:
        """Each graph's latency measured whole in onnxruntime on this machine, as the
        tables are timed (one thread's CPU time, round-robin over the graphs, rescaled to
        the table's speed phase). What a compiler checks its predicted budget against."""
        models, speed = [to_proto(g).SerializeToString() for g in graphs], self.table.speed()
        return measure_models(models, self.threads, runs=runs, rounds=rounds, speed=speed)

    # ------------------------------------------------------------ measuring
    def prepare(self, graph: Graph | Workload, ctx: CostContext | None = None) -> None:
        """Measure what pricing ``graph`` at ``ctx.batch`` needs and the table lacks: its
        kernels as onnxruntime runs them, and the session overhead (a :class:`Workload`
        has no topology: each of its layers alone, as :meth:`prepare_layers`). The table
        is saved after each batch of measurements."""
        ctx = _checked(ctx)
        if isinstance(graph, Workload):
            layers = [scale_batch(x, ctx.batch) for x in graph.layers if x.kind != "constant"]
            self.prepare_layers(layers, ctx)
            return
        graph = self.resolved(graph, ctx).graph  # an If runs as the branch it takes
        self.table.ensure(self.specs(self.plan(graph, self.workload(graph, ctx)), ctx.batch))
        self.measure_session()

    def prepare_layers(self, layers: Sequence[Layer], ctx: CostContext) -> None:
        """Measure what :meth:`cost_layer` needs for ``layers`` (already scaled to
        ``ctx.batch``), each rebuilt alone, and the table lacks."""
        specs: list[dict[str, Any]] = []
        for layer in layers:
            if self._layer_key(layer, ctx) not in self._layer_memo:
                specs += self.specs(self.plan(layer_graph(layer)[0]))
        self.table.ensure(specs)

    def measure_session(self) -> None:
        """Measure the per-inference session overhead, once per table."""
        table = self.table
        if "session" not in table.extra:
            table.extra["session"] = session_overhead(table.measure_fn)
            table.save()

    # ------------------------------------------------------------ whole graphs
    def plan(self, graph: Graph, work: Workload | None = None) -> Plan:
        """The kernels onnxruntime runs for ``graph`` on this machine."""
        try:
            work = work or self.workload(graph, CostContext())
            return plan_kernels(graph, work, self.table.block)
        except ValueError as e:
            raise HwccError(
                f"cannot price {graph.name} on the CPU: {e}",
                "fix the input shapes (--input-shape NAME:1x3x224x224)",
            ) from None

    def session_s(self, nbytes: int) -> float:
        """Per-inference session overhead for ``nbytes`` of inputs and outputs (a lookup)."""
        s = self.table.extra.get("session")
        if s is None:
            raise NotPrepared(
                f"the CPU lookup table {self.table.path} has no session overhead",
                f"{_PREPARE}, {_PROFILE}",
            )
        return s["a_s"] + s["b_s_per_byte"] * nbytes

    def specs(self, plan: Plan, batch: int = 1) -> list[dict[str, Any]]:
        """The table keys of ``plan``'s kernels: spec, batch, and the cold state's eviction."""
        l2, ws = self.table.fingerprint.get("l2_bytes", 1 << 20), plan.working_set
        return [
            {
                **_batched(k.spec, batch),
                "evict": _evict_bucket(
                    ws - (k.weight_bytes + k.in_bytes + k.out_bytes), l2, self.evict_bytes
                ),
            }
            for k in plan.kernels
        ]

    def kernel_times(
        self,
        plan: Plan,
        batch: int = 1,
        what: str = "",
        hint: str = f"{_PREPARE}, {_PROFILE}",
    ) -> list[tuple[float, float, float, float]]:
        """``(seconds, hot_s, cold_s, f_hot)`` per kernel of ``plan``, looked up.

        Raises:
            NotPrepared: the table lacks a kernel; the error says what needs it (``what``)
                and what to do (``hint``).
        """
        table = self.table
        l2, ws = table.fingerprint.get("l2_bytes", 1 << 20), plan.working_set
        specs = self.specs(plan, batch)
        missing = table.missing(specs)
        if missing:
            ops = ", ".join(sorted({s["op"] for s in missing}))
            raise NotPrepared(
                f"the CPU lookup table {table.path} has no measurement of "
                f"{len(missing)} kernel configuration(s) that "
                f"{what or f'the graph at batch {batch}'} needs ({ops}): "
                "cost() only looks up",
                hint,
            )
        out = []
        for k, spec in zip(plan.kernels, specs):
            hot, cold = table.lookup(spec)
            if "N" not in spec:  # generic kernels are measured at batch 1
                hot, cold = hot * batch, cold * batch
            f = _hot_share(k, l2, ws, batch)
            out.append((cold + f * (hot - cold), hot, cold, f))
        return out

    def cost(self, graph: Graph | Workload, ctx: CostContext | None = None) -> GraphCost:
        """Price ``graph`` kernel by kernel, by lookup; fused and removed nodes get zero
        and a note.

        Raises:
            NotPrepared: the table lacks a kernel or the session overhead; :meth:`prepare`.
        """
        ctx = _checked(ctx)
        if isinstance(graph, Workload):  # no topology: no fusion, each node alone
            return super().cost(graph, ctx)
        flat = self.resolved(graph, ctx)  # an If runs as the branch it takes
        graph = flat.graph
        work = self.workload(graph, ctx)
        plan = self.plan(graph, work)
        parts: dict[str, dict[str, float]] = {}
        labels: dict[str, str] = {}
        what = f"{graph.name or 'the graph'} at batch {ctx.batch}"
        times = self.kernel_times(plan, ctx.batch, what)
        for k, (t, hot, cold, f) in zip(plan.kernels, times):
            d = parts.setdefault(k.head, {"kernel_s": 0.0, "reorder_s": 0.0})
            d["reorder_s" if k.is_reorder else "kernel_s"] += t
            if not k.is_reorder:
                d.update(hot_s=hot, cold_s=cold, l2_fraction=f)
                labels[k.head] = _label(k)
        overhead = self.session_s(ctx.batch * (plan.input_bytes + plan.output_bytes))
        out: list[LayerCost] = []
        for layer in work.layers:
            if layer.name in plan.removed:
                zero = dataclasses.replace(ZERO, note=plan.removed[layer.name])
                out.append(LayerCost(layer, zero, self.name))
                continue
            d = dict(parts[layer.name])
            if overhead is not None:
                d["session_s"], overhead = overhead, None
            t = d["kernel_s"] + d["reorder_s"] + d.get("session_s", 0.0)
            cost = Cost(t, t * self.power_w, d, labels[layer.name])
            out.append(LayerCost(layer, cost, self.name))
        return GraphCost(self.name, out, ctx.batch, list(flat.notes))

    # ------------------------------------------------------------ one layer (host pricing)
    def cost_layer(self, layer: Layer, ctx: CostContext) -> Cost:
        """``layer`` alone as a one-node onnxruntime model, by lookup (memoised).

        Raises:
            NotPrepared: the table lacks a kernel of it; :meth:`prepare_layers` (which the
                target it runs for calls in its :meth:`prepare`).
        """
        key = self._layer_key(layer, ctx)
        if key not in self._layer_memo:
            g, note = layer_graph(layer)
            what = f"{layer.name} ({layer.op_type}, priced alone for an accelerator)"
            t = sum(x[0] for x in self.kernel_times(self.plan(g), what=what, hint=_PREPARE))
            scale = 1 if layer.kind in BUILT_FROM_DIMS else ctx.batch
            t *= scale
            self._layer_memo[key] = Cost(
                t, t * self.power_w, {"kernel_s": t}, note or "priced alone on the CPU"
            )
        return self._layer_memo[key]

    @staticmethod
    def _layer_key(layer: Layer, ctx: CostContext) -> tuple:
        """What :meth:`cost_layer`'s price depends on: the batch and the layer but its name
        and densities."""
        return (ctx.batch,) + tuple(
            v
            for k, v in dataclasses.asdict(layer).items()
            if k not in ("name", "weight_density", "act_density", "flags")
        )


def _checked(ctx: CostContext | None) -> CostContext:
    ctx = ctx or CostContext()
    if ctx.batch < 1:
        raise HwccError(f"batch must be at least 1, got {ctx.batch}")
    return ctx


def _hot_share(k: Kernel, l2: int, ws: int, batch: int) -> float:
    """The share of ``k``'s bytes found in L2 when it runs, as LRU keeps them: of each
    activation it reads, the part among the last ``l2`` distinct bytes touched (its size,
    less those touched since it was written); of its weights and the graph inputs, touched
    once an inference of ``ws`` distinct bytes, ``l2 / ws``. Time: ``cold + share · (hot − cold)``.
    """
    far = min(1.0, l2 / max(1, ws))
    total, hot = k.weight_bytes, k.weight_bytes * far
    for size, distance in k.reads:
        size *= batch
        total += size
        if distance is None:
            hot += size * far
        else:
            hot += min(size, max(0, l2 - distance * batch))
    return hot / total if total else far


def _evict_bucket(distance: int, l2: int, most: int) -> int:
    """The cold state's eviction for a reuse distance: the power-of-two multiple of 2 x L2
    at or above it, at most ``most`` (beyond which nothing changes on this machine)."""
    b = 2 * l2
    while b < distance and b < most:
        b *= 2
    return min(b, most)


def _batched(spec: dict[str, Any], batch: int) -> dict[str, Any]:
    return spec if batch == 1 or "N" not in spec else {**spec, "N": spec["N"] * batch}


def _label(k: Kernel) -> str:
    s = k.spec
    text = s["op"].replace("com.microsoft.", "")
    text += f"+{s['act']}" if s.get("act") else ""
    text += "+Sum" if s.get("sum") else ""
    return f"kernel {text}" + (f" (fuses {', '.join(k.members)})" if k.members else "")


# ---------------------------------------------------------------------- profile
def profile(graph: Graph, target: CpuTarget | str = "cpu", progress: bool = True) -> ProfileReport:
    """Measure every kernel configuration ``graph`` needs that the table lacks.

    Args:
        graph: a shape-inferred graph.
        target: the CPU target (or its name).
        progress: draw a progress bar on a terminal.

    Returns:
        A :class:`ProfileReport`.
    """
    t = load_target(target) if isinstance(target, str) else target
    if not isinstance(t, CpuTarget):
        raise HwccError(f"profile needs a measured CPU target, not {t.name} ({t.family})")
    return profile_graph(t, graph, progress)
