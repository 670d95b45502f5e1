"""Profiling a graph on this machine's CPU: the kernels its table lacks, measured, and a report.

What ``hwcc profile --target cpu`` runs, through :func:`hwcc.targets.cpu.target.profile`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from hwcc.ir import Graph
from hwcc.progress import Progress
from hwcc.targets.cpu.kernels import spec_key

if TYPE_CHECKING:
    from hwcc.targets.cpu.target import CpuTarget

__all__ = ["ProfileReport", "profile_graph"]


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
        return (
            f"{self.model}: {self.kernels} kernels, {self.distinct} distinct; "
            f"measured {self.measured}, reused {self.reused} in {self.seconds:.1f} s; "
            f"predicted {self.latency_s * 1e3:.3f} ms; table {self.table}"
        )


def profile_graph(t: CpuTarget, graph: Graph, progress: bool = True) -> ProfileReport:
    """Measure every kernel configuration ``graph`` needs that ``t``'s table lacks, then the
    session overhead, and price ``graph``; :func:`hwcc.targets.cpu.target.profile` is the
    public entry (it takes a target's name too)."""
    start = time.monotonic()
    plan = t.plan(graph)
    specs = t.specs(plan)
    missing = t.table.missing(specs)
    distinct = len(set(map(spec_key, specs)))
    reused = sum(
        all(spec_key(c) in t.table.entries for c, _ in t.table.corners(s))
        for s in {spec_key(s): s for s in specs}.values()
    )
    with Progress(
        len(missing), f"profiling {graph.name}", unit="kernels", enabled=None if progress else False
    ) as bar:
        t.table.ensure(specs, progress=lambda n, note: bar.update(n, note=note))
    t.measure_session()
    latency = t.cost(graph).latency_s
    return ProfileReport(
        graph.name,
        str(t.table.path),
        len(specs),
        distinct,
        len(missing),
        reused,
        time.monotonic() - start,
        latency,
    )
