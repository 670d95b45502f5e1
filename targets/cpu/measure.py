"""Timing on this machine with onnxruntime: kernel models, whole models, session overhead.

* :class:`Timer` times one-kernel models (:func:`.kernel_model.kernel_graph`; the
  protocol is in its docstring);
* :func:`measure_models` times whole models; :func:`session_overhead` measures what one
  ``InferenceSession.run`` costs beyond its kernels.

The device a table belongs to is identified by :func:`.device.fingerprint`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.onnx_io import to_proto
from hwcc.targets.cpu.kernel_model import kernel_graph
from hwcc.targets.cpu.table import REFERENCE

__all__ = ["session", "random_feeds", "Timer", "measure_models", "session_overhead", "PROTOCOL"]

PROTOCOL = 16  # bump when the timing protocol changes: old tables stop matching


def measure_models(
    models: list[bytes],
    threads: int = 1,
    *,
    runs: int = 50,
    rounds: int = 5,
    warmup: int = 5,
    speed: float | None = None,
    probes: list[float] | None = None,
    visit_s: float = 0.05,
    patience_s: float = 20.0,
) -> list[float]:
    """Median latency of each model in onnxruntime, timed round-robin over the models.

    Each model runs with ``session.run`` on fixed random inputs, timed like the tables
    (thread CPU time with one thread, wall clock otherwise); ``rounds`` rounds of
    visits, interleaved over the models so that they share the machine's slow phases. A
    visit is ``runs`` runs, fewer for a slow model (a visit lasts about ``visit_s``, at
    least 3 runs: a phase of the machine lasts seconds, and a visit should fall within
    one). After every visit the speed probe (:data:`~hwcc.targets.cpu.table.REFERENCE`,
    two runs) is timed.

    Args:
        speed: if given (seconds of the probe, e.g. a table's ``speed()``), the latency at
            that speed: only the visits whose probes before and after both say they ran
            at it count (as in :class:`Timer`). A model with fewer than ``(rounds + 1) // 2``
            such visits is visited again, for up to ``patience_s`` more seconds, so that a
            fast phase of the machine is waited out rather than rescaled (the probe's
            ratio between the phases is not every model's); its latency is then that of
            its visits at the speed, and only with fewer than :data:`LEAST_AT_SPEED` of
            them that of all its visits rescaled by ``speed / probe``.
        probes: if a list, it receives each model's median probe time (the machine's
            speed while the model was timed).

    Returns:
        Seconds per inference, one per model.
    """
    clock = time.thread_time_ns if threads == 1 else time.perf_counter_ns
    sessions = [session(m, threads) for m in models]
    feeds = [random_feeds(s) for s in sessions]
    # per model, per visit: (runs, no empty model, the probe after it, the probe before it), ns
    visits: list[list[tuple]] = [[] for _ in models]
    timer = Timer(threads, 0, 0)
    (_, probe_pair) = timer._load([REFERENCE])
    reps = []
    for s, f in zip(sessions, feeds):
        t0 = clock()
        for _ in range(warmup):
            s.run(None, f)
        each = max(1e-7, (clock() - t0) * 1e-9 / max(1, warmup))
        reps.append(max(3, min(runs, int(visit_s / each))))
    need, target = (rounds + 1) // 2, speed and speed * 1e9
    last = timer._probe(probe_pair)
    todo, visited, deadline = list(range(len(models))), 0, None
    while todo:
        for i in todo:
            s, f, runs_ns = sessions[i], feeds[i], []
            for _ in range(reps[i]):
                t0 = clock()
                s.run(None, f)
                runs_ns.append(clock() - t0)
            after = timer._probe(probe_pair)
            visits[i].append((runs_ns, [0], after, last))
            last = after
        visited += 1
        if visited < rounds:
            continue
        if not target:
            break
        deadline = deadline or time.monotonic() + patience_s
        todo = [i for i in todo if _n_at_speed(visits[i], target) < need]
        if time.monotonic() > deadline:
            break
    if probes is not None:
        probes[:] = [float(np.median([v[2] for v in vs])) * 1e-9 for vs in visits]
    if target:  # as the tables do: visits at the table's speed, else all rescaled
        return [_at_speed(vs, target) for vs in visits]
    return [float(np.median([t for v in vs for t in v[0]])) * 1e-9 for vs in visits]


def session_overhead(timer: Timer) -> dict[str, float]:
    """``a`` and ``b`` of ``t_session = a + b * bytes`` from two one-node Relu models."""
    points = []
    for n in (16, 65536):
        spec = {"op": "Relu", "inputs": [["x", 1, [1, n]]], "outputs": [[1, [1, n]]], "attrs": {}}
        ((kernel, _),) = timer([spec])
        model = to_proto(kernel_graph(spec, 0), value_info=False).SerializeToString()
        (run,) = measure_models([model], timer.threads, runs=100, rounds=3)
        points.append((8.0 * n, max(0.0, run - kernel)))
    (x0, y0), (x1, y1) = points
    b = max(0.0, (y1 - y0) / (x1 - x0))
    return {"a_s": y0 - b * x0, "b_s_per_byte": b}


# ---------------------------------------------------------------------- timing
def session(model: bytes, threads: int, *, level: str = "ORT_ENABLE_ALL"):
    """An onnxruntime CPU session as hwcc times it: ``threads`` intra-op threads, one
    inter-op thread, sequential execution, optimization ``level`` (``ORT_ENABLE_ALL`` for
    whole models)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def random_feeds(sess) -> dict[str, Any]:
    """Inputs for ``sess``: uniform [0, 1) floats, zeros for other types (valid indices)."""
    rng, out = np.random.default_rng(0), {}
    for i in sess.get_inputs():
        dt = _FLOAT_TYPES.get(i.type)
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        kind = i.type[len("tensor(") : -1]
        out[i.name] = (
            rng.random(shape).astype(dt) if dt else np.zeros(shape, _NP_TYPES.get(kind, np.int64))
        )
    return out


_FLOAT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}
_NP_TYPES = {"int8": "int8", "uint8": "uint8", "int32": "int32", "int64": "int64", "bool": "bool"}


class Timer:
    """Times one-kernel models with onnxruntime.

    Protocol, per batch of specs: every model is built (:func:`kernel_graph`) in the form
    ``ORT_ENABLE_ALL`` gives the kernel inside the network and run at
    ``ORT_ENABLE_EXTENDED``, so that level 3 does not lay the lone kernel out anew (it
    would, for instance, wrap an NCHW conv the network runs as is in reorders); inputs
    and outputs are bound once (``run_with_iobinding``: no copies are timed); a kernel the
    network runs in place (``"inplace"`` in its spec) writes its output over its input. Two
    instances of each model are loaded. ``rounds`` rounds then visit every kernel in turn
    (interleaved, so the slow phases of a shared machine hit all of them alike; in each
    round all hot visits come first, then all cold ones), each visit timing, next to as
    many runs of an empty model in the same state:

    * ``hot`` runs, each after reading 2x the L1 size of other data: the kernel's weights,
      input and output in L2 (when they fit), as in a network whose working set fits the
      L2 (a tight loop would also keep the weights in L1, which no network run does). The
      inputs are those the previous run read, not rewritten: a fresh copy written before
      every run (as up to protocol 14) made the kernels slower than inside a network, by
      about a microsecond per 150 KB read on a 2-core AVX2 EPYC (a GlobalAveragePool
      reading 150 KB: 8.7 us alone with the copy, 7.9 us without, 7.3 to 8.2 us as the
      next node in a network; a Sigmoid on it: 14.2, 13.7 and 13.0 us);
    * ``cold`` runs, each after reading the spec's ``evict`` bytes of other data (at most
      ``evict_bytes``: as much as the rest of the network touches between two runs of the
      kernel, so its weights, output and scratch buffers are where the network would
      leave them), then running the second instance (the kernel's code and onnxruntime's
      own state are warm, as when a kernel of the same kind ran before), then rewriting
      the inputs (in a network the producer has just written them).

    Each visit restores the inputs (an in-place kernel changed them) and starts with an
    untimed run, so that what a timed run finds in the caches depends on the visit's own
    evictions, not on the kernels visited before.

    A run is timed with the CPU time of the calling thread when ``threads == 1``
    (onnxruntime then computes on that thread; time another process holds the core is not
    counted), with the wall clock otherwise. This shared machine also switches between
    two speeds about 1.8x apart, for seconds at a time, whatever runs inside it: after
    every visit a speed probe (:data:`~hwcc.targets.cpu.table.REFERENCE`, two runs) is
    timed, as it was before the visit. The batch's speed is the table's (``target_speed``)
    when some visit ran at it, else the faster one it saw (the median of the probes within
    1 / :data:`SAME_SPEED` of their 10th percentile; left in ``last_speed``), and a kernel's
    latency per state is the median of its runs minus the median of the empty model's
    beside them, over the visits that ran at that speed (see :func:`_at_speed`).

    Args:
        threads: intra-op threads.
        evict_bytes: the most data read before a cold run (specs without ``evict``: this).
        l1_bytes: L1 data cache size.
        block: NCHWc block, for building reorders.
        warmup, rounds, hot, cold: run counts (see above).
        budget_s: CPU time one visit may take; long kernels get fewer runs (at least 1).
        patience_s: with ``target_speed`` set (seconds of the probe: the table's speed),
            how long a batch goes on visiting the kernels with fewer than ``(rounds + 1) //
            2`` visits at that speed in either state, so that a fast phase of the machine
            is waited out rather than rescaled; the entries are then given at that speed.
    """

    def __init__(
        self,
        threads: int,
        evict_bytes: int,
        block: int,
        *,
        l1_bytes: int = 32 << 10,
        warmup: int = 3,
        rounds: int = 20,
        hot: int = 3,
        cold: int = 2,
        budget_s: float = 0.02,
        patience_s: float = 5.0,
    ):
        self.target_speed: float | None = None
        self.patience_s = patience_s
        self.threads, self.block, self.l1_evict = threads, block, 2 * l1_bytes
        self.warmup, self.rounds, self.hot, self.cold = warmup, rounds, hot, cold
        self.budget_s = budget_s
        self._buf = np.ones(max(1, evict_bytes, self.l1_evict) // 4, np.float32)
        self.clock = time.thread_time_ns if threads == 1 else time.perf_counter_ns

    def _bound(self, model: bytes, in_place: bool = False) -> tuple:
        """A session with bound inputs and outputs, and the inputs (OrtValue, data);
        ``in_place``: its output bound to its first input's buffer, as the network runs a
        kernel that writes over its input (:func:`.specs._in_place`)."""
        import onnxruntime as ort

        sess = session(model, self.threads, level="ORT_ENABLE_EXTENDED")
        binding, inputs = sess.io_binding(), []
        for name, value in random_feeds(sess).items():
            ov = ort.OrtValue.ortvalue_from_shape_and_type(list(value.shape), value.dtype, "cpu")
            ov.update_inplace(value)
            binding.bind_ortvalue_input(name, ov)
            inputs.append((ov, value))
        if in_place:
            binding.bind_ortvalue_output(sess.get_outputs()[0].name, inputs[0][0])
            return sess, binding, inputs
        for o in sess.get_outputs():
            binding.bind_output(o.name, "cpu")
        sess.run_with_iobinding(binding)
        for o, v in zip(sess.get_outputs(), binding.get_outputs()):
            binding.bind_ortvalue_output(o.name, v)
        return sess, binding, inputs

    def _visit(self, pair: tuple, n: int, evict: int, out: list[int]) -> None:
        """Time ``n`` runs, each after reading ``evict`` bytes of other data (at least 2 x L1)
        and, if more than the L1 was to be read (a cold run), running the twin instance and
        rewriting the inputs; the inputs are restored once, before the untimed first run."""
        (sess, binding, inputs), (twin, twin_binding, _) = pair
        run, clock = sess.run_with_iobinding, self.clock
        buf, far = self._buf[: max(evict, self.l1_evict) // 4], evict > self.l1_evict
        for ov, value in inputs:
            ov.update_inplace(value)
        run(binding)  # untimed: before it, other kernels' visits touched far more than ``evict``
        for _ in range(n):
            buf.sum()
            if far:  # cold: the kernel's code warm, its input just written by a producer
                twin.run_with_iobinding(twin_binding)
                for ov, value in inputs:
                    ov.update_inplace(value)
            t0 = clock()
            run(binding)
            out.append(clock() - t0)

    def _load(self, specs: list[dict[str, Any]]) -> list[tuple]:
        empty = Graph("empty")
        empty.add_input("x", 1, [1])
        empty.outputs.append("x")
        pairs = []
        for spec in [None] + specs:
            try:
                model = to_proto(
                    empty if spec is None else kernel_graph(spec, self.block), value_info=False
                ).SerializeToString()
            except (ValueError, KeyError, TypeError) as e:
                raise HwccError(f"cannot build a model of kernel {spec['op']}: {e}") from None
            try:
                in_place = bool(spec and spec.get("inplace"))
                pairs.append((self._bound(model, in_place), self._bound(model, in_place)))
            except Exception as e:  # onnxruntime raises its own types
                raise HwccError(
                    f"onnxruntime cannot run kernel {spec['op']}: {e}",
                    "this node cannot be measured on the CPU target",
                ) from None
        return pairs

    def __call__(self, specs: list[dict[str, Any]]) -> list[tuple[float, float]]:
        """``(hot_s, cold_s)`` of each spec."""
        zero, probe_pair, *kernels = self._load([REFERENCE] + specs)  # REFERENCE: the speed probe
        evict = [min(int(s.get("evict", self._buf.size * 4)), self._buf.size * 4) for s in specs]
        reps = []
        for pair in kernels:
            probe: list[int] = []
            self._visit(pair, self.warmup, 0, probe)
            reps.append(max(1, min(self.hot, int(self.budget_s / max(min(probe) * 1e-9, 1e-7)))))
        # Per visit: (kernel runs, empty-model runs, the probe's median right after, right before).
        visits: list[tuple[list, list]] = [([], []) for _ in kernels]  # hot, cold
        target, need = self.target_speed and self.target_speed * 1e9, (self.rounds + 1) // 2
        last, todo, done, deadline = self._probe(probe_pair), list(range(len(kernels))), 0, None
        while todo:  # all hot visits, then all cold ones: a cold visit's
            for state in (0, 1):  # eviction would linger into the next hot visit
                for i in todo:
                    pair, n, e, v = kernels[i], reps[i], evict[i], visits[i]
                    k, z = [], []
                    runs, ev = (n, 0) if state == 0 else (max(1, n * self.cold // self.hot), e)
                    self._visit(zero, self.hot if state == 0 else self.cold, ev, z)
                    self._visit(pair, runs, ev, k)
                    after = self._probe(probe_pair)
                    v[state].append((k, z, after, last))
                    last = after
            done += 1
            if done < self.rounds:
                continue
            if not target:
                break
            deadline = deadline or time.monotonic() + self.patience_s
            todo = [i for i in todo if min(_n_at_speed(st, target) for st in visits[i]) < need]
            if time.monotonic() > deadline:
                break
        probes = [r for v in visits for st in v for _, _, r, _ in st]
        speed = float(np.median([r for r in probes if r <= np.percentile(probes, 10) / SAME_SPEED]))
        if target and any(_same_speed(r, target) for r in probes):
            speed = target
        self.last_speed, self.last_fastest = speed * 1e-9, min(probes) * 1e-9
        return [tuple(_at_speed(st, speed) for st in v) for v in visits]

    def _probe(self, pair: tuple) -> float:
        """The speed probe's median of two runs, in nanoseconds."""
        r: list[int] = []
        self._visit(pair, 2, 0, r)
        return float(np.median(r))


SAME_SPEED = 0.8  # a visit whose probe is within this factor of the speed ran at that speed
LEAST_AT_SPEED = 2  # visits at the speed that give a kernel's time without the last resort


def _same_speed(probe: float, speed: float) -> bool:
    return SAME_SPEED * speed <= probe <= speed / SAME_SPEED


def _n_at_speed(visits: list[tuple], speed: float) -> int:
    """How many of ``visits`` (as in :func:`_at_speed`) ran at ``speed`` by all their probes."""
    return sum(all(_same_speed(p, speed) for p in v[2:]) for v in visits)


def _at_speed(visits: list[tuple], speed: float) -> float:
    """Median kernel minus median empty model over the visits that ran at ``speed``.

    A visit is ``(kernel runs, empty-model runs, probe after[, probe before])``. This
    machine slows down by up to about 1.8x within seconds when its neighbours are busy (it
    is shared); the probes timed around each visit say whether the visit ran at ``speed``
    (both must agree when both are given). Visits at another speed are dropped. The phase's
    own speed drifts too (by about 10 % from one minute to the next): each kept visit is
    scaled by ``speed / probe``, its probes' mean, which for so small a ratio is what a
    change of clock does to every kernel. Only if fewer than :data:`LEAST_AT_SPEED` are left
    are all visits used, rescaled the same way: the last resort, since across the phases
    kernels change by other ratios than the probe (a 3x3 conv of 48 to 192 channels at 16x48
    by 1.13x where the probe changed by 1.6x: rescaled by the probe, it came out 30 % too
    fast). With a third of the visits required (up to protocol 15), three quarters of
    a recogniser's kernel timings took the last resort in a busy hour, and two tables built
    back to back differed by 3.4 % on a median kernel of 100 us or more (1.9 % with two
    visits)."""
    same = [v for v in visits if all(_same_speed(p, speed) for p in v[2:])]
    use = same if len(same) >= LEAST_AT_SPEED else visits
    scale = [speed / float(np.mean(v[2:])) for v in use]
    k = [t * f for v, f in zip(use, scale) for t in v[0]]
    z = [t * f for v, f in zip(use, scale) for t in v[1]]
    return max(0.0, float(np.median(k) - np.median(z)) * 1e-9)
