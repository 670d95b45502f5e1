"""How much of ONNX's node-test suite the torch executor reproduces: :func:`measure`.

The suite is the one shipped inside the ``onnx`` package (``collect_testcases``, as
tests/test_onnx_io_round_trip.py uses it). Only the cases onnxruntime runs count; each
of them is loaded (``hwcc.load``), built with :func:`~hwcc.train.graph_module.to_torch`
and run on the case's inputs, and its outputs are compared with the case's expected
outputs within the case's own tolerance (onnx's defaults: ``rtol=1e-3``, ``atol=1e-7``),
dtype and shape included. Every case that is not reproduced has a reason: the builder's
refusal, an exception, a numeric mismatch, a timeout, or inputs the executor cannot take
at all (sequences, optionals, strings).

The cases run in a worker process, one at a time, each with a time limit: a case that
hangs is recorded and the worker replaced. ``python -m hwcc.train.coverage`` prints the
summary table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import torch

import hwcc
from hwcc.errors import HwccError
from hwcc.train.graph_module import to_torch

__all__ = ["CaseResult", "Coverage", "classify", "main", "measure", "op_of", "summary"]

REPRODUCED = "reproduced"
REFUSED = "refused"  # the executor's builder said no (HwccError)
ERROR = "error"  # an exception while loading, building or running
MISMATCH = "mismatch"  # ran, but the outputs differ
NOT_RUNNABLE = "not runnable"  # inputs/outputs the executor cannot take at all
TIMEOUT = "timeout"


@dataclass(frozen=True)
class CaseResult:
    """One node-test case that onnxruntime runs.

    Attributes:
        name: the case's name (``test_add_bcast``...).
        op: the op type it tests; ``"<op> (expanded)"`` for a function's expansion.
        status: one of reproduced, refused, error, mismatch, not runnable, timeout.
        reason: why it is not reproduced ("" when it is).
    """

    name: str
    op: str
    status: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == REPRODUCED


@dataclass
class Coverage:
    """The measurement: every case onnxruntime runs, with its result.

    Attributes:
        results: one per case that onnxruntime runs, in suite order.
        total: cases in the suite (run by onnxruntime or not).
        onnx_version: the ``onnx`` whose suite was measured.
    """

    results: list[CaseResult] = field(default_factory=list)
    total: int = 0
    onnx_version: str = onnx.__version__

    @property
    def runnable(self) -> int:
        """Cases onnxruntime runs: the denominator."""
        return len(self.results)

    @property
    def reproduced(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def share(self) -> float:
        """Reproduced / runnable, 0..1."""
        return self.reproduced / self.runnable if self.runnable else 0.0

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    def by_status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def by_op(self) -> dict[str, tuple[int, int, str]]:
        """op -> (cases, reproduced, the first failure's reason or "")."""
        out: dict[str, tuple[int, int, str]] = {}
        for r in self.results:
            cases, ok, first = out.get(r.op, (0, 0, ""))
            reason = first or ("" if r.ok else f"{r.status}: {r.reason}")
            out[r.op] = (cases + 1, ok + r.ok, reason)
        return out

    def line(self) -> str:
        """The one-line summary."""
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.by_status().items()))
        return (
            f"torch executor: {self.reproduced} of {self.runnable} ONNX node tests that "
            f"onnxruntime runs reproduced ({100 * self.share:.1f}%; {statuses}; "
            f"{self.total} cases in onnx {self.onnx_version})"
        )


# ---------------------------------------------------------------- one case
def _cases(names: Iterable[str] | None = None) -> list:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    if names is None:
        return cases
    wanted = set(names)
    return [c for c in cases if c.name in wanted]


def op_of(case, single: dict[str, str] | None = None) -> str:
    """The op type a case tests: its node's; an expansion's is its twin's, marked."""
    nodes = case.model.graph.node
    if "_expanded" not in case.name:
        return nodes[0].op_type if nodes else "(no node)"
    base = case.name.split("_expanded")[0]
    op = (single or {}).get(base) or (nodes[0].op_type if nodes else "?")
    return f"{op} (expanded)"


def _untakeable(model: onnx.ModelProto) -> str:
    """Why the executor cannot take the model's inputs/outputs at all, or ""."""
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            which = v.type.WhichOneof("value")
            if which != "tensor_type":
                return f"{which.replace('_type', '')} {kind} {v.name!r}"
            if v.type.tensor_type.elem_type == onnx.TensorProto.STRING:
                return f"string {kind} {v.name!r}"
    return ""


def _ort_runs(case) -> bool:
    """Whether onnxruntime runs the case (as the round-trip test decides it)."""
    so = ort.SessionOptions()
    so.log_severity_level = 4  # its failures are expected here: quiet
    names = [i.name for i in case.model.graph.input]
    feeds = dict(zip(names, case.data_sets[0][0])) if case.data_sets else {}
    try:
        sess = ort.InferenceSession(
            case.model.SerializeToString(), so, providers=["CPUExecutionProvider"]
        )
        sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - onnxruntime lacks this op/opset/type: not counted
        return False
    return True


def _compare(expected: Sequence, got: Sequence, rtol: float, atol: float) -> str:
    """ "" if ``got`` matches ``expected``; else what differs."""
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for i, (e, g) in enumerate(zip(expected, got)):
        e, g = np.asarray(e), np.asarray(g)
        if g.dtype != e.dtype:
            return f"output {i} has dtype {g.dtype}, expected {e.dtype}"
        if g.shape != e.shape:
            return f"output {i} has shape {g.shape}, expected {e.shape}"
        if e.dtype.kind in "fc":
            close = np.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
            if not close.all():
                err = np.nanmax(np.abs(g.astype(np.float64) - e.astype(np.float64)))
                return (
                    f"output {i}: {int((~close).sum())} of {e.size} values off, max |err| {err:.3g}"
                )
        elif not np.array_equal(g, e):
            return f"output {i}: {int((g != e).sum())} of {e.size} values differ"
    return ""


def _short(message: str) -> str:
    """A refusal without the graph's and nodes' names, which every case has its own of."""
    message = re.sub(
        r"graph '[^']*' has ops the torch executor cannot run: ", "no builder for ", message
    )
    message = re.sub(r" \(node '[^']*'(, domain [^)]*)?\)", "", message)
    return message.split("\n  hint: ")[0]


def classify(case, op: str | None = None) -> CaseResult | None:
    """Runs one case in this process; None when onnxruntime does not run it."""
    if not _ort_runs(case):
        return None
    op = op or op_of(case)

    def result(status: str, reason: str = "") -> CaseResult:
        return CaseResult(case.name, op, status, " ".join(reason.split())[:300])

    why = _untakeable(case.model)
    if why:
        return result(NOT_RUNNABLE, f"not runnable by the executor: {why}")
    stage = "load"
    try:
        graph = hwcc.load(case.model, allow_dynamic=True)
        stage = "build"
        module = to_torch(graph).eval()
        stage = "run"
        names = [i.name for i in case.model.graph.input]
        for inputs, expected in case.data_sets:
            feeds = {
                n: torch.from_numpy(np.array(a))  # ascontiguousarray makes a 0-d array 1-d
                for n, a in zip(names, inputs)
                if n in module.input_names
            }
            with torch.no_grad():
                got = [t.detach().cpu().numpy() for t in module(**feeds)]
            diff = _compare(expected, got, case.rtol, case.atol)
            if diff:
                return result(MISMATCH, diff)
    except HwccError as e:
        if stage == "build":
            return result(REFUSED, _short(str(e)))
        return result(ERROR, f"{stage}: {e}")
    except Exception as e:  # noqa: BLE001 - every failure is a finding, with its type
        return result(ERROR, f"{stage}: {type(e).__name__}: {e}")
    return result(REPRODUCED)


# ---------------------------------------------------------------- the worker
def _worker(conn, names: list[str]) -> None:
    torch.set_num_threads(1)
    cases = _cases()
    single = {c.name: c.model.graph.node[0].op_type for c in cases if c.model.graph.node}
    by_name = {c.name: c for c in cases}
    for name in names:
        conn.send(("start", name))
        case = by_name[name]
        conn.send(("done", classify(case, op_of(case, single))))
    conn.send(("end", None))


def measure(
    names: Iterable[str] | None = None, timeout: float = 60.0, progress: bool = False
) -> Coverage:
    """Measures the executor on the node tests (all of them, or the named ones).

    Args:
        names: case names to run; None for the whole suite.
        timeout: seconds one case may take before it counts as a timeout.
        progress: print a dot per 50 cases to stderr.

    Returns:
        The :class:`Coverage`.
    """
    cases = _cases(names)
    single = {c.name: c.model.graph.node[0].op_type for c in cases if c.model.graph.node}
    ops = {c.name: op_of(c, single) for c in cases}
    coverage = Coverage(total=len(cases))
    todo = [c.name for c in cases]
    ctx = mp.get_context("spawn")
    done = 0
    while todo:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, todo), daemon=True)
        proc.start()
        child.close()
        current, finished = None, False
        try:
            while True:
                # The first message waits for the worker to import torch and collect the suite.
                if not parent.poll(timeout + (120 if current is None else 0)):
                    break
                kind, value = parent.recv()
                if kind == "start":
                    current = value
                elif kind == "done":
                    todo.remove(current)
                    done += 1
                    if value is not None:
                        coverage.results.append(value)
                    if progress and done % 50 == 0:
                        print(".", end="", file=sys.stderr, flush=True)
                    current = None
                else:
                    finished = True
                    break
        except EOFError:  # the worker died (a crash in native code): that case is an error
            pass
        proc.kill()
        proc.join()
        if finished:
            break
        if current is None:  # died or stalled between cases: do not loop forever
            current = todo[0]
        status = TIMEOUT if proc.exitcode in (-9, None) else ERROR
        reason = f"over {timeout:g} s" if status == TIMEOUT else f"worker died ({proc.exitcode})"
        coverage.results.append(CaseResult(current, ops[current], status, reason))
        todo.remove(current)
    order = {c.name: i for i, c in enumerate(cases)}
    coverage.results.sort(key=lambda r: order[r.name])
    if progress:
        print(file=sys.stderr)
    return coverage


def summary(coverage: Coverage, width: int = 90) -> str:
    """The table: per op type, cases, reproduced and the first reason of failure."""
    rows = sorted(coverage.by_op().items(), key=lambda kv: (kv[1][1] - kv[1][0], kv[0]))
    lines = [coverage.line(), "", f"{'op':<34} {'cases':>5} {'repr.':>5}  first failure"]
    for op, (cases, ok, reason) in rows:
        lines.append(f"{op[:34]:<34} {cases:>5} {ok:>5}  {reason[:width]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hwcc.train.coverage",
        description="The torch executor's coverage of ONNX's node tests.",
    )
    parser.add_argument("names", nargs="*", help="case names (default: the whole suite)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    args = parser.parse_args(argv)
    coverage = measure(args.names or None, timeout=args.timeout, progress=True)
    print(summary(coverage))
    return 0


if __name__ == "__main__":
    sys.exit(main())
