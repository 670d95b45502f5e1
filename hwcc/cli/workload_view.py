"""Text for ``hwcc inspect``: the workload view as a per-layer table or a JSON summary."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from hwcc.ir.workload import Layer, Workload
from hwcc.ir.workload_ops import STANDARD_DOMAINS, shape_str

__all__ = ["format_table", "summary_json", "format_si", "format_bytes"]

_HIDDEN_KINDS = ("data_movement", "constant")


def _human(n: float, step: int, units: tuple[str, ...]) -> str:
    """Three significant digits and a unit: 1.81 G, 724 M, 233 MiB."""
    for power in range(len(units) - 1, 0, -1):
        if abs(n) >= step**power * 0.9995:
            v = n / step**power
            return f"{v:.3g} {units[power]}" if v < 1000 else f"{v:.0f} {units[power]}"
    return f"{n:g}{units[0]}"


def format_si(n: float) -> str:
    """A count with an SI prefix: ``1.81 G``."""
    return _human(n, 1000, ("", "K", "M", "G", "T"))


def format_bytes(n: int) -> str:
    """A size in binary units: ``233 MiB``."""
    return _human(n, 1024, (" B", "KiB", "MiB", "GiB", "TiB"))


def _describe(x: Layer) -> str:
    """The layer's dims in a few characters: ``3×224×224 → 64×112×112 k7×7/2``."""
    if not x.known:
        return f"?  {x.reason}"
    if x.kind in ("conv", "depthwise_conv", "grouped_conv", "conv_transpose", "pool"):
        s = x.stride[0] if len(set(x.stride)) == 1 else "×".join(map(str, x.stride))
        text = f"{x.C}×{x.H}×{x.W} → {x.M}×{x.P}×{x.Q} k{x.R}×{x.S}"
        text += f"/{s}" if x.stride else ""
        text += " dw" if x.kind == "depthwise_conv" else f" g{x.groups}" if x.groups > 1 else ""
        text += f" d{max(x.dilation)}" if x.dilation and max(x.dilation) > 1 else ""
        return (f"N{x.N} " if x.N and x.N > 1 else "") + text
    if x.kind in ("gemm", "matmul"):
        lead = "×".join(map(str, x.batch)) + "·" if x.batch else ""
        n = x.N // max(1, math.prod(x.batch))
        return f"{lead}{n}×{x.C} → {n}×{x.M}"
    if x.kind in ("lstm", "gru", "rnn"):
        text = f"T{x.seq_len} N{x.N} {x.C} → {x.M} ×{x.gates}g"
        return text + (f" ×{x.directions}dir" if x.directions > 1 else "")
    if x.in_shape is not None and x.in_shape != x.out_shape:
        return f"{shape_str(x.in_shape)} → {shape_str(x.out_shape)}"
    return shape_str(x.out_shape)


def _cut(text: str, width: int) -> str:
    """``text`` shortened to ``width`` by an ellipsis in its middle."""
    if len(text) <= width:
        return text
    return text[: width // 2 - 1] + "…" + text[-(width - width // 2) :]


def format_table(workload: Workload, *, top: int | None = None, show_all: bool = False) -> str:
    """A per-layer text table, for ``hwcc inspect``.

    Args:
        workload: from :func:`hwcc.ir.workload.analyze`.
        top: show only the ``top`` layers with the most MACs (then ops), in graph order.
        show_all: also list data-movement and constant nodes without parameters (by
            default they are counted on one line, by op type). Unpriced layers are always
            listed, marked ``?``.

    Returns:
        The table; its TOTAL line sums every layer, shown or not.
    """
    w = workload
    listed = [
        x for x in w.layers if show_all or not x.known or x.params or x.kind not in _HIDDEN_KINDS
    ]
    hidden = Counter(x.op_type for x in set(w.layers) - set(listed))
    cut: set[Layer] = set()
    if top is not None:
        ranked = sorted((x for x in listed if x.known), key=lambda x: (x.macs, x.ops), reverse=True)
        cut = set(ranked[max(0, top) :])
        listed = [x for x in listed if x not in cut]
    rows = [
        (
            x.name,
            x.op_type if x.domain in STANDARD_DOMAINS else f"{x.domain}::{x.op_type}",
            _describe(x),
            format_si(x.macs) if x.known else "?",
            format_si(x.ops) if x.known else "?",
            format_si(x.params),
            format_bytes(x.weight_bytes),
            format_bytes(x.input_bytes + x.output_bytes),
            f"{x.weight_density:.2f}" if x.params else "-",
            f"{x.act_density:.2f}",
        )
        for x in listed
    ]
    total = (
        "TOTAL",
        f"{len(w.layers)} nodes",
        "",
        format_si(w.macs),
        format_si(w.ops),
        format_si(w.params),
        format_bytes(w.weight_bytes),
        format_bytes(sum(x.input_bytes + x.output_bytes for x in w.layers)),
        "",
        "",
    )
    head = ("layer", "op", "shape", "MACs", "ops", "params", "weights", "acts", "w-dens", "a-dens")
    caps = (32, 24, 44) + (9,) * 7
    widths = [min(cap, max(len(r[k]) for r in rows + [head, total])) for k, cap in enumerate(caps)]

    def fmt(r: tuple[str, ...]) -> str:
        cells = (
            _cut(c, wd).ljust(wd) if k < 3 else c.rjust(wd)
            for k, (c, wd) in enumerate(zip(r, widths))
        )
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(head))
    lines = [fmt(head), rule, *map(fmt, rows), rule, fmt(total)]
    lines.append(
        f"MACs {w.macs:,} · params {w.params:,} · "
        f"weights {format_bytes(w.weight_bytes)} · "
        f"activation tensors {format_bytes(w.activation_bytes)} (each counted once)"
    )
    if hidden:
        lines.append(
            f"{sum(hidden.values())} data-movement/constant nodes not listed: "
            + ", ".join(f"{n} {op}" for op, n in hidden.most_common())
        )
    if cut:
        lines.append(
            f"{len(cut)} smaller layers not listed (top={top}): "
            f"{format_si(sum(x.macs for x in cut))} MACs"
        )
    if w.unknown:
        lines.append(
            f"{len(w.unknown)} node(s) marked ? could not be priced; their MACs count as 0"
        )
    return "\n".join(lines)


def summary_json(workload: Workload) -> dict[str, Any]:
    """The workload for ``hwcc inspect --json``: totals, MACs by kind, unpriced nodes, layers."""
    by_kind: Counter[str] = Counter()
    for x in workload.layers:
        by_kind[x.kind] += x.macs
    unknown = [{"name": x.name, "op_type": x.op_type, "reason": x.reason} for x in workload.unknown]
    return {
        **workload.to_dict(),
        "macs_by_kind": {k: v for k, v in by_kind.items() if v},
        "unknown": unknown,
    }
