"""This machine's CPU, measured with onnxruntime: lookup tables of fused kernels.

The cost of a graph is predicted the way nn-Meter does it (Zhang et al., MobiSys 2021):
split the graph into the kernels the runtime executes (:mod:`.cpu_kernels` replays
onnxruntime's fusions and NCHWc layout), look each kernel up in a table measured on this
machine (:mod:`.cpu_table`), and add them up:

    latency = t_session + sum over kernels k of  t_k
    t_k     = cold_k(D_k) + f * (hot_k - cold_k(D_k))
    f       = min(1, L2 / WS),   D_k = WS - ws_k
    energy  = P_package * latency

* ``t_session`` is onnxruntime's per-inference cost outside the kernels (``Run`` from
  Python, feeding inputs, fetching outputs), measured once per table:
  ``a + b * (input + output bytes)`` from two one-node models timed with ``run`` and with
  pre-bound buffers.
* ``hot_k`` / ``cold_k(D)``: the kernel measured as a one-kernel model
  (:class:`.cpu_measure.Timer`), with its data in L2, and after ``D`` bytes of other
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
:class:`.cpu_measure.Timer` and :meth:`.cpu_table.KernelTable.speed`).
A batch of ``N`` scales the ``N`` of conv, Gemm and reorder kernels (measured so); other
kernels are measured at batch 1 and multiplied by ``N``. Activation sparsity is not exploited by
these dense kernels and is ignored. ``cost_layer`` (pricing a node for an accelerator
whose host is the CPU) rebuilds the node alone from its workload and measures it the same
way; nodes whose workload does not say enough (data movement, element-wise ops) are
priced as a same-sized stand-in, named in the note.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.targets.base import ZERO, Cost, CostContext, GraphCost, LayerCost, Target, load_target, register_family
from hwcc.targets.cpu.kernels import Kernel, Plan, plan_kernels, spec_key
from hwcc.targets.cpu.device import fingerprint
from hwcc.targets.cpu.measure import Timer, measure_models, session_overhead
from hwcc.targets.cpu.table import KernelTable
from hwcc.ir.workload import Layer, Workload, analyze

__all__ = ["CpuTarget", "ProfileReport", "profile", "measure_models", "fingerprint"]

# ---------------------------------------------------------------------- the target
@register_family("cpu")
class CpuTarget(Target):
    """This machine's CPU under onnxruntime, priced from measured kernel tables."""

    def profile(self, graph: Graph, progress: bool = True) -> ProfileReport:
        """``hwcc profile --target cpu``: measure every kernel of ``graph`` into the table."""
        return profile(graph, self, progress)

    def __init__(self, name: str, spec: dict[str, Any], source: Path | None = None):
        super().__init__(name, spec, source)
        p = self.params
        self.threads = int(p.get("intra_op_num_threads", 1))
        self.step = int(p.get("channel_step", 8))
        self.power_w = float(p.get("package_power_w", 73.0))
        self.evict_bytes = int(float(p.get("cold_evict_mib", 8)) * (1 << 20))
        self.protocol = {k: int(p[k]) for k in ("warmup", "rounds", "hot_runs", "cold_runs") if k in p}
        if self.threads < 1:
            raise HwccError(f"target {name}: intra_op_num_threads must be at least 1")
        self._table: KernelTable | None = None
        self._layer_memo: dict[tuple, Cost] = {}

    @property
    def table(self) -> KernelTable:
        """The lookup table of this device (fingerprinted and opened on first use)."""
        if self._table is None:
            fp = fingerprint(self.threads, self.evict_bytes)
            pr = self.protocol
            timer = Timer(self.threads, self.evict_bytes, fp["nchwc_block"], l1_bytes=fp["l1_bytes"],
                          warmup=pr.get("warmup", 3), rounds=pr.get("rounds", 20), hot=pr.get("hot_runs", 3),
                          cold=pr.get("cold_runs", 2))
            self._table = KernelTable(fp, timer, step=self.step, block=fp["nchwc_block"])
        return self._table

    def use_table(self, table: KernelTable) -> None:
        """Price with ``table`` (another device's file, or a test double)."""
        self._table = table
        self._layer_memo.clear()

    def supports(self, layer: Layer) -> str | None:
        return None  # the host runs everything

    def measure_latency(self, graphs: list[Graph], *, rounds: int = 5, runs: int = 50) -> list[float]:
        """Each graph's latency measured whole in onnxruntime on this machine, as the
        tables are timed (one thread's CPU time, round-robin over the graphs, rescaled to
        the table's speed phase). What a compiler checks its predicted budget against."""
        from hwcc.ir.onnx_io import to_proto

        models = [to_proto(g).SerializeToString() for g in graphs]
        return measure_models(models, self.threads, runs=runs, rounds=rounds, speed=self.table.speed())

    # ------------------------------------------------------------ whole graphs
    def plan(self, graph: Graph, work: Workload | None = None) -> Plan:
        """The kernels onnxruntime runs for ``graph`` on this machine."""
        try:
            return plan_kernels(graph, work or analyze(graph), self.table.block)
        except ValueError as e:
            raise HwccError(f"cannot price {graph.name} on the CPU: {e}",
                            "fix the input shapes (--input-shape NAME:1x3x224x224)") from None

    def session_s(self, nbytes: int) -> float:
        """Per-inference session overhead for ``nbytes`` of inputs and outputs."""
        table = self.table
        if "session" not in table.extra:
            table.extra["session"] = session_overhead(table.measure_fn)
            table.save()
        s = table.extra["session"]
        return s["a_s"] + s["b_s_per_byte"] * nbytes

    def specs(self, plan: Plan, batch: int = 1) -> list[dict[str, Any]]:
        """The table keys of ``plan``'s kernels: spec, batch, and the cold state's eviction."""
        l2, ws = self.table.fingerprint.get("l2_bytes", 1 << 20), plan.working_set
        return [{**_batched(k.spec, batch),
                 "evict": _evict_bucket(ws - (k.weight_bytes + k.in_bytes + k.out_bytes), l2, self.evict_bytes)}
                for k in plan.kernels]

    def kernel_times(self, plan: Plan, batch: int = 1) -> list[tuple[float, float, float, float]]:
        """``(seconds, hot_s, cold_s, f_hot)`` per kernel of ``plan`` (measuring what is missing)."""
        l2, ws = self.table.fingerprint.get("l2_bytes", 1 << 20), plan.working_set
        specs = self.specs(plan, batch)
        self.table.ensure(specs)
        out = []
        for spec in specs:
            hot, cold = self.table.lookup(spec)
            if "N" not in spec:  # generic kernels are measured at batch 1
                hot, cold = hot * batch, cold * batch
            f = min(1.0, l2 / max(1, ws))
            out.append((cold + f * (hot - cold), hot, cold, f))
        return out

    def cost(self, graph: Graph | Workload, ctx: CostContext | None = None) -> GraphCost:
        """Price ``graph`` kernel by kernel; fused and removed nodes get zero and a note."""
        ctx = ctx or CostContext()
        if isinstance(graph, Workload):  # no topology: no fusion, each node alone
            return super().cost(graph, ctx)
        if ctx.batch < 1:
            raise HwccError(f"batch must be at least 1, got {ctx.batch}")
        work = analyze(graph, act_density=ctx.act_density)
        plan = self.plan(graph, work)
        parts: dict[str, dict[str, float]] = {}
        labels: dict[str, str] = {}
        for k, (t, hot, cold, f) in zip(plan.kernels, self.kernel_times(plan, ctx.batch)):
            d = parts.setdefault(k.head, {"kernel_s": 0.0, "reorder_s": 0.0})
            d["reorder_s" if k.is_reorder else "kernel_s"] += t
            if not k.is_reorder:
                d.update(hot_s=hot, cold_s=cold, l2_fraction=f)
                labels[k.head] = _label(k)
        overhead = self.session_s(ctx.batch * (plan.input_bytes + plan.output_bytes))
        out: list[LayerCost] = []
        for layer in work.layers:
            if layer.name in plan.removed:
                out.append(LayerCost(layer, dataclasses.replace(ZERO, note=plan.removed[layer.name]), self.name))
                continue
            d = dict(parts[layer.name])
            if overhead is not None:
                d["session_s"], overhead = overhead, None
            t = d["kernel_s"] + d["reorder_s"] + d.get("session_s", 0.0)
            out.append(LayerCost(layer, Cost(t, t * self.power_w, d, labels[layer.name]), self.name))
        return GraphCost(self.name, out, ctx.batch)

    # ------------------------------------------------------------ one layer (host pricing)
    def cost_layer(self, layer: Layer, ctx: CostContext) -> Cost:
        """``layer`` alone as a one-node onnxruntime model (memoised: cheap when repeated)."""
        key = (ctx.batch,) + tuple(v for k, v in dataclasses.asdict(layer).items()
                                   if k not in ("name", "weight_density", "act_density", "flags"))
        if key not in self._layer_memo:
            g, note = layer_graph(layer)
            plan = self.plan(g)
            t = sum(x[0] for x in self.kernel_times(plan))
            scale = 1 if layer.kind in _BUILT_FROM_DIMS else ctx.batch
            self._layer_memo[key] = Cost(t * scale, t * scale * self.power_w, {"kernel_s": t * scale},
                                         note or "priced alone on the CPU")
        return self._layer_memo[key]


_BUILT_FROM_DIMS = ("conv", "depthwise_conv", "grouped_conv", "conv_transpose", "gemm", "matmul", "pool",
                    "lstm", "gru", "rnn")


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
@dataclasses.dataclass
class ProfileReport:
    """What ``hwcc profile --target cpu`` did.

    Attributes:
        model: the graph's name.
        table: the lookup-table file.
        kernels: kernels in the graph; distinct: distinct configurations among them.
        measured: table entries measured now (grid neighbours included); reused: distinct
            configurations the table already answered.
        seconds: time taken.
        latency_s: the predicted latency afterwards.
    """

    model: str
    table: str
    kernels: int
    distinct: int
    measured: int
    reused: int
    seconds: float
    latency_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        return (f"{self.model}: {self.kernels} kernels, {self.distinct} distinct; measured {self.measured}, "
                f"reused {self.reused} in {self.seconds:.1f} s; predicted {self.latency_s * 1e3:.3f} ms; "
                f"table {self.table}")


def profile(graph: Graph, target: CpuTarget | str = "cpu", progress: bool = True) -> ProfileReport:
    """Measure every kernel configuration ``graph`` needs that the table lacks.

    Args:
        graph: a shape-inferred graph.
        target: the CPU target (or its name).
        progress: draw a progress bar on a terminal.

    Returns:
        A :class:`ProfileReport`.
    """
    from hwcc.progress import Progress

    t = load_target(target) if isinstance(target, str) else target
    if not isinstance(t, CpuTarget):
        raise HwccError(f"profile needs a measured CPU target, not {t.name} ({t.family})")
    start = time.monotonic()
    plan = t.plan(graph)
    specs = t.specs(plan)
    missing = t.table.missing(specs)
    distinct = len(set(map(spec_key, specs)))
    reused = sum(all(spec_key(c) in t.table.entries for c, _ in t.table.corners(s)) for s in
                 {spec_key(s): s for s in specs}.values())
    with Progress(len(missing), f"profiling {graph.name}", unit="kernels",
                  enabled=None if progress else False) as bar:
        t.table.ensure(specs, progress=lambda n, note: bar.update(n, note=note))
    latency = t.cost(graph).latency_s
    return ProfileReport(graph.name, str(t.table.path), len(specs), distinct, len(missing), reused,
                         time.monotonic() - start, latency)


# ---------------------------------------------------------------------- a layer alone
_BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Less", "Greater",
           "LessOrEqual", "GreaterOrEqual", "Mod", "And", "Or", "Xor", "BitShift", "PRelu")
_ALIASING = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")


def layer_graph(layer: Layer) -> tuple[Graph, str]:
    """A one-node graph rebuilt from ``layer``'s workload, and a note if it is a stand-in."""
    from hwcc.ir.onnx_io import infer_shapes

    if not layer.known or layer.kind in ("unknown", "constant"):
        raise HwccError(f"cannot measure {layer.name} ({layer.op_type}) on the CPU: {layer.reason or layer.kind}",
                        "fix the shapes, or price the model as a whole graph")
    g, k, note = Graph(layer.name), layer.kind, ""
    rnd = lambda *s: np.random.default_rng(0).standard_normal(s).astype(np.float32)  # noqa: E731
    two_d = lambda v, d: list(v)[-2:] if len(v) >= 2 else [d] * (2 - len(v)) + list(v)  # noqa: E731
    if k in ("conv", "depthwise_conv", "grouped_conv", "conv_transpose", "pool"):
        g.add_input("x", 1, [layer.N, layer.C, layer.H, layer.W])
        pads = list(layer.pads) if len(layer.pads) == 4 else [0, 0, 0, 0]
        attrs = {"kernel_shape": [layer.R, layer.S], "strides": two_d(layer.stride, 1), "pads": pads}
        if k == "pool":
            ins = ["x"]
            attrs = {} if layer.op_type.startswith("Global") else attrs
        else:
            attrs.update(group=layer.groups, dilations=two_d(layer.dilation, 1))
            shape = ([layer.C, layer.M // layer.groups] if k == "conv_transpose" else
                     [layer.M, layer.C // layer.groups]) + [layer.R, layer.S]
            ins = ["x", g.add_initializer("w", rnd(*shape)).name]
            if layer.params > math.prod(shape):
                ins.append(g.add_initializer("b", rnd(layer.M)).name)
            if k == "conv_transpose":
                attrs.pop("pads")
        g.add_node(layer.op_type if layer.op_type in _POOL_OR_CONV else "Conv", ins, ["y"], attrs)
    elif k in ("gemm", "matmul"):
        g.add_input("a", 1, [layer.N, layer.C])
        ins = ["a", g.add_initializer("b", rnd(layer.C, layer.M)).name if layer.params else
               g.add_input("b", 1, [layer.C, layer.M]).name]
        if k == "gemm" and layer.params > layer.C * layer.M:
            ins.append(g.add_initializer("c", rnd(layer.M)).name)
        g.add_node("Gemm" if k == "gemm" else "MatMul", ins, ["y"])
    elif k in ("lstm", "gru", "rnn"):
        d, gm = layer.directions, layer.gates * layer.M
        g.add_input("x", 1, [layer.seq_len, layer.N, layer.C])
        ins = ["x", g.add_initializer("w", rnd(d, gm, layer.C)).name, g.add_initializer("r", rnd(d, gm, layer.M)).name]
        if layer.params > d * gm * (layer.C + layer.M):
            ins.append(g.add_initializer("b", rnd(d, 2 * gm)).name)
        g.add_node(layer.op_type, ins, ["y"], {"hidden_size": layer.M,
                                                "direction": "bidirectional" if d == 2 else "forward"})
    else:
        note = _stand_in(g, layer)
    g.outputs.append("y")
    infer_shapes(g)
    return g, note


_POOL_OR_CONV = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
                 "GlobalMaxPool", "GlobalLpPool")


def _stand_in(g: Graph, layer: Layer) -> str:
    """Element-wise, normalization, softmax, reductions and data movement from shapes alone."""
    op, shape = layer.op_type, list(layer.in_shape or layer.out_shape or [1])
    out = list(layer.out_shape or shape)
    g.add_input("x", 1, shape)
    if layer.kind == "data_movement":
        if op in _ALIASING:
            g.add_initializer("s", np.array(out, np.int64))
            g.add_node("Reshape", ["x", "s"], ["y"])
            return f"{op} priced as a Reshape of the same shape"
        g.inputs.clear()
        g.add_input("x", 1, out)
        g.add_node("Concat", ["x"], ["y"], {"axis": 0})
        return f"{op} priced as a copy of its output"
    if op in _BINARY and op not in ("Mod", "And", "Or", "Xor", "BitShift", "PRelu"):
        g.add_input("x2", 1, shape)
        g.add_node(op, ["x", "x2"], ["y"])
        return "" if op not in ("Sum", "Mean") else f"{op} priced with two inputs"
    if op == "BatchNormalization":
        ps = [g.add_initializer(f"p{i}", np.ones(shape[1], np.float32)).name for i in range(4)]
        g.add_node(op, ["x", *ps], ["y"])
        return ""
    if op in ("LayerNormalization", "Softmax", "LogSoftmax", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt",
              "Abs", "Neg", "Erf", "Reciprocal", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu",
              "Softplus", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Selu", "Celu", "Softsign"):
        ins = ["x"] + ([g.add_initializer("sc", np.ones(shape[-1], np.float32)).name]
                       if op == "LayerNormalization" else [])
        g.add_node(op, ins, ["y"])
        return ""
    g.add_node("ReduceSum" if layer.kind == "other" else "Relu", ["x"], ["y"],
               {"keepdims": 1} if layer.kind == "other" else {})
    return f"{op} priced as a {'ReduceSum' if layer.kind == 'other' else 'Relu'} of the same input"
