"""The pass manager: runs passes in sequence and holds each to the pass contract.

The contract is :mod:`hwcc.ir.transform`'s: a declared in-place promise kept, initializer
arrays never written, shapes refreshed and the IR linted after every modifying pass, and,
with ``ctx.verify``, original and rewritten graphs compared in onnxruntime. Every failure
is a :class:`~hwcc.errors.PassError` naming the pass and every pass before it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from hwcc.data.activations import load_feeds, split_batches
from hwcc.errors import HwccError, PassError
from hwcc.ir import Graph, onnx_io
from hwcc.ir.transform import VERIFY_FAILED_EXIT, Pass, PassContext, PassResult, get_pass
from hwcc.ir.verify import Verification, compare

__all__ = ["PassManager"]


class PassManager:
    """Runs passes in sequence and checks each one's contract (see the module docstring).

    Args:
        passes: pass instances or registered names.
        ctx: the options; a default :class:`PassContext` (verification on) if omitted.
    """

    def __init__(self, passes: Sequence[Pass | str], ctx: PassContext | None = None):
        self.passes = [get_pass(p) if isinstance(p, str) else p for p in passes]
        self.ctx = ctx if ctx is not None else PassContext()

    def run(self, graph: Graph) -> PassResult:
        """Run every pass on ``graph``.

        Returns:
            The final graph; ``modified`` if any pass modified; ``details["results"]``,
            the list of ``(pass name, PassResult)`` in run order; ``reason``, when nothing
            changed, each pass's reason.

        Raises:
            PassError: a pass raised, broke its contract, left an invalid graph, or
                failed verification. The message names it and the passes before it.
        """
        for p in self.passes:
            p.options(self.ctx)  # a bad knob value fails before any pass runs
        results: list[tuple[str, PassResult]] = []
        for p in self.passes:
            done = [name for name, _ in results]
            result = self._guard(p, done, self._run_one, p, graph)
            results.append((p.name, result))
            graph = result.graph
        modified = any(r.modified for _, r in results)
        reason = (
            None
            if modified
            else "; ".join(f"{n}: {r.reason or 'no change'}" for n, r in results) or "no passes"
        )
        return PassResult(graph, modified, reason, {"results": results})

    def _run_one(self, p: Pass, graph: Graph) -> PassResult:
        ctx = self.ctx
        before = graph.copy() if (ctx.verify and p.in_place) else graph
        mark = _fingerprint(graph)
        for inst in ctx.instruments:
            inst.run_before_pass(p, graph)
        with _frozen_initializers(graph):
            result = p.call(graph, ctx)
        for inst in ctx.instruments:
            inst.run_after_pass(p, result)
        self._check_promise(p, graph, mark, result)
        if not result.modified:
            return result
        onnx_io.infer_shapes(result.graph)
        result.graph.lint()
        if ctx.verify:
            v = compare(
                before,
                result.graph,
                rtol=ctx.rtol,
                atol=ctx.atol,
                feeds=_data_feeds(before, ctx),
                n=ctx.verify_samples,
                seed=ctx.seed,
            )
            if p.exact and not v.passed:
                raise _VerificationFailed(v)
            result = dataclasses.replace(result, details={**result.details, "verification": v})
        return result

    @staticmethod
    def _check_promise(p: Pass, graph: Graph, mark: tuple, result: PassResult) -> None:
        if not isinstance(result, PassResult) or not isinstance(result.graph, Graph):
            raise _Broken(f"call() returned {type(result).__name__}, not a PassResult with a Graph")
        if p.in_place and result.graph is not graph:
            raise _Broken("it is declared in_place but returned a different graph object")
        if not p.in_place:
            if _fingerprint(graph) != mark:
                raise _Broken("it is declared not in_place but changed its input graph")
            if result.modified and result.graph is graph:
                raise _Broken(
                    "it is declared not in_place but returned its input graph as modified"
                )
        if not result.modified and result.graph is graph and _fingerprint(graph) != mark:
            raise _Broken("it reported modified=False but changed the graph")

    def _guard(self, p: Pass, done: list[str], fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            before = ", ".join(repr(n) for n in done) or "none"
            if isinstance(e, _VerificationFailed):
                summary = "; ".join(
                    x.strip() for x in e.verification.summary().splitlines() if x.strip()
                )
                what = f"changed the model's outputs ({summary})"
                hint = (
                    "the rewrite is wrong for this model; report it with the model, "
                    "and leave the pass out"
                )
            elif isinstance(e, _Broken):
                what, hint = f"broke the pass contract: {e}", "this is a bug in the pass"
            elif isinstance(e, HwccError):
                what, hint = e.message, e.hint
            else:
                what = f"{type(e).__name__}: {e}"
                hint = "this is a bug in the pass; leave it out to go on"
                if isinstance(e, ValueError) and "read-only" in str(e):
                    hint = (
                        "initializers are immutable: assign a new array instead of writing into one"
                    )
            err = PassError(
                f"pass {p.name!r} failed (passes run before it: {before}): {what}", hint
            )
            err.pass_name, err.passes_before = p.name, list(done)
            if isinstance(e, _VerificationFailed):
                err.exit_code = VERIFY_FAILED_EXIT
            raise err from e


def _data_feeds(graph: Graph, ctx: PassContext, runs: int = 16) -> list[dict] | None:
    """Input sets from ``ctx.data`` for verification, or None for random inputs.

    A lossy pass calibrated on data (int8) is judged on inputs like those it was
    calibrated on; random normal inputs fall outside that range and overstate its error.
    """
    if ctx.data is None:
        return None
    return split_batches(graph, load_feeds(graph, ctx.data))[:runs]


class _Broken(Exception):
    """A pass broke the contract it declared."""


class _VerificationFailed(Exception):
    def __init__(self, verification: Verification):
        super().__init__(verification.summary())
        self.verification = verification


def _fingerprint(graph: Graph) -> tuple:
    """Cheap identity of a graph's structure: nodes, wiring, attributes, tensor slots.

    Attribute values that are arrays or opaque objects count by identity, the rest by
    value; initializer contents are guarded separately (they are read-only during a pass).
    """

    def attr_key(v: Any) -> Any:
        return (
            v
            if isinstance(v, (int, float, str, bytes))
            else id(v)
            if not isinstance(v, list)
            else repr(v)
        )

    nodes = tuple(
        (
            n.name,
            n.op_type,
            n.domain,
            n.inputs,
            n.outputs,
            n.implicit_inputs,
            tuple((k, attr_key(v)) for k, v in n.attrs.items()),
            tuple(n.meta),
        )
        for n in graph.nodes
    )
    tensors = tuple((name, t.elem_type, t.shape, id(t.data)) for name, t in graph.tensors.items())
    return tuple(graph.inputs), tuple(graph.outputs), nodes, tensors


@contextmanager
def _frozen_initializers(graph: Graph) -> Iterator[None]:
    """Make initializer arrays read-only for the duration; restore their flags after.

    Arrays over memory numpy does not own (an onnxruntime buffer) are left alone: their
    flag could not be lifted again.
    """
    thawed = [
        (depth, a)
        for a in graph.initializers.values()
        if a.flags.writeable
        for root, depth in [_root(a)]
        if root.flags.owndata
    ]
    for _, a in thawed:
        a.flags.writeable = False
    try:
        yield
    finally:
        for _, a in sorted(thawed, key=lambda da: da[0]):  # a view is writeable once its base is
            a.flags.writeable = True


def _root(a: np.ndarray) -> tuple[np.ndarray, int]:
    """The array that owns ``a``'s memory, and how many views deep ``a`` is."""
    depth = 0
    while isinstance(a.base, np.ndarray):
        a, depth = a.base, depth + 1
    return a, depth
