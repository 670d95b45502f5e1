"""The report's plots, inline SVG drawn with :mod:`hwcc.report.svg`.

1. Accuracy against each budgeted metric, per iteration, with the budget's limit (the
   metric per iteration when accuracy was not measured).
2. Per-layer latency and energy, before and after.
3. Every proposal, with the Pareto front (:func:`pareto_front`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hwcc.report import svg as _svg
from hwcc.report.values import (
    METRIC_NAMES,
    finite,
    format_percent,
    format_settings,
    format_value,
    primary_metric,
)

__all__ = ["pareto_front", "plots"]

_UNITS = {"latency_s": "s", "energy_j": "J", "size_bytes": "B"}


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats: lower resource ``x`` and higher accuracy ``y``.

    A point is on the front when no other point has ``x' <= x`` and ``y' >= y`` with at
    least one of them strict. Points with a ``None`` or NaN coordinate are ignored, and
    duplicates are kept once.

    Args:
        points: ``(resource, accuracy)`` pairs.

    Returns:
        The front, by ascending resource (and so ascending accuracy).
    """
    ok = [(float(x), float(y)) for x, y in points if finite(x) and finite(y)]
    front: list[tuple[float, float]] = []
    for x, y in sorted(ok, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def plots(s: Mapping[str, Any]) -> str:
    """The plots section of the page for the summary ``s``."""
    out = ["<section><h2>Plots</h2>"]
    if not _has_accuracy(s):
        out.append(
            '<p class="note">Accuracy was not measured: '
            "the plots show the resource per iteration instead.</p>"
        )
    out += [_progress_panel(s, m) for m in _plot_metrics(s)]
    if s.get("layers"):
        out += [_layer_bars(s, "latency_s"), _layer_bars(s, "energy_j")]
    out.append(
        _front_plot(s) if s.get("proposals") else '<p class="note">No proposals were made.</p>'
    )
    return "\n".join(out) + "</section>"


def _progress_panel(s: Mapping[str, Any], metric: str) -> str:
    steps = _trajectory(s)
    name = METRIC_NAMES.get(metric, metric)
    tips = [
        f"{label}: {format_value(metric, m.get(metric))}, "
        f"accuracy {format_percent(m.get('accuracy'))}"
        for label, m in steps
    ]
    labels = (
        ["orig"]
        + [str(h.get("iteration", i + 1)) for i, h in enumerate(s.get("history") or [])]
        + ["final"]
    )
    limits = [
        b for b in s.get("budgets") or [] if b.get("metric") == metric and finite(b.get("limit"))
    ]
    if _has_accuracy(s):
        keep = [
            i
            for i, (_, m) in enumerate(steps)
            if finite(m.get(metric)) and finite(m.get("accuracy"))
        ]
        xs, ys = [steps[i][1][metric] for i in keep], [steps[i][1]["accuracy"] for i in keep]
        chart = _svg.Chart(
            f"Accuracy against {name}, per iteration",
            name,
            "accuracy",
            _labels(metric),
            _svg.percent_labels,
        )
        for b in limits:
            chart.vline(b["limit"], _svg.RED, f"budget {b.get('text', '')}")
    else:
        keep = [i for i, (_, m) in enumerate(steps) if finite(m.get(metric))]
        xs, ys = keep, [steps[i][1][metric] for i in keep]
        chart = _svg.Chart(
            f"{name.capitalize()} per iteration (accuracy was not measured)",
            "iteration",
            name,
            yfmt=_labels(metric),
            xint=True,
        )
        for b in limits:
            chart.hline(b["limit"], _svg.RED, f"budget {b.get('text', '')}")
    chart.line(xs, ys, _svg.BLUE, label="original → iterations → final")
    chart.points(xs, ys, _svg.BLUE, [tips[i] for i in keep], [labels[i] for i in keep])
    return chart.render()


def _layer_bars(s: Mapping[str, Any], metric: str) -> str:
    layers = s.get("layers") or []
    before = [_num((ly.get("before") or {}).get(metric)) for ly in layers]
    after = [_num((ly["after"] or {}).get(metric)) if ly.get("after") else None for ly in layers]
    tips = [
        f"{ly.get('name', '?')} ({ly.get('op_type', '?')} on {ly.get('on', '?')})" for ly in layers
    ]
    return _svg.hbars(
        f"Per-layer {METRIC_NAMES[metric]}, before and after",
        [str(ly.get("name", "?")) for ly in layers],
        [("before", _svg.GREY, before), ("after", _svg.BLUE, after)],
        _labels(metric),
        tips=tips,
    )


def _front_plot(s: Mapping[str, Any]) -> str:
    metric, name = primary_metric(s), METRIC_NAMES.get(primary_metric(s), primary_metric(s))
    props = [p for p in s.get("proposals") or [] if finite(p.get(metric))]
    with_acc = any(finite(p.get("accuracy")) for p in props)
    if with_acc:
        props = [p for p in props if finite(p.get("accuracy"))]
        chart = _svg.Chart(
            f"Every proposal: accuracy against {name}",
            name,
            "accuracy",
            _labels(metric),
            _svg.percent_labels,
        )
        front = pareto_front((p[metric], p["accuracy"]) for p in props)
        xs, ys = [front[0][0]], [front[0][1]]
        for x, acc in front[1:]:  # a step: the best accuracy reachable within each resource
            xs, ys = xs + [x, x], ys + [ys[-1], acc]
        chart.line(xs, ys, _svg.GREEN, label="Pareto front")
        for b in s.get("budgets") or []:
            if b.get("metric") == metric and finite(b.get("limit")):
                chart.vline(b["limit"], _svg.RED, f"budget {b.get('text', '')}")
    else:
        chart = _svg.Chart(
            f"Every proposal: {name} per iteration (accuracy was not measured)",
            "iteration",
            name,
            yfmt=_labels(metric),
            xint=True,
        )
    tips = [
        f"iteration {p.get('iteration', '?')}: {p.get('pass', '?')} "
        f"{format_settings(p.get('settings'))} on {p.get('layer', '?')}: "
        f"{format_value(metric, p[metric])}, accuracy {format_percent(p.get('accuracy'))}"
        + (" (picked)" if p.get("picked") else "")
        for p in props
    ]
    for picked, color, label, r in (
        (False, _svg.GREY, "proposal", 3.5),
        (True, _svg.ORANGE, "picked", 5.5),
    ):
        idx = [i for i, p in enumerate(props) if bool(p.get("picked")) == picked]
        xs = [props[i][metric] if with_acc else _num(props[i].get("iteration")) or 0 for i in idx]
        ys = [props[i]["accuracy" if with_acc else metric] for i in idx]
        chart.points(xs, ys, color, [tips[i] for i in idx], label=label if idx else None, r=r)
    return chart.render()


def _trajectory(s: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Metrics at the original, after each iteration, and at the final model."""
    current = dict(s.get("original") or {})
    steps: list[tuple[str, Mapping[str, Any]]] = [("original", current)]
    for i, h in enumerate(s.get("history") or []):
        if h.get("metrics"):
            current = dict(h["metrics"])
        else:  # older summaries kept only the deltas
            current = {
                k: (v + h[f"delta_{k}"] if finite(v) and finite(h.get(f"delta_{k}")) else v)
                for k, v in current.items()
            }
        steps.append(
            (
                f"iteration {h.get('iteration', i + 1)}: {h.get('pass', '?')} "
                f"{format_settings(h.get('settings'))} on {h.get('layer', '?')}",
                current,
            )
        )
    steps.append(("final", s.get("final") or {}))
    return steps


def _plot_metrics(s: Mapping[str, Any]) -> list[str]:
    metrics = [b.get("metric") for b in s.get("budgets") or [] if b.get("metric") in METRIC_NAMES]
    return list(dict.fromkeys(metrics)) or [primary_metric(s)]


def _has_accuracy(s: Mapping[str, Any]) -> bool:
    return finite((s.get("original") or {}).get("accuracy")) or finite(
        (s.get("final") or {}).get("accuracy")
    )


def _labels(metric: str) -> _svg.Formatter:
    unit = _UNITS.get(metric)
    return (lambda ticks: _svg.si_labels(ticks, unit)) if unit else _svg.count_labels


def _num(v: Any) -> float | None:
    return float(v) if finite(v) else None
