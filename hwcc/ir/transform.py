"""The pass contract and the pass registry, searchable passes' declarations included.

A pass is one class in one file of ``passes/`` (the package ``hwcc.passes``), decorated
with :func:`register_pass`. Discovery imports every module of that package, so adding a
pass is adding a file; nothing keeps a list of them. A pass the search may drive says so
(``searchable``) and declares its units and their steps (:meth:`Pass.units`,
:mod:`hwcc.ir.search_space`); the search's passes, ``--passes`` and its aliases are read
from these declarations (:func:`search_passes`, :func:`resolve_search_passes`).

Contract (checked by :class:`~hwcc.ir.pass_manager.PassManager`, which every way of
running a pass goes through):

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

import difflib
import importlib
import pkgutil
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.knobs import Knob
from hwcc.ir.search_space import Unit

__all__ = [
    "Knob",
    "Pass",
    "PassContext",
    "PassInstrument",
    "PassResult",
    "PassTimer",
    "get_pass",
    "list_passes",
    "register_pass",
    "search_passes",
    "resolve_search_passes",
]

# A verification that finds the outputs changed exits with this (``hwcc apply --verify``):
# the check failed, the input was fine (2 is bad input), like an unmet budget in compile.
VERIFY_FAILED_EXIT = 3


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
        searchable: the search may drive it: it declares :meth:`units`.
        search_default: the search drives it when no passes are named.
        search_order: where its units come among the search's (lower first: coarse,
            structured changes before fine-grained ones).
        aliases: other words ``--passes`` accepts for it (``prune``).
    """

    name: ClassVar[str] = ""
    knobs: ClassVar[tuple[Knob, ...]] = ()
    in_place: ClassVar[bool] = False
    exact: ClassVar[bool] = True
    searchable: ClassVar[bool] = False
    search_default: ClassVar[bool] = False
    search_order: ClassVar[int] = 100
    aliases: ClassVar[tuple[str, ...]] = ()

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    def units(self, graph: Graph) -> Iterator[Unit]:
        """What this pass can change in ``graph``, one unit per layer or coupled group, each
        with its steps, smallest change first (searchable passes only; see
        :mod:`hwcc.ir.search_space`)."""
        raise NotImplementedError(f"pass {self.name!r} is not searchable")

    def __call__(self, graph: Graph, ctx: PassContext | None = None) -> PassResult:
        """Run this pass alone under a :class:`PassManager` (checked as in a pipeline)."""
        from hwcc.ir.pass_manager import PassManager  # the manager imports this module

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
        return {
            k.name: k.validate(given[k.name] if k.name in given else k.default, self.name)
            for k in self.knobs
        }

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
        wrong = k.check_declaration()
        if wrong:
            raise TypeError(f"{where}: knob {k.name!r} {wrong}")
        try:
            k.validate(k.default, cls.name)
        except HwccError as e:
            raise TypeError(f"{where}: default of knob {k.name!r} is not accepted: {e}") from None
    if cls.searchable and cls.units is Pass.units:
        raise TypeError(f"{where}: a searchable pass declares its units (def units(self, graph))")
    old = _REGISTRY.get(cls.name)
    if old is not None and f"{old.__module__}.{old.__qualname__}" != where:
        raise TypeError(f"two passes are named {cls.name!r}: {old.__module__} and {cls.__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> dict[str, type[Pass]]:
    """Import every module of ``hwcc.passes`` not imported yet; return the registry."""
    import hwcc.passes as package  # on first use: the pass modules import this one

    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.ispkg or info.name.rpartition(".")[2].startswith("_") or info.name in sys.modules:
            continue
        try:
            importlib.import_module(info.name)
        except Exception as e:
            raise HwccError(
                f"the pass module {info.name} cannot be imported: {type(e).__name__}: {e}",
                "fix or remove that file in passes/",
            ) from e
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
        raise HwccError(
            f"unknown pass {name!r}", f"{guess}known passes: {', '.join(sorted(registry))}"
        )
    return registry[name]()


def search_passes(default_only: bool = False) -> list[str]:
    """The passes the search can drive (those declared searchable), sorted; with
    ``default_only``, those it drives when none are named."""
    registry = _discover()
    names = [
        n for n, c in registry.items() if c.searchable and (c.search_default or not default_only)
    ]
    return sorted(names, key=lambda n: (registry[n].search_order, n))


def resolve_search_passes(words: Sequence[str]) -> tuple[str, ...]:
    """Pass names and aliases (``prune``, ``lowrank``) -> the searchable passes, in order,
    each once.

    Raises:
        HwccError: a word that names no searchable pass (a pass that exists but is not
            searchable is named as such).
    """
    registry = _discover()
    out: list[str] = []
    for word in words:
        names = [
            n for n, c in registry.items() if c.searchable and (n == word or word in c.aliases)
        ]
        if not names:
            what = (
                f"{word!r} is not searchable" if word in registry else f"there is no pass {word!r}"
            )
            raise HwccError(f"the search cannot drive {word!r}: {what}", _search_hint(registry))
        out.extend(
            n for n in sorted(names, key=lambda n: (registry[n].search_order, n)) if n not in out
        )
    return tuple(out)


def _search_hint(registry: Mapping[str, type[Pass]]) -> str:
    words = sorted({w for n, c in registry.items() if c.searchable for w in (n, *c.aliases)})
    return f"choose from: {', '.join(words)}"
