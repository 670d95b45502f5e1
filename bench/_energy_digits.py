"""energy_pruning's digits experiment: magnitude pruning and hwcc's search at equal accuracy.

Each digits model is cleaned up as ``hwcc compile`` does (:func:`hwcc.ir.cleanup.cleanup`),
pruned by both methods, every point fine-tuned to the same number of steps, put in the
target's legal form (:meth:`hwcc.targets.base.Target.legalize`), priced and scored; see
:mod:`bench.energy_pruning`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hwcc
from bench._common import save_svg
from bench._energy_common import FLOOR_DROP, PLOT_DEPTH, SEED, Settings, passes_label
from hwcc.data.evaluate import Evaluator, resolve_data
from hwcc.ir.cleanup import cleanup
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.workload import analyze
from hwcc.report.svg import BLUE, GREEN, GREY, ORANGE, RED, Chart, count_labels, percent_labels
from hwcc.train.finetune import finetune

WEIGHTED = ("conv", "grouped_conv", "depthwise_conv", "gemm", "matmul")


def price(target, graph, ctx=None) -> dict[str, float]:
    """The graph's total energy and the chip's share of it (the host's taken out)."""
    c = target.price(graph, ctx)
    return {"energy_j": float(c.energy_j), "chip_energy_j": float(c.energy_j - c.host_energy_j)}


def _weights_kept(graph) -> float:
    w = [
        (x.weight_density, x.params)
        for x in analyze(graph).layers
        if x.kind in WEIGHTED and x.params
    ]
    return sum(d * n for d, n in w) / max(sum(n for _, n in w), 1)


class _Digits:
    """One digits model: its data, evaluator, legal form and dense reference."""

    def __init__(self, name: str, target):
        self.name, self.target = name, target
        self.graph = cleanup(hwcc.load(f"zoo:{name}"), seed=SEED)
        self.tune, held, _ = resolve_data(self.graph, "zoo:digits", None, SEED)
        self.evaluator = Evaluator(self.graph, held)
        self.calib = {k: v[:64] for k, v in self.tune.inputs.items()}
        dense = self.point(self.graph, 0, "dense", "dense")
        self.acc0, self.e0 = dense["accuracy"], dense["energy_j"]
        self.chip0 = dense["chip_energy_j"]
        self.dense = self.relative(dense)

    def point(self, graph, steps: int, method: str, label: str) -> dict[str, Any]:
        if steps > 0:
            graph = finetune(
                graph, self.tune.inputs, self.tune.labels, steps=steps, seed=SEED
            ).graph
        legal = self.target.legalize(graph, self.calib, SEED)
        legal_price, float_price = price(self.target, legal), price(self.target, graph)
        return {
            "method": method,
            "label": label,
            "accuracy": self.evaluator.accuracy(legal),
            "weights_kept": _weights_kept(legal),
            "steps": steps,
            **legal_price,
            "legal_price_equals_float": legal_price == float_price,
        }

    def relative(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            **p,
            "reduction_energy_j": self.e0 / p["energy_j"],
            "reduction_chip_energy_j": self.chip0 / p["chip_energy_j"],
        }


def _magnitude(m: _Digits, s: Settings) -> list[dict[str, Any]]:
    out = []
    for d in s.densities:
        ctx = PassContext(knobs={"prune_weights": {"density": d}}, verify=False)
        pruned = get_pass("prune_weights")(m.graph, ctx).graph
        out.append(m.relative(m.point(pruned, s.total_steps, "magnitude", f"density {d:g}")))
    return out


def _search(
    m: _Digits, s: Settings, passes: tuple[str, ...]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    picked: list[tuple[int, Any, float | None, str, dict]] = []
    schedule: dict[str, float] = {}

    def progress(kind: str, info: dict[str, Any]) -> None:
        if kind == "picked":
            p = info["proposal"]
            picked.append(
                (info["state"].iteration, p.graph, p.accuracy, p.unit.id, dict(p.step.shown))
            )
        if kind == "iteration":
            schedule.update(r0=info["state"].schedule.r0, decay=info["state"].schedule.decay)

    t0 = time.monotonic()
    result = hwcc.compile(
        m.graph,
        str(m.target.source),  # the target's TOML: the bundled one, or a setting's copy
        s.budget,
        data="zoo:digits",
        seed=SEED,
        passes=passes,
        max_units=s.max_units,
        max_iterations=s.max_iterations,
        short_term_steps=s.short_term_steps,
        long_term_steps=0,
        max_accuracy_drop=s.stop_drop,
        one_shot=False,  # the NetAdapt trajectory: each iteration one point of the curve
        progress=progress,
    )
    search_s = time.monotonic() - t0
    method = f"hwcc ({passes_label(passes)})"
    points = []
    for i, graph, acc_search, unit, settings in picked:
        steps = s.total_steps - i * s.short_term_steps
        p = m.relative(m.point(graph, steps, method, f"iteration {i}"))
        points.append(
            {
                **p,
                "iteration": i,
                "changed": unit,
                "settings": settings,
                "search_accuracy": acc_search,
            }
        )
    info = {
        "method": method,
        "passes": list(passes),
        "search_s": search_s,
        "iterations": len(picked),
        "first_step": schedule.get("r0"),
        "stop": result.summary.exit_reason,
        "warnings": result.summary.warnings,
    }
    return points, info


def digits(s: Settings, out: Path, target, suffix: str = "") -> dict[str, Any]:
    """Every digits model of ``s``, both methods: the points, and a plot per model (its
    file name ends with ``suffix``)."""
    models = []
    for name, pass_sets in s.models:
        t0 = time.monotonic()
        m = _Digits(name, target)
        runs = [{"method": "magnitude", "points": _magnitude(m, s)}]
        for passes in pass_sets:
            points, info = _search(m, s, passes)
            runs.append({**info, "points": points})
        models.append(
            {
                "model": name,
                "accuracy0": m.acc0,
                "energy0_j": m.e0,
                "chip_energy0_j": m.chip0,
                "floor": m.acc0 - FLOOR_DROP,
                "dense": m.dense,
                "runs": runs,
                "seconds": time.monotonic() - t0,
            }
        )
    plots = [_digits_plot(mod, out, target.estimation, suffix) for mod in models]
    return {"models": models, "plots": plots}


def _digits_plot(mod: dict[str, Any], out: Path, estimation: str, suffix: str) -> str:
    chart = Chart(
        f"{mod['model']} on Eyeriss ({estimation} estimation): accuracy against chip energy",
        "Eyeriss chip energy / dense (legal form)",
        "test accuracy",
        count_labels,
        percent_labels,
    )
    colors = iter((BLUE, ORANGE, GREEN, RED))
    for run in mod["runs"]:
        pts = [mod["dense"]] + sorted(run["points"], key=lambda p: -p["chip_energy_j"])
        xs = [p["chip_energy_j"] / mod["chip_energy0_j"] for p in pts]
        ys = [max(p["accuracy"], mod["accuracy0"] - PLOT_DEPTH) for p in pts]
        color = next(colors)
        chart.line(xs, ys, color, run["method"])
        chart.points(
            xs,
            ys,
            color,
            [
                f"{run['method']}, {p['label']}: accuracy "
                f"{p['accuracy']:.2%}, chip energy "
                f"x{p['chip_energy_j'] / mod['chip_energy0_j']:.3f}, "
                f"total energy x{p['energy_j'] / mod['energy0_j']:.3f}"
                for p in pts
            ],
        )
    chart.hline(mod["floor"], GREY, "dense - 1 point")
    chart.hline(
        mod["accuracy0"] - PLOT_DEPTH,
        GREY,
        f"dense - {PLOT_DEPTH * 100:.0f} points (lower points drawn here)",
    )
    name = f"energy_pruning_{mod['model']}{suffix}.svg"
    return save_svg(
        out,
        name,
        chart.render(),
        f"{mod['model']}: accuracy against Eyeriss energy ({estimation} estimation), both methods",
    )
