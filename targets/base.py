"""The target contract: how a backend prices a graph.

A *family* is one cost model (``targets/eie/target.py``); a *target* is a family with its
hardware parameters, read from a TOML file (``targets/eie/eie.toml``). A new chip of a known
family is one more ``.toml``. Every TOML file names its family and says where its
numbers come from::

    family = "eie"
    description = "EIE, 64 PEs at 800 MHz (Han et al., ISCA 2016)"
    provenance = "model"               # or "measured"
    validated_against = ["EIE Table IV per-layer actual time", ...]
    host = "cpu"                       # where nodes the target cannot run are priced
    [params]
    num_pes = 64 ...
    [legal_form.quantize_kmeans]       # passes (in order) that put a model in the form
    bits = 4                           # the chip runs, with their knob settings
    zero_slot = true

Control flow is priced as it runs: before a graph is analysed, each ``If`` is replaced by
the nodes of the branch its condition takes (:meth:`Target.resolved`, after
:func:`hwcc.ir.workload_flow.resolve`; the condition is evaluated on ``CostContext.sample``
where it depends on the inputs), so every target prices a branch's nodes like top-level
ones, on chip or on its host; what could not be decided is in :attr:`GraphCost.notes`.

Pricing goes through the workload view: :meth:`Target.cost` analyses the graph once
(:func:`hwcc.ir.workload.analyze`), asks :meth:`Target.supports` of every layer, prices the
supported ones with :meth:`Target.cost_layer` and the others on the declared host, and
returns a :class:`GraphCost`. A layer that is not supported and has no host is an error,
never silently dropped.

:meth:`Target.cost` is a pure lookup: it never measures and never writes a file. A target
priced from tables measured on the device (the ``cpu``), or whose host is one, measures
what a graph needs up front, in :meth:`Target.prepare`; a lookup that misses raises
:class:`NotPrepared` (what is missing, what to do). :meth:`Target.price` does both steps.

More a compiler takes from a target: its *legal form* (:attr:`Target.legal_form`, the
``[legal_form.<pass>]`` tables: passes and knob settings that turn a model into what the
chip runs, e.g. int8 for the TPU), its *payload* (:meth:`Target.write_payload`: files the
chip needs beside the model, such as EIE's compressed weights), and the channel counts it
runs fastest (``channel_granularity`` in ``[params]``: its SIMD lanes, tiles or PEs).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import pkgutil
import tomllib
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.workload import Layer, Workload, analyze
from hwcc.ir.workload_flow import Resolved, has_control_flow, resolve
from hwcc.targets.costs import (
    ZERO,
    Cost,
    CostContext,
    GraphCost,
    LayerCost,
    NotPrepared,
    scale_batch,
)
from hwcc.targets.legal_form import parse_legal_form

# The cost records are defined in .costs and exported here too: they are part of the contract.
__all__ = [
    "Cost",
    "LayerCost",
    "GraphCost",
    "CostContext",
    "NotPrepared",
    "Target",
    "register_family",
    "load_target",
    "list_targets",
    "scale_batch",
    "ZERO",
]

_TARGET_DIR = Path(__file__).parent


class Target:
    """A cost model with its parameters. Subclasses implement :meth:`cost_layer`.

    Attributes:
        family: the cost-model family (class attribute, set by ``register_family``).
        name: the target's name (its TOML file's stem).
        params: the ``[params]`` table of the TOML file.
        provenance: ``"measured"`` (a lookup table built on the device) or ``"model"``.
        validated_against: the published figures the model was checked against.
        host: the target that runs what this one cannot, or None.
        primary_metric: what a bare relative budget (``50%``) limits on this target.
        uses_activation_vectors: it simulates measured activation vectors, not densities.
        runs_dynamic_int8: onnxruntime's DynamicQuantizeMatMul runs on it as written.
    """

    family: ClassVar[str] = ""
    primary_metric: ClassVar[str] = "latency_s"
    uses_activation_vectors: ClassVar[bool] = False  # True: give it CostContext.activations
    runs_dynamic_int8: ClassVar[bool] = False

    def __init__(self, name: str, spec: Mapping[str, Any], source: Path | None = None):
        self.name = name
        self.spec = dict(spec)
        self.params: dict[str, Any] = dict(spec.get("params", {}))
        self.description: str = spec.get("description", "")
        self.provenance: str = spec.get("provenance", "model")
        self.validated_against: list[str] = list(spec.get("validated_against", []))
        self.sources: list[str] = list(spec.get("sources", []))
        self.host: str | None = spec.get("host")
        self.source = source
        self._host: Target | _HostRecorder | None = None  # loaded on first use: host_target
        if self.provenance not in ("measured", "model"):
            raise HwccError(
                f"target {name}: provenance must be 'measured' or 'model', not {self.provenance!r}"
            )
        self._legal_form = parse_legal_form(spec.get("legal_form", {}), source or f"target {name}")
        # graph -> (the sample it was resolved with, its Resolved form): prepare and cost
        # of one graph resolve its control flow once; resolved graph -> (taken, notes)
        self._resolved: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._flat: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @property
    def legal_form(self) -> dict[str, dict[str, Any]]:
        """Pass name -> knob settings that put a model in the form this chip runs, in order
        (e.g. ``{"quantize_int8": {"calibration": "minmax"}}``); empty: it runs as it is."""
        return copy.deepcopy(self._legal_form)

    def legalize(
        self, graph: Graph, calib: Mapping[str, Any] | None = None, seed: int = 0
    ) -> Graph:
        """``graph`` in the form this chip runs: its :attr:`legal_form` passes, in order,
        through the pass manager (shapes inferred, IR linted; not verified: the forms are
        lossy). ``calib`` is calibration data for the passes that need ranges."""
        from hwcc.ir.pass_manager import PassManager  # imports the pass registry: only when needed
        from hwcc.ir.transform import PassContext

        for name, knobs in self._legal_form.items():
            ctx = PassContext(knobs={name: dict(knobs)}, data=calib, seed=seed, verify=False)
            graph = PassManager([name], ctx).run(graph).graph
        return graph

    def channel_granularity(self) -> tuple[int, ...]:  # its lanes, tiles or PEs, as data
        """Channel multiples this chip runs fastest."""
        return tuple(int(g) for g in self.params.get("channel_granularity", ()))

    @property
    def host_target(self) -> Target | None:
        """The target named by :attr:`host` (loaded once per instance), or None."""
        if self._host is None and self.host is not None:
            self._host = load_target(self.host)
        return self._host

    def prepare(self, graph: Graph | Workload, ctx: CostContext | None = None) -> None:
        """Make :meth:`cost` able to price ``graph`` as a pure lookup. A model has nothing to
        do; a measured target (or a target whose host is one) measures here, up front,
        whatever its tables lack for the layers it or its host will run. Pricers call it
        once per new graph; :meth:`cost` itself never measures.

        The default, for models: the host (if any) prepares the layers this target sends
        it (:meth:`prepare_layers`). They are found by pricing ``graph`` once with the
        host's lookups recorded instead of made, so that the routing is exactly
        :meth:`cost`'s, subclasses' included.
        """
        host = self.host_target
        if host is None:
            return
        recorder = _HostRecorder(host)
        self._host = recorder
        try:
            self.cost(graph, ctx)
        finally:
            self._host = host
        if recorder.layers:
            host.prepare_layers(recorder.layers, ctx or CostContext())

    def prepare_layers(self, layers: list[Layer], ctx: CostContext) -> None:
        """Make :meth:`cost_layer` a pure lookup for ``layers`` (already scaled to
        ``ctx.batch``): what a host does for the target it serves. A model has nothing to
        do; a measured target measures what its tables lack."""
        return None

    def price(self, graph: Graph | Workload, ctx: CostContext | None = None) -> GraphCost:
        """:meth:`prepare`, then :meth:`cost`: for pricing a graph once, not in a search."""
        self.prepare(graph, ctx)
        return self.cost(graph, ctx)

    # -- what subclasses provide ---------------------------------------------------
    def supports(self, layer: Layer) -> str | None:
        """None if this target runs ``layer``; else the reason it does not."""
        return None

    def cost_layer(self, layer: Layer, ctx: CostContext) -> Cost:
        """The cost of one supported layer (``layer`` already scaled to ``ctx.batch``)."""
        raise NotImplementedError

    def write_payload(
        self, graph: Graph, folder: Path, ctx: CostContext | None = None
    ) -> dict[str, str]:
        """Write the files this chip needs besides the model, under ``folder/<family>/``.

        Args:
            graph: the final model, in this target's :attr:`legal_form`.
            folder: the artifact folder (being written; the caller renames it into place).
            ctx: the pricing options the model was compiled with.

        Returns:
            Each written file's path relative to ``folder`` (``/``-separated) -> a one-line
            description. The default writes nothing: the model itself is the deliverable.
        """
        return {}

    def profile(self, graph: Graph, progress: bool = True) -> Any:
        """Measure ``graph``'s layers into this device's table (measured targets only)."""
        raise HwccError(
            f"target {self.name} is a {self.provenance} target: it has no table to profile",
            "profile a measured target, e.g. --target cpu",
        )

    @property
    def measures(self) -> bool:
        """Whether :meth:`measure_latency` times models on this machine (a measured target
        whose device is here), so a search can check its predictions against the device."""
        timer = getattr(self.measure_latency, "__func__", self.measure_latency)
        return self.provenance == "measured" and timer is not Target.measure_latency

    def measure_latency(
        self, graphs: list[Graph], *, rounds: int = 5, runs: int = 50
    ) -> list[float]:
        """Each graph's latency measured whole on the device, side by side (measured targets
        whose device is this machine)."""
        raise HwccError(
            f"target {self.name} is a {self.provenance} target: it cannot time a model here",
            "measure on a measured target, e.g. --target cpu",
        )

    # -- shared machinery ------------------------------------------------------------
    def resolved(self, graph: Graph, ctx: CostContext | None = None) -> Resolved:
        """``graph`` with each ``If`` replaced by the branch it takes on ``ctx.sample``
        (:func:`hwcc.ir.workload_flow.resolve`), kept per graph object; a graph without
        control flow is returned as it is, at the cost of one look at its nodes."""
        sample = ctx.sample if ctx is not None else None
        hit = self._resolved.get(graph)
        if hit is not None and hit[0] is sample:
            return hit[1]
        if graph in self._flat:  # a resolved graph priced again (as the EIE target does)
            taken, notes = self._flat[graph]
            return Resolved(graph, dict(taken), list(notes))
        if not has_control_flow(graph):
            return Resolved(graph)
        flat = resolve(graph, sample)
        self._resolved[graph] = (sample, flat)
        self._flat[flat.graph] = (dict(flat.taken), list(flat.notes))  # no reference to it
        return flat

    def workload(self, graph: Graph, ctx: CostContext) -> Workload:
        """``graph`` analysed with ``ctx``'s activation densities and density memo."""
        return analyze(graph, act_density=ctx.act_density, densities=ctx.densities)

    def cost(self, graph: Graph | Workload, ctx: CostContext | None = None) -> GraphCost:
        """Price every node of ``graph`` (or of an already analysed workload): a lookup.

        Raises:
            NotPrepared: a measured target's (or host's) tables lack what ``graph`` needs;
                :meth:`prepare` first.
        """
        ctx = ctx or CostContext()
        if ctx.batch < 1:
            raise HwccError(f"batch must be at least 1, got {ctx.batch}")
        notes: list[str] = []
        if isinstance(graph, Graph):
            flat = self.resolved(graph, ctx)
            graph, notes = flat.graph, flat.notes
        work = graph if isinstance(graph, Workload) else self.workload(graph, ctx)
        out: list[LayerCost] = []
        for layer in work.layers:
            layer = scale_batch(layer, ctx.batch)
            if layer.kind == "constant":
                out.append(LayerCost(layer, ZERO, self.name))
                continue
            # A layer the workload view could not read (unknown op or shapes) has no
            # dims for a model to price: it goes to the host, which may measure it.
            unread = None if layer.known or self.host is None else layer.reason
            reason = self.supports(layer) or unread
            if reason is None and not layer.known and self.provenance == "model":
                raise HwccError(
                    f"target {self.name} cannot price {layer.name}: {layer.reason}",
                    "fix the input shapes (--input-shape), or give this target a host",
                )
            if reason is None:
                out.append(LayerCost(layer, self.cost_layer(layer, ctx), self.name))
                continue
            if self.host is None:
                raise HwccError(
                    f"target {self.name} cannot run {layer.name} ({layer.op_type}): {reason}",
                    "run it on a target that supports this op, or give this target a host",
                )
            host = self.host_target
            if host.supports(layer) is not None:
                raise HwccError(
                    f"neither {self.name} nor its host {host.name} can run {layer.name}: {reason}"
                )
            c = host.cost_layer(layer, ctx)
            note = f"{reason} [{c.note}]" if c.note else reason  # why it left comes first
            out.append(LayerCost(layer, dataclasses.replace(c, note=note), host.name))
        return GraphCost(self.name, out, ctx.batch, list(notes))

    def describe(self) -> dict[str, Any]:
        """What ``hwcc targets`` shows: parameters and where the numbers come from."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "provenance": self.provenance,
            "validated_against": self.validated_against,
            "sources": self.sources,
            "host": self.host,
            "params": self.params,
            "legal_form": self.legal_form,
        }


class _HostRecorder:
    """Stands in for a host while :meth:`Target.prepare` prices a graph: it records the
    layers sent to the host and prices them at zero, without a lookup."""

    def __init__(self, host: Target):
        self.host, self.name, self.layers = host, host.name, []

    def supports(self, layer: Layer) -> str | None:
        return self.host.supports(layer)

    def cost_layer(self, layer: Layer, ctx: CostContext) -> Cost:
        self.layers.append(layer)
        return ZERO


# ---------------------------------------------------------------------- registry
_FAMILIES: dict[str, type[Target]] = {}


def register_family(name: str) -> Callable[[type[Target]], type[Target]]:
    """Class decorator: ``@register_family("eie")`` makes the class the ``eie`` family."""

    def register(cls: type[Target]) -> type[Target]:
        cls.family = name
        _FAMILIES[name] = cls
        return cls

    return register


def _discover() -> None:
    package = importlib.import_module("hwcc.targets")
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:  # a family is a folder: its package registers the family
            importlib.import_module(f"hwcc.targets.{info.name}")


def _target_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(_TARGET_DIR.glob("*/*.toml"))}


def load_target(name_or_path: str | Path) -> Target:
    """The target called ``name`` (a bundled ``targets/<name>.toml``) or read from a TOML path."""
    _discover()
    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.is_file():
            raise HwccError(f"target file not found: {path}")
    else:
        files = _target_files()
        if str(name_or_path) not in files:
            raise HwccError(
                f"unknown target {str(name_or_path)!r}",
                f"known targets: {', '.join(files) or '(none)'}; or give a path to a .toml file",
            )
        path = files[str(name_or_path)]
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise HwccError(f"{path} is not valid TOML: {e}") from None
    family = spec.get("family")
    if family not in _FAMILIES:
        raise HwccError(
            f"{path} names family {family!r}, which does not exist",
            f"known families: {', '.join(sorted(_FAMILIES))}",
        )
    return _FAMILIES[family](path.stem, spec, path)


def list_targets() -> list[Target]:
    """Every bundled target."""
    return [load_target(n) for n in _target_files()]
