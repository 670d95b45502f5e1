"""What pricing returns and takes: costs per layer and per graph, and one pricing's options.

:class:`Cost` is one layer's price, :class:`LayerCost` a layer with it and where it runs,
:class:`GraphCost` a graph's layers with their totals; :class:`CostContext` holds the
options of one pricing. :class:`NotPrepared` is the error of a lookup that misses. The
target contract that produces them is :mod:`hwcc.targets.base`, which exports them too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir.workload import DensityMemo, Layer

__all__ = ["Cost", "LayerCost", "GraphCost", "CostContext", "NotPrepared", "scale_batch", "ZERO"]


@dataclass(frozen=True)
class Cost:
    """The price of one layer.

    Attributes:
        latency_s: seconds, for the whole batch.
        energy_j: joules, for the whole batch.
        breakdown: named parts (``compute_s``, ``memory_s``, ``dram_j``, ...). Keys ending in
            ``_s`` are seconds and in ``_j`` joules; other keys are counts or ratios.
        note: a short remark shown in tables (e.g. "split over 3 passes: exceeds SRAM").
    """

    latency_s: float
    energy_j: float
    breakdown: Mapping[str, float] = field(default_factory=dict)
    note: str = ""


ZERO = Cost(0.0, 0.0)


@dataclass(frozen=True)
class LayerCost:
    """A layer with its cost and where it runs (``on`` is the target or its host)."""

    layer: Layer
    cost: Cost
    on: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.layer.name,
            "op_type": self.layer.op_type,
            "on": self.on,
            "latency_s": self.cost.latency_s,
            "energy_j": self.cost.energy_j,
            "breakdown": dict(self.cost.breakdown),
            "note": self.cost.note,
        }


@dataclass
class GraphCost:
    """Per-layer costs in graph order, with totals; host-run layers are counted apart."""

    target: str
    layers: list[LayerCost]
    batch: int = 1
    notes: list[str] = field(default_factory=list)  # what the user should know about it

    def _sum(self, attr: str, where: Callable[[LayerCost], bool] = lambda x: True) -> float:
        return sum(getattr(x.cost, attr) for x in self.layers if where(x))

    @property
    def latency_s(self) -> float:
        return self._sum("latency_s")

    @property
    def energy_j(self) -> float:
        return self._sum("energy_j")

    @property
    def host_latency_s(self) -> float:
        return self._sum("latency_s", lambda x: x.on != self.target)

    @property
    def host_energy_j(self) -> float:
        return self._sum("energy_j", lambda x: x.on != self.target)

    def layer(self, name: str) -> LayerCost:
        for x in self.layers:
            if x.layer.name == name:
                return x
        raise KeyError(f"no layer named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "batch": self.batch,
            "layers": [x.to_dict() for x in self.layers],
            "total": {"latency_s": self.latency_s, "energy_j": self.energy_j},
            "host": {"latency_s": self.host_latency_s, "energy_j": self.host_energy_j},
            **({"notes": list(self.notes)} if self.notes else {}),
        }


@dataclass(frozen=True)
class CostContext:
    """Options for one pricing.

    Attributes:
        batch: inputs processed together; latency and energy are for the whole batch.
        act_density: fraction of non-zero input activations, for all layers or per layer
            name (measured on data by :func:`hwcc.data.activations.measure_density`).
        activations: measured input activation vectors per layer name, for models that
            simulate the actual sparsity pattern (EIE); see
            :func:`hwcc.data.activations.capture_activations`.
        densities: weight densities already counted, owned by a caller that prices many
            graphs sharing their weights (a search); None: count them in every analysis.
        sample: one run's inputs (name -> array), which decide the branch an ``If`` whose
            condition depends on input values takes (:mod:`hwcc.ir.workload_flow`);
            None: such an ``If`` is priced as its more expensive branch, with a note.
    """

    batch: int = 1
    act_density: float | Mapping[str, float] | None = None
    activations: Mapping[str, Any] | None = None
    densities: DensityMemo | None = field(default=None, compare=False, repr=False)
    sample: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


class NotPrepared(HwccError):
    """A lookup that missed: the target's tables lack a measurement the graph needs.

    :meth:`Target.cost` never measures; :meth:`Target.prepare` (or :meth:`Target.price`)
    measures first. The message says what is missing, the hint what to do.
    """


def scale_batch(layer: Layer, batch: int) -> Layer:
    """The layer run on ``batch`` inputs at once: activations and work scale, weights don't."""
    if batch == 1 or layer.N is None:
        return layer
    return dataclasses.replace(
        layer,
        N=layer.N * batch,
        macs=layer.macs * batch,
        ops=layer.ops * batch,
        input_bytes=layer.input_bytes * batch,
        output_bytes=layer.output_bytes * batch,
    )
