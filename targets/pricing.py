"""Pricing a graph as a target runs it: in the target's legal form, prepared, then looked up.

A search prices thousands of graphs. :class:`Pricer` keeps that cheap and honest:

* every graph is priced in the target's legal form (int8 on the TPU, fixed point on
  Eyeriss and EIE: :meth:`~hwcc.targets.base.Target.legalize`). When legalizing the
  input leaves its latency and energy unchanged, float graphs are priced directly
  (legalizing every proposal would cost far more than pricing it) and their size is
  scaled by the legal form's bits per weight (the input's legal size over its float
  size: the legal forms change every weight's width alike);
* :meth:`~hwcc.targets.base.Target.cost` is a pure lookup; when it misses
  (:class:`~hwcc.targets.costs.NotPrepared`: a measured target's table lacks a kernel the
  graph needs) the target prepares the graph, measuring up front, and the lookup is
  repeated. Preparing only on a miss keeps a model target's pricing to one pass;
* each graph is priced once (a cache keyed by the graph object, dropped with it), and
  weight densities are counted once per weight array (one :class:`DensityMemo` a pricer).

The input's legal form is made once and kept (:attr:`Pricer.source_legal`). The first run
of the calibration inputs is the sample (:attr:`CostContext.sample`) that decides which
branch of an ``If`` runs when its condition reads the inputs (the silero detector's
sample rate).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from hwcc.data.activations import split_batches
from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.workload import DensityMemo
from hwcc.ir.workload_flow import has_control_flow
from hwcc.targets.base import CostContext, GraphCost, NotPrepared, Target

__all__ = ["Pricer", "first_run", "metrics_of"]


def first_run(graph: Graph, data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The first run's inputs of ``data`` for ``graph`` (None when there is no data or
    it does not fit the graph's inputs: pricing then says it could not tell)."""
    if not data:
        return None
    try:
        run = split_batches(graph, data)[0]
    except (HwccError, KeyError, ValueError, TypeError):
        return None
    fits = all(
        k in run and tuple(run[k].shape) == tuple(graph.tensors[k].shape)
        for k in graph.real_inputs()
    )
    return run if fits else None


def metrics_of(cost: GraphCost) -> dict[str, float]:
    """Latency, energy and size (weights of compute layers at their bit width) of a priced
    graph: latency and energy of the system (chip and host), and of the chip alone
    (``chip_latency_s``, ``chip_energy_j``: what ``chip:`` budgets limit)."""
    size = sum(lc.layer.weight_bytes for lc in cost.layers)
    latency, energy = float(cost.latency_s), float(cost.energy_j)
    return {
        "latency_s": latency,
        "energy_j": energy,
        "size_bytes": float(size),
        "chip_latency_s": latency - float(cost.host_latency_s),
        "chip_energy_j": energy - float(cost.host_energy_j),
    }


class Pricer:
    """Metrics of graphs as ``target`` prices them, in its legal form.

    Args:
        target: the target.
        source: the input model (after cleanups or not: its legal form is the reference).
        calib: calibration inputs for legal forms that need ranges; pricing needs the
            form's types and shapes, not good ranges, so a few samples do.
        seed: seeds the legalizing passes.
    """

    def __init__(
        self, target: Target, source: Graph, calib: Mapping[str, Any] | None = None, seed: int = 0
    ):
        self.target, self.calib, self.seed = target, calib, seed
        self.cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        sample = first_run(source, calib) if has_control_flow(source) else None
        self.ctx = CostContext(densities=DensityMemo(), sample=sample)
        self.source_legal = self.legalize(source)
        self.size_scale, self.direct = 1.0, not target.legal_form
        if target.legal_form:
            raw, lawful = self.cost_metrics(source), self.cost_metrics(self.source_legal)
            self.direct = all(raw[m] == lawful[m] for m in ("latency_s", "energy_j"))
            self.size_scale = lawful["size_bytes"] / raw["size_bytes"] if raw["size_bytes"] else 1.0

    def legalize(self, graph: Graph) -> Graph:
        """``graph`` in the target's legal form (the graph itself when there is none)."""
        return (
            self.target.legalize(graph, self.calib, self.seed) if self.target.legal_form else graph
        )

    def cost(self, graph: Graph) -> GraphCost:
        """``graph`` priced as it is: looked up, prepared first if the lookup misses."""
        try:
            return self.target.cost(graph, self.ctx)
        except NotPrepared:
            self.target.prepare(graph, self.ctx)
            return self.target.cost(graph, self.ctx)

    def cost_metrics(self, graph: Graph) -> dict[str, float]:
        """:func:`metrics_of` ``graph`` priced as it is (not legalized)."""
        return metrics_of(self.cost(graph))

    def __call__(self, graph: Graph) -> dict[str, float]:
        """The metrics the search compares with the budgets (cached per graph)."""
        if graph not in self.cache:
            if self.direct:
                m = self.cost_metrics(graph)
                self.cache[graph] = {**m, "size_bytes": m["size_bytes"] * self.size_scale}
            else:
                self.cache[graph] = self.cost_metrics(self.legalize(graph))
        return self.cache[graph]

    def original(self) -> dict[str, float]:
        """The input model's metrics, in the legal form: what relative budgets scale."""
        return self.cost_metrics(self.source_legal)

    def notes(self) -> list[str]:
        """What the user should know about how the input model was priced (a branch of an
        ``If`` chosen without sample inputs, say): the run's warnings carry them."""
        return list(self.cost(self.source_legal).notes)

    def layer_energy(self, graph: Graph) -> dict[str, float]:
        """Node name -> energy, for most-energy-first ordering."""
        cost = self.cost(graph if self.direct else self.legalize(graph))
        return {lc.layer.name: lc.cost.energy_j for lc in cost.layers}
