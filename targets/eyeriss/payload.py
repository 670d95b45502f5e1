"""The Eyeriss payload: ``eyeriss/mapping.json``, the row-stationary mapping of every layer.

The graph is priced once (:meth:`Eyeriss.cost`, with the fused ReLUs and written densities
of :meth:`Eyeriss.graph_context`); for each convolution or FC layer the chip runs, the
file gives the mapping :meth:`Eyeriss.mapping_for` returns under the same context (the
JSSC Table II parameters ``m n e p q r t``, active PEs, passes, groups, processing cycles,
the mapper's objective), which is the mapping the price was computed with, and the
layer's energy: ``mac_j`` plus joules by data type and level (ISCA 2016 Eq. 3), with
their totals by level and by type. The other nodes follow: those Eyeriss runs as well
(fused or lone ReLUs, layout-only nodes) and those on the host, with the reason. Every
node but constants appears once, so the ``energy_j`` of all entries sums to the cost's.

JSON layout::

    {"target", "batch", "objective", "estimation", "array": [rows, cols],
     "layers":       [{"name", "op_type", "kind", "on", "mapping": {...}, "latency_s",
                       "energy_j", "energy": {"mac_j", "by_level", "by_type",
                       "by_type_and_level"}, "dram_bytes", "note"}, ...],
     "other_layers": [{"name", "op_type", "kind", "on", "latency_s", "energy_j", "note"}, ...],
     "host_layers":  [{"name", "op_type", "kind", "on", "latency_s", "energy_j", "reason"}, ...],
     "total": {"latency_s", "energy_j", "host_latency_s", "host_energy_j"}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.workload import analyze
from hwcc.targets.base import CostContext, LayerCost
from hwcc.targets.eyeriss.mapper import DTYPES, LEVELS

__all__ = ["write_eyeriss_payload"]

_MAPPED = ("conv", "grouped_conv", "depthwise_conv", "gemm", "matmul")


def _energy(lc: LayerCost) -> dict[str, Any]:
    bd = lc.cost.breakdown
    return {
        "mac_j": bd["mac_j"],
        "by_level": {lv: bd[f"{lv}_j"] for lv in LEVELS},
        "by_type": {d: bd[f"{d}_j"] for d in DTYPES},
        "by_type_and_level": {d: {lv: bd[f"{d}_{lv}_j"] for lv in LEVELS} for d in DTYPES},
    }


def _entry(lc: LayerCost) -> dict[str, Any]:
    x = lc.layer
    return {
        "name": x.name,
        "op_type": x.op_type,
        "kind": x.kind,
        "on": lc.on,
        "latency_s": lc.cost.latency_s,
        "energy_j": lc.cost.energy_j,
    }


def write_eyeriss_payload(
    target: Any, graph: Graph, folder: Path, ctx: CostContext | None
) -> dict[str, str]:
    """Write ``eyeriss/mapping.json`` (module docstring) for ``target``; returns the file."""
    ctx = ctx or CostContext()
    work = analyze(graph, act_density=ctx.act_density)
    ectx = target.graph_context(graph, work, ctx)
    cost = target.price(work, ectx)  # what price(graph, ctx) computes, with the context kept
    layers, other, host = [], [], []
    for lc in cost.layers:
        if lc.layer.kind == "constant":
            continue
        if lc.on != target.name:
            host.append({**_entry(lc), "reason": lc.cost.note})
        elif lc.layer.kind in _MAPPED:
            mapping = target.mapping_for(lc.layer, ectx)
            priced = {k: lc.cost.breakdown.get(f"map_{k}") for k in "mnepqrt"}
            if any(mapping[k] != v for k, v in priced.items()):
                raise HwccError(
                    f"{lc.layer.name}: the mapping {mapping} is not the one priced ({priced})",
                    "this is a bug in hwcc: please report it",
                )
            layers.append(
                {
                    **_entry(lc),
                    "mapping": mapping,
                    "energy": _energy(lc),
                    "dram_bytes": lc.cost.breakdown["dram_bytes"],
                    "note": lc.cost.note,
                }
            )
        else:
            other.append({**_entry(lc), "note": lc.cost.note})
    doc = {
        "target": target.name,
        "batch": ctx.batch,
        "objective": target.objective,
        "estimation": target.estimation,
        "array": [target.hw.rows, target.hw.cols],
        "layers": layers,
        "other_layers": other,
        "host_layers": host,
        "total": {
            "latency_s": cost.latency_s,
            "energy_j": cost.energy_j,
            "host_latency_s": cost.host_latency_s,
            "host_energy_j": cost.host_energy_j,
        },
    }
    out = Path(folder) / target.family
    out.mkdir(parents=True, exist_ok=True)
    (out / "mapping.json").write_text(json.dumps(doc, indent=2) + "\n")
    return {
        f"{target.family}/mapping.json": "row-stationary mapping and energy by data type and "
        f"level of {len(layers)} layers; {len(host)} nodes on the host"
    }
