"""The pass contract, the pass registry and the pass manager.

A pass is one class in one file of ``passes/`` (the package ``hwcc.passes``), decorated
with :func:`register_pass`. Discovery imports every module of that package, so adding a
pass is adding a file; nothing keeps a list of them.

Contract (checked by :class:`PassManager`, which every way of running a pass goes
through):

1. ``Pass.call(graph, ctx) -> PassResult(graph, modified, reason, details)``. A pass
   that changes nothing says why in ``reason`` (shown by ``--explain``).
2. A pass declared ``in_place = False`` leaves its input graph as it was and returns a
   new graph when it modifies; one declared ``in_place = True`` returns the graph it was
   given. Initializer arrays are immutable for every pass: those numpy owns are made
   read-only while a pass runs, so writing into one fails at the line that does it.
3. After every modifying pass the manager refreshes shapes (``onnx_io.infer_shapes``),
   checks the IR (``Graph.lint``) and, when ``ctx.verify`` is on, runs the graphs before
   and after through onnxruntime on the same random inputs (``hwcc.ir.verify.compare``).
   An exact pass (``exact = True``) must then agree to ``ctx.rtol``/``ctx.atol``; a lossy
   one has its error recorded in ``details["verification"]``.
4. Any failure is a :class:`~hwcc.errors.PassError` naming the pass and every pass that
   ran before it.

Options travel in one :class:`PassContext`: knob values, calibration data, the seed,
verification tolerances and instruments. Passes read their knobs with
``self.options(ctx)``; ``hwcc.passes.lib.edits`` has the graph edits passes share.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import pkgutil
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwcc.ir import onnx_io
from hwcc.errors import HwccError, PassError
from hwcc.ir import Graph
from hwcc.ir.verify import Verification, compare

__all__ = [
    "ApplyReport", "Knob", "Pass", "PassContext", "PassInstrument", "PassManager", "PassResult",
    "PassTimer", "apply_by_hand", "get_pass", "list_passes", "register_pass",
]

# A verification that finds the outputs changed exits with this (``hwcc apply --verify``):
# the check failed, the input was fine (2 is bad input), like an unmet budget in compile.
VERIFY_FAILED_EXIT = 3

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


# ---------------------------------------------------------------------- knobs
@dataclass(frozen=True)
class Knob:
    """A setting of a pass that a search may propose or a user may ``--set``.

    Attributes:
        name: the knob's name, unique within its pass.
        type: ``int``, ``float``, ``str`` or ``bool``.
        default: the value used when nothing is set.
        help: one line saying what it does.
        range: inclusive ``(low, high)`` bounds for numbers; either may be ``None``.
        choices: the accepted values, for any type.
    """

    name: str
    type: type
    default: Any
    help: str
    range: tuple[float | None, float | None] | None = None
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        """What the knob accepts, in words: ``an int in [0, 1024]``."""
        if self.choices is not None:
            return "one of " + ", ".join(_show(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        kind = {int: "an int", float: "a float", str: "a string"}[self.type]
        lo, hi = self.range or (None, None)
        if lo is not None and hi is not None:
            return f"{kind} in [{lo}, {hi}]"
        if lo is not None:
            return f"{kind} >= {lo}"
        if hi is not None:
            return f"{kind} <= {hi}"
        return kind

    def parse(self, text: str, pass_name: str) -> Any:
        """The value of ``--set NAME=TEXT``, checked; ``HwccError`` if it is not accepted."""
        raw = text.strip()
        try:
            if self.type is bool:
                if raw.lower() not in _TRUE | _FALSE:
                    raise ValueError
                value: Any = raw.lower() in _TRUE
            else:
                value = self.type(raw)
        except ValueError:
            raise self._error(text, pass_name) from None
        return self.validate(value, pass_name)

    def validate(self, value: Any, pass_name: str) -> Any:
        """``value`` if it is of the knob's type and in range (ints widen to floats)."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, self.type) and not (self.type is int and isinstance(value, bool))
        if ok and self.type is float:
            ok = math.isfinite(value)
        if ok and self.choices is not None:
            ok = value in self.choices
        if ok and self.range is not None:
            lo, hi = self.range
            ok = (lo is None or value >= lo) and (hi is None or value <= hi)
        if not ok:
            raise self._error(value, pass_name)
        return value

    def _error(self, value: Any, pass_name: str) -> HwccError:
        return HwccError(
            f"pass {pass_name!r}: knob {self.name!r} cannot be {_show(value)}",
            f"{self.name} takes {self.describe()} (default {_show(self.default)})",
        )


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


# ---------------------------------------------------------------------- results, context
@dataclass
class PassResult:
    """What a pass returns.

    Attributes:
        graph: the resulting graph.
        modified: whether the pass changed anything.
        reason: why the pass did not apply (``None`` when it did).
        details: pass-specific facts: match counts, what was skipped and why, and
            ``verification`` when the manager checked the rewrite.
    """

    graph: Graph
    modified: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class PassInstrument:
    """Hooks the manager calls around each pass; override what you need."""

    def run_before_pass(self, pass_: Pass, graph: Graph) -> None:
        """Called just before ``pass_.call``."""

    def run_after_pass(self, pass_: Pass, result: PassResult) -> None:
        """Called just after ``pass_.call`` returned, before the manager's checks."""


class PassTimer(PassInstrument):
    """Wall time of each pass's ``call``, in run order."""

    def __init__(self) -> None:
        self.timings: list[tuple[str, float]] = []
        self._start = 0.0

    def run_before_pass(self, pass_: Pass, graph: Graph) -> None:
        self._start = time.perf_counter()

    def run_after_pass(self, pass_: Pass, result: PassResult) -> None:
        self.timings.append((pass_.name, time.perf_counter() - self._start))

    def summary(self) -> str:
        return "\n".join(f"{name:<24} {sec * 1e3:9.1f} ms" for name, sec in self.timings)


@dataclass
class PassContext:
    """Every option a pipeline of passes runs with.

    Attributes:
        knobs: pass name -> knob name -> value (values are checked against the knobs).
        data: calibration or fine-tuning data for data-driven passes, by input name.
        seed: seed for anything random (verification inputs, sampling in passes).
        verify: compare each modifying pass's output with its input in onnxruntime.
        rtol: relative tolerance of that comparison.
        atol: absolute tolerance of that comparison.
        verify_samples: how many random input sets the comparison tries.
        instruments: hooks run around each pass (e.g. :class:`PassTimer`).
    """

    knobs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    data: Mapping[str, np.ndarray] | None = None
    seed: int = 0
    verify: bool = True
    rtol: float = 1e-4
    atol: float = 1e-5
    verify_samples: int = 2
    instruments: Sequence[PassInstrument] = ()


# ---------------------------------------------------------------------- the pass
class Pass:
    """Base class of passes. Subclasses set the class attributes and implement ``call``.

    The subclass's docstring lists its rewrite cases, numbered, including the cases where
    it must not fire (``register_pass`` checks that there is a numbered list).

    Attributes:
        name: the registry name (the file's name, by convention).
        knobs: the settings it reads through :meth:`options`.
        in_place: ``True`` if ``call`` edits and returns the graph it is given.
        exact: ``True`` if the rewrite keeps outputs equal up to rounding.
    """

    name: ClassVar[str] = ""
    knobs: ClassVar[tuple[Knob, ...]] = ()
    in_place: ClassVar[bool] = False
    exact: ClassVar[bool] = True

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    def __call__(self, graph: Graph, ctx: PassContext | None = None) -> PassResult:
        """Run this pass alone under a :class:`PassManager` (checked as in a pipeline)."""
        return PassManager([self], ctx).run(graph).details["results"][0][1]

    @classmethod
    def knob(cls, name: str) -> Knob:
        for k in cls.knobs:
            if k.name == name:
                return k
        known = ", ".join(k.name for k in cls.knobs) or "none"
        raise HwccError(f"pass {cls.name!r} has no knob {name!r}", f"its knobs are: {known}")

    def options(self, ctx: PassContext) -> dict[str, Any]:
        """This pass's knob values in ``ctx``, defaults filled in, each one checked."""
        given = ctx.knobs.get(self.name, {})
        for key in given:
            self.knob(key)
        return {k.name: k.validate(given[k.name], self.name) if k.name in given else k.default
                for k in self.knobs}

    @classmethod
    def parse_settings(cls, settings: Mapping[str, str]) -> dict[str, Any]:
        """Typed knob values from ``--set NAME=VALUE`` strings."""
        return {key: cls.knob(key).parse(text, cls.name) for key, text in settings.items()}

    @classmethod
    def summary(cls) -> str:
        """The first line of the pass's docstring."""
        return (cls.__doc__ or "").strip().split("\n", 1)[0]


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Pass]] = {}
_NUMBERED = re.compile(r"^\s*1\.\s", re.M)


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator adding a pass to the registry, after checking its declaration."""
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise TypeError(f"@register_pass decorates Pass subclasses, not {cls!r}")
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not cls.name or not cls.name.isidentifier():
        raise TypeError(f"{where}: name must be an identifier, not {cls.name!r}")
    if not _NUMBERED.search(cls.__doc__ or ""):
        raise TypeError(f"{where}: the docstring must list the rewrite cases, numbered 1., 2., ...")
    names = [k.name for k in cls.knobs]
    if len(set(names)) != len(names):
        raise TypeError(f"{where}: knob names repeat: {names}")
    for k in cls.knobs:
        if k.type not in (int, float, str, bool):
            raise TypeError(f"{where}: knob {k.name!r} has type {k.type!r}; use int, float, str or bool")
        try:
            k.validate(k.default, cls.name)
        except HwccError as e:
            raise TypeError(f"{where}: default of knob {k.name!r} is not accepted: {e}") from None
    old = _REGISTRY.get(cls.name)
    if old is not None and f"{old.__module__}.{old.__qualname__}" != where:
        raise TypeError(f"two passes are named {cls.name!r}: {old.__module__} and {cls.__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> dict[str, type[Pass]]:
    """Import every module of ``hwcc.passes`` not imported yet; return the registry."""
    import hwcc.passes as package

    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.ispkg or info.name.rpartition(".")[2].startswith("_") or info.name in sys.modules:
            continue
        try:
            importlib.import_module(info.name)
        except Exception as e:
            raise HwccError(f"the pass module {info.name} cannot be imported: {type(e).__name__}: {e}",
                            "fix or remove that file in passes/") from e
    return _REGISTRY


def list_passes() -> list[str]:
    """Names of every registered pass, sorted."""
    return sorted(_discover())


def get_pass(name: str) -> Pass:
    """An instance of the pass registered as ``name``; ``HwccError`` if there is none."""
    registry = _discover()
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise HwccError(f"unknown pass {name!r}", f"{guess}known passes: {', '.join(sorted(registry))}")
    return registry[name]()


# ---------------------------------------------------------------------- manager
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
        reason = None if modified else "; ".join(f"{n}: {r.reason or 'no change'}" for n, r in results) or "no passes"
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
            v = compare(before, result.graph, rtol=ctx.rtol, atol=ctx.atol, feeds=_data_feeds(before, ctx),
                        n=ctx.verify_samples, seed=ctx.seed)
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
                raise _Broken("it is declared not in_place but returned its input graph as modified")
        if not result.modified and result.graph is graph and _fingerprint(graph) != mark:
            raise _Broken("it reported modified=False but changed the graph")

    def _guard(self, p: Pass, done: list[str], fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            before = ", ".join(repr(n) for n in done) or "none"
            if isinstance(e, _VerificationFailed):
                summary = "; ".join(x.strip() for x in e.verification.summary().splitlines() if x.strip())
                what = f"changed the model's outputs ({summary})"
                hint = "the rewrite is wrong for this model; report it with the model, and leave the pass out"
            elif isinstance(e, _Broken):
                what, hint = f"broke the pass contract: {e}", "this is a bug in the pass"
            elif isinstance(e, HwccError):
                what, hint = e.message, e.hint
            else:
                what = f"{type(e).__name__}: {e}"
                hint = "this is a bug in the pass; leave it out to go on"
                if isinstance(e, ValueError) and "read-only" in str(e):
                    hint = "initializers are immutable: assign a new array instead of writing into one"
            err = PassError(f"pass {p.name!r} failed (passes run before it: {before}): {what}", hint)
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
    from hwcc.data.activations import load_feeds, split_batches

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
        return v if isinstance(v, (int, float, str, bytes)) else id(v) if not isinstance(v, list) else repr(v)

    nodes = tuple(
        (n.name, n.op_type, n.domain, n.inputs, n.outputs, n.implicit_inputs,
         tuple((k, attr_key(v)) for k, v in n.attrs.items()), tuple(n.meta))
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
    thawed = [(depth, a) for a in graph.initializers.values() if a.flags.writeable
              for root, depth in [_root(a)] if root.flags.owndata]
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


# ---------------------------------------------------------------------- by hand
@dataclass
class ApplyReport:
    """What ``hwcc apply`` did, for :meth:`summary`.

    Attributes:
        pass_name: the pass.
        settings: every knob's value used (defaults included).
        result: the pass's result; ``result.graph`` is what to write.
        ops_before: op type -> count in the input graph.
        ops_after: op type -> count in the result.
        init_bytes_before: bytes of initializers in the input graph.
        init_bytes_after: bytes of initializers in the result.
        verification: the onnxruntime comparison, or ``None`` if not asked for.
    """

    pass_name: str
    settings: dict[str, Any]
    result: PassResult
    ops_before: Counter
    ops_after: Counter
    init_bytes_before: int
    init_bytes_after: int
    verification: Verification | None

    @property
    def graph(self) -> Graph:
        return self.result.graph

    @property
    def modified(self) -> bool:
        return self.result.modified

    @property
    def verification_failed(self) -> bool:
        """The outputs were compared and disagree: the result must not be written."""
        return self.verification is not None and not self.verification.passed

    def summary(self) -> str:
        """A few lines for a person: what changed or why nothing did, and the check."""
        knobs = ", ".join(f"{k}={_show(v)}" for k, v in self.settings.items())
        head = f"{self.pass_name}" + (f" ({knobs})" if knobs else "")
        if not self.modified:
            return f"{head}: did not apply: {self.result.reason or 'nothing to change'}"
        n0, n1 = sum(self.ops_before.values()), sum(self.ops_after.values())
        delta = {op: self.ops_after[op] - self.ops_before[op] for op in self.ops_before | self.ops_after}
        changes = ", ".join(f"{op} {d:+d}" for op, d in sorted(delta.items()) if d)
        lines = [
            f"{head}: applied",
            f"  nodes: {n0} -> {n1}" + (f" ({changes})" if changes else ""),
            f"  initializer bytes: {_bytes(self.init_bytes_before)} -> {_bytes(self.init_bytes_after)}",
        ]
        if self.verification is None:
            lines.append("  not verified (use --verify to compare outputs in onnxruntime)")
        else:
            lines.extend("  " + s for s in self.verification.summary().splitlines())
        return "\n".join(lines)


def _bytes(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def apply_by_hand(
    graph: Graph,
    pass_name: str,
    settings: Mapping[str, str],
    *,
    verify: bool,
    rtol: float,
    atol: float,
    seed: int = 0,
    data: Any = None,
) -> ApplyReport:
    """Run one pass as ``hwcc apply PASS MODEL [--set knob=value ...] [--verify]`` does.

    Args:
        graph: the loaded model; left unchanged.
        pass_name: a registered pass.
        settings: knob name -> value as typed on the command line.
        verify: compare the outputs before and after in onnxruntime.
        rtol: relative tolerance of the comparison.
        atol: absolute tolerance of the comparison.
        seed: seed of the random inputs.
        data: calibration or importance data for passes that use it (a mapping from
            input name to array, or an ``.npz`` path), as ``PassContext.data``.

    Returns:
        The report; write ``report.graph`` only after this returns.

    Raises:
        HwccError: unknown pass or knob, a bad knob value, or a failed pass; a
            :class:`PassError` with ``exit_code`` :data:`VERIFY_FAILED_EXIT` when an exact
            pass fails verification (a lossy one's failure is in the report).
    """
    p = get_pass(pass_name)
    ctx = PassContext(knobs={p.name: p.parse_settings(settings)}, seed=seed, verify=verify,
                      rtol=rtol, atol=atol, data=data)
    options = p.options(ctx)
    ops_before, bytes_before = _census(graph)
    result = p(graph.copy() if p.in_place else graph, ctx)
    ops_after, bytes_after = _census(result.graph)
    return ApplyReport(p.name, options, result, ops_before, ops_after, bytes_before, bytes_after,
                       result.details.get("verification"))


def _census(graph: Graph) -> tuple[Counter, int]:
    return Counter(n.op_type for n in graph.nodes), sum(a.nbytes for a in graph.initializers.values())
