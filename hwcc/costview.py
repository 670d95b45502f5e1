"""Text tables for priced graphs (``hwcc inspect --target``) and for ``hwcc targets``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hwcc.budget import format_metric

_HIDE = ("constant", "data_movement")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_cost_table(gc: Any, *, breakdown: bool = False, show_all: bool = False) -> str:
    """A per-layer table of a ``GraphCost`` with a totals line.

    Layers that cost nothing and only move or compute constants are summarised on one
    line unless ``show_all``. With ``breakdown``, each breakdown key becomes a column.
    """
    rows = [x for x in gc.layers if show_all or not (x.layer.kind in _HIDE and x.cost.latency_s == 0
                                                     and x.cost.energy_j == 0)]
    hidden = len(gc.layers) - len(rows)
    keys: list[str] = []
    if breakdown:
        for x in rows:
            keys.extend(k for k in x.cost.breakdown if k not in keys)
    total_e = gc.energy_j or 1.0
    head = ["layer", "op", "on", "latency", "energy", "%E"] + keys + ["note"]
    table = [head]
    for x in rows:
        c = x.cost
        cells = [_cut(x.layer.name, 32), x.layer.op_type, x.on, format_metric("latency_s", c.latency_s),
                 format_metric("energy_j", c.energy_j), f"{100 * c.energy_j / total_e:.1f}"]
        cells += [_fmt_breakdown(k, c.breakdown.get(k)) for k in keys]
        cells.append(_cut(c.note, 60))
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    right = {3, 4, 5} | set(range(6, 6 + len(keys)))
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in
                       enumerate(zip(r, widths))).rstrip() for r in table]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    total = (f"TOTAL on {gc.target} (batch {gc.batch}): latency {format_metric('latency_s', gc.latency_s)}, "
             f"energy {format_metric('energy_j', gc.energy_j)}")
    if gc.host_latency_s or gc.host_energy_j:
        total += (f"; of which on the host: {format_metric('latency_s', gc.host_latency_s)}, "
                  f"{format_metric('energy_j', gc.host_energy_j)}")
    lines.append(total)
    if hidden:
        lines.append(f"({hidden} data-movement or constant nodes at no cost hidden; --all shows them)")
    return "\n".join(lines)


def _fmt_breakdown(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key.endswith("_s"):
        return format_metric("latency_s", value)
    if key.endswith("_j"):
        return format_metric("energy_j", value)
    return f"{value:.4g}"


def format_targets(targets: Sequence[Any]) -> str:
    """What ``hwcc targets`` prints: each target, its provenance and its parameters."""
    out = []
    for t in targets:
        d = t.describe()
        out.append(f"{d['name']}  ({d['family']} family, {d['provenance']})")
        if d["description"]:
            out.append(f"  {d['description']}")
        if d["provenance"] == "measured":
            out.append("  numbers: measured on this device (lookup table built with 'hwcc profile')")
        if d["validated_against"]:
            out.append("  validated against: " + "; ".join(d["validated_against"]))
        if d["sources"]:
            out.append("  sources: " + "; ".join(d["sources"]))
        if d["host"]:
            out.append(f"  host for unsupported nodes: {d['host']}")
        if d.get("legal_form"):
            form = "; ".join(f"{p} {', '.join(f'{k}={v}' for k, v in knobs.items())}"
                             for p, knobs in d["legal_form"].items())
            out.append(f"  legal form (what hwcc compile produces for it): {form}")
        params = ", ".join(f"{k}={_short(v)}" for k, v in d["params"].items())
        if params:
            out.append(f"  params: {params}")
        out.append("")
    return "\n".join(out).rstrip()


def _short(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_short(x)}" for k, x in v.items()) + "}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
