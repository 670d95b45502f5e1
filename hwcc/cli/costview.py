"""Text tables for priced graphs (``hwcc inspect --target``) and for ``hwcc targets``."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence
from typing import Any

from hwcc.search.budget import format_metric

_HIDE = ("constant", "data_movement")


def _columns() -> int:
    """The width to fit: the terminal's, else ``$COLUMNS``, else 100 (a log or a pipe)."""
    return max(60, shutil.get_terminal_size((100, 24)).columns)


def format_cost_table(
    gc: Any, *, breakdown: bool = False, show_all: bool = False, columns: int | None = None
) -> str:
    """A per-layer table of a ``GraphCost`` with a totals line, ``columns`` wide at most
    where it can be (default: the terminal's width).

    Layers that cost nothing and only move or compute constants are summarised on one
    line unless ``show_all``. Nothing is cut: a note longer than the room left for it
    continues on the next lines, under its column. With ``breakdown``, each layer's
    breakdown entries follow its row, indented and wrapped, rather than as one column
    each (a table 500 characters wide is read by no one).
    """
    width = columns or _columns()
    rows = [
        x
        for x in gc.layers
        if show_all
        or not (x.layer.kind in _HIDE and x.cost.latency_s == 0 and x.cost.energy_j == 0)
    ]
    hidden = len(gc.layers) - len(rows)
    total_e = gc.energy_j or 1.0
    head = ["layer", "op", "on", "latency", "energy", "%E"]
    table = [head] + [
        [
            x.layer.name,
            x.layer.op_type,
            x.on,
            format_metric("latency_s", x.cost.latency_s),
            format_metric("energy_j", x.cost.energy_j),
            f"{100 * x.cost.energy_j / total_e:.1f}",
        ]
        for x in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = [_row(head, widths) + "note"]
    note_at = len(lines[0]) - len("note")
    rule = "-" * min(width - 1, max(note_at + 30, len(lines[0])))
    lines.append(rule)
    for cells, x in zip(table[1:], rows):
        lines += _with_note(_row(cells, widths), x.cost.note, note_at, width)
        if breakdown and x.cost.breakdown:
            lines += _packed(
                [f"{k} {_fmt_breakdown(k, v)}" for k, v in x.cost.breakdown.items()], width - 1
            )
    lines.append(rule)
    total = (
        f"TOTAL on {gc.target} (batch {gc.batch}): "
        f"latency {format_metric('latency_s', gc.latency_s)}, "
        f"energy {format_metric('energy_j', gc.energy_j)}"
    )
    if gc.host_latency_s or gc.host_energy_j:
        total += (
            f"; of which on the host: {format_metric('latency_s', gc.host_latency_s)}, "
            f"{format_metric('energy_j', gc.host_energy_j)}"
        )
    lines += textwrap.wrap(total, width - 1, subsequent_indent="  ")
    if hidden:
        lines.append(
            f"({hidden} data-movement or constant nodes at no cost hidden; --all shows them)"
        )
    for note in getattr(gc, "notes", ()):  # e.g. an If whose branch no sample decided
        lines += textwrap.wrap(f"note: {note}", width - 1, subsequent_indent="  ")
    return "\n".join(lines)


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    right = {3, 4, 5}
    return (
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )
        + "  "
    )


def _packed(entries: Sequence[str], width: int, indent: str = "    ") -> list[str]:
    """``entries`` joined by `` · `` on indented lines of at most ``width``, none split."""
    lines: list[str] = []
    for e in entries:
        if lines and len(lines[-1]) + 3 + len(e) <= width:
            lines[-1] += " · " + e
        else:
            lines.append(indent + e)
    return lines


def _with_note(row: str, note: str, at: int, width: int) -> list[str]:
    """``row`` followed by ``note`` whole: wrapped under the note column, or, where that
    column leaves under 24 characters, on indented lines of its own."""
    if not note:
        return [row.rstrip()]
    room = width - 1 - at
    if room >= 24:
        parts = textwrap.wrap(note, room, break_on_hyphens=False) or [""]
        return [row + parts[0]] + [" " * at + p for p in parts[1:]]
    return [row.rstrip()] + textwrap.wrap(
        note, width - 1, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
    )


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
            out.append(
                "  numbers: measured on this device (lookup table built with 'hwcc profile')"
            )
        if d["validated_against"]:
            out.append("  validated against: " + "; ".join(d["validated_against"]))
        if d["sources"]:
            out.append("  sources: " + "; ".join(d["sources"]))
        if d["host"]:
            out.append(f"  host for unsupported nodes: {d['host']}")
        if d.get("legal_form"):
            form = "; ".join(
                f"{p} {', '.join(f'{k}={v}' for k, v in knobs.items())}".rstrip()
                for p, knobs in d["legal_form"].items()
            )
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
