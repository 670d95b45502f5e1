"""Channel counts as the hardware sees them: the cpu target's latency against channel count.

onnxruntime's kernels are much faster at some channel counts than at nearby ones (the NCHWc
layout needs input channels in 4s and pads to its block; a Gemm computes its output columns
in 16-wide panels), so a pruning search that prices counts wrongly settles on slow ones.
For three one-kernel models, a 3x3 convolution at 28x28 (C = M = c), a 3x3 depthwise
convolution at 28x28 (c channels) and a Gemm of 512 rows by 256 inputs (c outputs), every
count c from 1 to 64 is priced by the ``cpu`` target from a lookup table built from empty
and measured whole in onnxruntime (round-robin, at the table's speed). Both are divided by
their value at c = 32, so the comparison is of shape, not of the machine's speed of the day:
the issue's bar is the predicted ratio within ±10 % of the measured one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import hwcc
from bench._common import md_table, save_svg
from bench.table_fidelity import fresh_target
from hwcc.ir import Graph
from hwcc.ir.onnx_io import to_proto
from hwcc.report.svg import BLUE, GREY, ORANGE, Chart

TITLE = "Channel counts as the hardware sees them (cpu)"
ORDER = 31
KINDS = ("conv", "depthwise", "gemm")
REF = 32


def model(kind: str, c: int) -> Graph:
    """The one-kernel model of ``kind`` at ``c`` channels (weights random, seed 0)."""
    g, rng = Graph(f"{kind}-{c}"), np.random.default_rng(0)
    g.opset_imports = {"": 17}
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    if kind == "gemm":
        g.add_input("x", 1, [512, 256])
        g.add_initializer("w", w(c, 256))
        g.add_initializer("b", w(c))
        g.add_node("Gemm", ["x", "w", "b"], ["y"], {"transB": 1})
        shape = [512, c]
    else:
        group = c if kind == "depthwise" else 1
        g.add_input("x", 1, [1, c, 28, 28])
        g.add_initializer("w", w(c, c // group, 3, 3))
        g.add_initializer("b", w(c))
        g.add_node("Conv", ["x", "w", "b"], ["y"], {"pads": [1, 1, 1, 1], "group": group})
        shape = [1, c, 28, 28]
    y = g.tensor("y")
    y.elem_type, y.shape = 1, tuple(shape)
    g.outputs.append("y")
    return hwcc.load(to_proto(g))


def run(quick: bool, out: Path) -> dict[str, Any]:
    counts = list(range(1, 65)) if not quick else [1, 7, 8, 16, 17, 23, 24, 31, 32, 33, 48, 49]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hwcc-bench-steps-") as tmp:
        target = fresh_target(Path(tmp))
        for kind in KINDS:
            graphs = [model(kind, c) for c in counts]
            for g in graphs:
                target.prepare(g)
            measured = target.measure_latency(graphs)
            predicted = [target.cost(g).latency_s for g in graphs]
            ref = counts.index(REF)
            for c, m, p in zip(counts, measured, predicted):
                rm, rp = m / measured[ref], p / predicted[ref]
                rows.append(
                    {"kind": kind, "c": c, "measured_s": m, "predicted_s": p,
                     "measured_ratio": rm, "predicted_ratio": rp, "error": rp / rm - 1}
                )  # fmt: skip
        kernels = target.table.measured
    summary = {k: _summary([r for r in rows if r["kind"] == k]) for k in KINDS}
    what = (
        ("Every channel count 1 to 64" if not quick else f"The channel counts {counts}")
        + " of three one-kernel models (a 3x3 "
        "convolution at 28x28 with C = M = c, a 3x3 depthwise convolution at 28x28, a Gemm of "
        "512 x 256 by c outputs), priced by the `cpu` target (1 thread) from a lookup table "
        f"built from empty ({kernels} kernels timed) and measured whole in onnxruntime, "
        "round-robin, at the table's speed; each divided by its value at 32 channels."
    )
    chart = _plot(rows, out)
    return {"title": TITLE, "what": what, "markdown": _body(summary, rows, chart), "data": rows}


def _summary(rows: list[dict]) -> dict[str, float]:
    e = np.abs([r["error"] for r in rows])
    return {"n": len(rows), "within": float(np.mean(e <= 0.10)), "worst": float(e.max())}


def _body(summary: dict, rows: list[dict], chart: str) -> str:
    table = md_table(
        ["kernel", "counts", "predicted ratio within ±10 % of measured", "worst |error|",
         "slowest count / 32 (measured)", "count 33 / 32 (measured)"],
        [(k, s["n"], f"{s['within'] * 100:.1f} %", f"{s['worst'] * 100:.1f} %",
          _slowest(rows, k), _at(rows, k, 33)) for k, s in summary.items()],
        "l",
    )  # fmt: skip
    met = all(s["within"] >= 1.0 for s in summary.values())
    verdict = (
        "Every count of every kernel is within ±10 % of the measured ratio."
        if met
        else "Not every count is within ±10 %: "
        + "; ".join(
            f"{r['kind']} at {r['c']}: {r['error'] * 100:+.1f} %"
            for r in rows
            if abs(r["error"]) > 0.10
        )
        + "."
    )
    return "\n".join([verdict, "", table, "", chart, ""])


def _slowest(rows: list[dict], kind: str) -> str:
    r = max(
        (r for r in rows if r["kind"] == kind and r["c"] < REF), key=lambda r: r["measured_ratio"]
    )
    return f"{r['measured_ratio']:.2f}x at {r['c']}"


def _at(rows: list[dict], kind: str, c: int) -> str:
    r = [r for r in rows if r["kind"] == kind and r["c"] == c]
    return f"{r[0]['measured_ratio']:.2f}x" if r else "-"


def _plot(rows: list[dict], out: Path) -> str:
    chart = Chart(
        "cpu target: latency / latency at 32 channels (points: measured, lines: predicted)",
        "channels",
        "latency relative to 32 channels",
        xint=True,
    )
    for kind, color in zip(KINDS, (BLUE, ORANGE, GREY)):
        rs = [r for r in rows if r["kind"] == kind]
        xs = [r["c"] for r in rs]
        chart.line(xs, [r["predicted_ratio"] for r in rs], color, label=f"{kind} predicted")
        chart.points(
            xs,
            [r["measured_ratio"] for r in rs],
            color,
            [f"{kind} {r['c']}: measured {r['measured_ratio']:.3f}, predicted "
             f"{r['predicted_ratio']:.3f} ({r['error'] * 100:+.1f} %)" for r in rs],
        )  # fmt: skip
    return save_svg(out, "channel_steps.svg", chart.render(), "latency against channel count")
