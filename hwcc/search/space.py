"""What the search can change: one *unit* per layer or coupled group and pass.

A unit knows the amounts its pass can apply to it, ordered from the smallest change to the
largest, and how to apply one. The search picks, per unit, the smallest amount whose
priced result meets the iteration's target (:func:`smallest_meeting`).

Units come from a registry filled by decorator, one function per pass name:

* ``prune_channels``: each prunable channel group of ``C`` channels; amounts remove
  ``k = 1 … C − 1`` channels, the ``C − k`` with the largest L2 filter norms kept
  (NetAdapt's filter choice). Residual, depthwise and concat couplings come with the group.
* ``prune_weights``: each Conv/Gemm/MatMul with constant weights; amounts lower its density
  from the current ``d`` to ``d·(1 − j/20)``, ``j = 1 … 19`` (magnitude pruning).
* ``low_rank``: each factorable layer not factored yet; amounts keep rank ratios
  ``0.9, 0.8, … 0.1`` of the full rank.
* ``winograd``: each 3×3 stride-1 Conv, one amount (lowered to F(2×2, 3×3)).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwcc.search.budget import format_metric
from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.transform import PassContext, get_pass

__all__ = ["Unit", "units", "smallest_meeting", "PROPOSERS"]


@dataclass
class Unit:
    """One layer (or coupled group) that one pass can change.

    Attributes:
        id: a stable, readable name (``channels of /0/Conv``).
        pass_name: the pass that changes it.
        layers: the graph nodes it touches (for energy ordering).
        amounts: the amounts, smallest change first.
        apply: ``apply(graph, amount) -> Graph`` (a new graph) or a reason string.
        settings: ``settings(amount) -> dict`` the knob values, for the history.
    """

    id: str
    pass_name: str
    layers: tuple[str, ...]
    amounts: Sequence[Any]
    apply: Callable[[Graph, Any], Graph | str] = field(repr=False)
    settings: Callable[[Any], dict[str, Any]] = field(repr=False)


PROPOSERS: dict[str, Callable[[Graph], Iterator[Unit]]] = {}


def proposer(pass_name: str):
    def register(fn: Callable[[Graph], Iterator[Unit]]):
        PROPOSERS[pass_name] = fn
        return fn
    return register


def units(graph: Graph, passes: Sequence[str]) -> list[Unit]:
    """Every unit of ``graph`` for the given passes, in graph order per pass.

    Raises:
        HwccError: a pass the search cannot drive.
    """
    out: list[Unit] = []
    for name in passes:
        if name not in PROPOSERS:
            raise HwccError(f"the search cannot drive pass {name!r}",
                            f"passes it can drive: {', '.join(sorted(PROPOSERS))}")
        out.extend(PROPOSERS[name](graph))
    return out


def _run_pass(graph: Graph, name: str, knobs: dict[str, Any]) -> Graph | str:
    res = get_pass(name)(graph, PassContext(knobs={name: knobs}, verify=False))  # shapes inferred, linted
    return res.graph if res.modified else (res.reason or f"{name} changed nothing")


@proposer("prune_channels")
def _channel_units(graph: Graph) -> Iterator[Unit]:
    from hwcc.passes.prune_channels import prunable_groups, prune_k

    for g in prunable_groups(graph):
        if g.channels < 2:
            continue
        yield Unit(f"channels of {g.id}", "prune_channels", tuple(g.producers) + tuple(g.consumers),
                   range(1, g.channels),
                   lambda gr, k, g=g: prune_k(gr, g, k, "l2"),
                   lambda k, g=g: {"group": g.id, "k": k, "channels": f"{g.channels}->{g.channels - k}"})


@proposer("prune_weights")
def _weight_units(graph: Graph) -> Iterator[Unit]:
    import numpy as np

    from hwcc.passes.lib.weights import find_layers

    layers, _ = find_layers(graph)
    for layer in layers:
        d0 = float(np.count_nonzero(layer.array)) / max(1, layer.array.size)
        if layer.array.size < 16 or d0 <= 0.02:
            continue
        densities = [round(d0 * (1 - j / 20), 4) for j in range(1, 20)]
        name = layer.node.name
        yield Unit(f"weights of {name}", "prune_weights", (name,), densities,
                   lambda gr, d, name=name: _run_pass(gr, "prune_weights", {"density": 1.0,
                                                                              "layer_density": f"{name}={d}"}),
                   lambda d, d0=d0: {"density": f"{d0:.3g}->{d:.3g}"})


@proposer("low_rank")
def _rank_units(graph: Graph) -> Iterator[Unit]:
    for node in graph.nodes:
        if node.op_type not in ("Gemm", "MatMul", "Conv") or "low_rank" in node.meta:
            continue
        if node.op_type == "Conv" and node.attrs.get("group", 1) != 1:
            continue
        name = node.name
        yield Unit(f"rank of {name}", "low_rank", (name,), [round(1 - j / 10, 2) for j in range(1, 10)],
                   lambda gr, r, name=name: _run_pass(gr, "low_rank", {"layers": name, "rank_ratio": r}),
                   lambda r: {"rank_ratio": r})


@proposer("winograd")
def _winograd_units(graph: Graph) -> Iterator[Unit]:
    for node in graph.nodes:
        if node.op_type != "Conv" or list(node.attrs.get("kernel_shape", [])) != [3, 3]:
            continue
        if any(s != 1 for s in node.attrs.get("strides", [1, 1])) or node.attrs.get("group", 1) != 1:
            continue
        name = node.name
        yield Unit(f"winograd of {name}", "winograd", (name,), ["F(2x2,3x3)"],
                   lambda gr, _a, name=name: _run_pass(gr, "winograd", {"layers": name, "mode": "lower"}),
                   lambda a: {"form": a})


def smallest_meeting(unit: Unit, graph: Graph, price: Callable[[Graph], float], target: float,
                     metric: str | None = None) -> tuple[Any, Graph, float] | str:
    """The smallest amount of ``unit`` whose result prices at or below ``target``.

    The largest amount is tried first: if even it misses, the unit cannot help this
    iteration. Then a binary search over the amounts, which assumes the price falls as the
    amount grows (true of the cost models up to lookup-table noise; where it is not, the
    search may return a larger amount than needed, never one that misses the target).

    Args:
        metric: what ``price`` returns (``latency_s``...), to write the reason in its units.

    Returns:
        ``(amount, graph, value)``, or the reason no amount meets the target.
    """
    amounts = list(unit.amounts)
    if not amounts:
        return "nothing to change"
    tried: dict[int, tuple[Graph, float] | str] = {}

    def at(i: int) -> tuple[Graph, float] | str:
        if i not in tried:
            g = unit.apply(graph, amounts[i])
            tried[i] = g if isinstance(g, str) else (g, price(g))
        return tried[i]

    last = at(len(amounts) - 1)
    if isinstance(last, str):
        return last
    if last[1] > target:
        return (f"even the largest change ({_show(unit.settings(amounts[-1]))}) prices at "
                f"{format_metric(metric, last[1])} > target {format_metric(metric, target)}")
    lo, hi = 0, len(amounts) - 1  # hi meets the target
    while lo < hi:
        mid = (lo + hi) // 2
        r = at(mid)
        if not isinstance(r, str) and r[1] <= target:
            hi = mid
        else:
            lo = mid + 1
    g, value = at(hi)  # type: ignore[misc]
    return amounts[hi], g, value


def _show(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())
