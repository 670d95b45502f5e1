"""The HTML report of a compilation: what the compiler did, and what it cost.

:func:`render` turns the summary that ``hwcc.json`` holds into one self-contained page
(inline CSS and inline SVG; no script, no external reference) for the engineer who
deploys the model:

1. a header: model, target and where its numbers come from, each budget met or not met,
   the verdict, and the warnings;
2. original against final for each metric, with the ratio final / original;
3. plots: accuracy against resource per iteration (one panel per budgeted metric),
   per-layer latency and energy before and after, and every proposal with the Pareto
   front (:func:`pareto_front`);
4. the history, the rejected proposals, the payload files and the per-layer table.

Every string from the summary is escaped (layer names come from user models), and every
optional key may be missing or ``None``. :func:`write` writes the page atomically.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hwcc.report import svg as _svg
from hwcc.report.svg import nice_ticks
from hwcc.search.budget import METRICS, format_metric

__all__ = ["nice_ticks", "pareto_front", "render", "write"]

_NAMES = {"latency_s": "latency", "energy_j": "energy", "size_bytes": "size"}
_UNITS = {"latency_s": "s", "energy_j": "J", "size_bytes": "B"}
_PROVENANCE = {"model": "an analytic model", "measured": "lookup tables measured on the device"}
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-size:1.2em;font-weight:bold;padding:.5em .8em;border-radius:4px}
.ok{color:#17611c}.bad{color:#a4161a} .verdict.ok{background:#e6f4e7}.verdict.bad{background:#fbe6e6}
.warnings{background:#fff4d6;border-left:5px solid #e0a800;padding:.5em 1em;margin:1em 0}
.note{color:#666;font-style:italic} .removed{color:#999;font-style:italic}
svg{max-width:100%;height:auto;display:block;margin:1em 0}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em} dt{font-weight:bold} dd{margin:0}
code{font-size:.95em}
"""


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
    ok = [(float(x), float(y)) for x, y in points if _finite(x) and _finite(y)]
    front: list[tuple[float, float]] = []
    for x, y in sorted(ok, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def render(summary: Mapping[str, Any]) -> str:
    """The report page for one compilation.

    Args:
        summary: the dictionary ``hwcc.json`` holds; optional keys may be missing or
            ``None``, and keys the report does not know are ignored.

    Returns:
        A complete HTML document.
    """
    model = (summary.get("input") or {}).get("model", "model")
    body = [_header(summary), _summary_table(summary), _plots(summary), _history(summary),
            _layers_table(summary), _payload(summary), _footer(summary)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>hwcc report: {_e(model)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(b for b in body if b) + "\n</body>\n</html>\n")


def write(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Render the report and write it to ``path`` atomically.

    The page goes to a temporary file in the same folder, which is then renamed over
    ``path``, so a reader never sees half a page.

    Args:
        summary: as for :func:`render`.
        path: where the page goes (usually ``<artifact>/report.html``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    page = render(summary)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- sections ---------------------------------------------------------------------------


def _header(s: Mapping[str, Any]) -> str:
    inp, target = s.get("input") or {}, s.get("target") or {}
    rows = [("model", f"<code>{_e(inp.get('model', '?'))}</code>"
             + (f" <small>sha256 {_e(str(inp['sha256'])[:16])}…</small>" if inp.get("sha256") else ""))]
    rows.append(("data", _e(inp.get("data")) if inp.get("data") else '<span class="note">none</span>'))
    source = _PROVENANCE.get(target.get("provenance"), target.get("provenance", "?"))
    rows.append(("target", f"<b>{_e(target.get('name', '?'))}</b> (costs from {_e(source)}"
                 f"; primary metric {_e(_NAMES.get(_primary(s), _primary(s)))})"))
    if target.get("description"):
        rows.append(("", _e(target["description"])))
    if s.get("legal_form"):
        rows.append(("legal form", _e(_settings(s["legal_form"]))))
    final = s.get("final") or {}
    items = []
    for b in s.get("budgets") or []:
        met, metric = b.get("met"), b.get("metric")
        word = "met" if met else "not met" if met is not None else "unknown"
        got = f"; final {_e(_fmt(metric, final.get(metric)))}" if metric in final else ""
        items.append(f'<li class="{"ok" if met else "bad"}"><b>{_e(b.get("text", "?"))}</b>: '
                     f"{_e(_NAMES.get(metric, metric))} ≤ {_e(_fmt(metric, b.get('limit')))} "
                     f"— <b>{word}</b>{got}</li>")
    rows.append(("budgets", f"<ul>{''.join(items)}</ul>" if items else '<span class="note">none</span>'))
    ok = bool(s.get("budget_met"))
    verdict = s.get("exit_reason") or ("every budget met" if ok else "budget not met")
    out = ["<header>", "<h1>hwcc report</h1>",
           f'<p class="verdict {"ok" if ok else "bad"}">{"✔" if ok else "✘ budget not met:"} {_e(verdict)}</p>',
           "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"]
    warnings = s.get("warnings") or []
    if warnings:
        out.append('<div class="warnings"><b>Warnings</b><ul>'
                   + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></div>")
    out.append("</header>")
    return "\n".join(out)


def _summary_table(s: Mapping[str, Any]) -> str:
    orig, final = s.get("original") or {}, s.get("final") or {}
    rows = []
    for m in METRICS:
        if m in orig or m in final:
            a, b = orig.get(m), final.get(m)
            rows.append((f"{_NAMES[m]} (predicted)", _fmt(m, a), _fmt(m, b), _ratio(a, b)))
    measured = s.get("measured") or {}
    for m in METRICS:
        a, b = measured.get(f"original_{m}"), measured.get(f"final_{m}")
        if a is not None or b is not None:
            rows.append((f"{_NAMES[m]} (measured on this CPU)", _fmt(m, a), _fmt(m, b), _ratio(a, b)))
    a, b = orig.get("accuracy"), final.get("accuracy")
    change = f"{(b - a) * 100:+.2f} pp" if _finite(a) and _finite(b) else "–"
    kind = s.get("accuracy_kind") or "accuracy"
    rows.append((f"accuracy ({kind})", _pct(a), _pct(b), change))
    body = "".join(f"<tr><th>{_e(r[0])}</th>" + "".join(f'<td class="num">{_e(c)}</td>' for c in r[1:]) + "</tr>"
                   for r in rows)
    note = "" if _finite(a) else '<p class="note">Accuracy was not measured.</p>'
    return ("<section><h2>Original and final</h2><table><tr><th>metric</th><th>original</th><th>final</th>"
            f"<th>final / original</th></tr>{body}</table>{note}</section>")


def _plots(s: Mapping[str, Any]) -> str:
    out = ["<section><h2>Plots</h2>"]
    if not _has_accuracy(s):
        out.append('<p class="note">Accuracy was not measured: the plots show the resource per iteration instead.</p>')
    out += [_progress_panel(s, m) for m in _plot_metrics(s)]
    if s.get("layers"):
        out += [_layer_bars(s, "latency_s"), _layer_bars(s, "energy_j")]
    out.append(_front_plot(s) if s.get("proposals") else '<p class="note">No proposals were made.</p>')
    return "\n".join(out) + "</section>"


def _progress_panel(s: Mapping[str, Any], metric: str) -> str:
    steps = _trajectory(s)
    name = _NAMES.get(metric, metric)
    tips = [f"{label}: {_fmt(metric, m.get(metric))}, accuracy {_pct(m.get('accuracy'))}" for label, m in steps]
    labels = ["orig"] + [str(h.get("iteration", i + 1)) for i, h in enumerate(s.get("history") or [])] + ["final"]
    limits = [b for b in s.get("budgets") or [] if b.get("metric") == metric and _finite(b.get("limit"))]
    if _has_accuracy(s):
        keep = [i for i, (_, m) in enumerate(steps) if _finite(m.get(metric)) and _finite(m.get("accuracy"))]
        xs, ys = [steps[i][1][metric] for i in keep], [steps[i][1]["accuracy"] for i in keep]
        chart = _svg.Chart(f"Accuracy against {name}, per iteration", name, "accuracy",
                           _labels(metric), _svg.percent_labels)
        for b in limits:
            chart.vline(b["limit"], _svg.RED, f"budget {b.get('text', '')}")
    else:
        keep = [i for i, (_, m) in enumerate(steps) if _finite(m.get(metric))]
        xs, ys = keep, [steps[i][1][metric] for i in keep]
        chart = _svg.Chart(f"{name.capitalize()} per iteration (accuracy was not measured)", "iteration", name,
                           yfmt=_labels(metric), xint=True)
        for b in limits:
            chart.hline(b["limit"], _svg.RED, f"budget {b.get('text', '')}")
    chart.line(xs, ys, _svg.BLUE, label="original → iterations → final")
    chart.points(xs, ys, _svg.BLUE, [tips[i] for i in keep], [labels[i] for i in keep])
    return chart.render()


def _layer_bars(s: Mapping[str, Any], metric: str) -> str:
    layers = s.get("layers") or []
    before = [_num((ly.get("before") or {}).get(metric)) for ly in layers]
    after = [_num((ly["after"] or {}).get(metric)) if ly.get("after") else None for ly in layers]
    tips = [f"{ly.get('name', '?')} ({ly.get('op_type', '?')} on {ly.get('on', '?')})" for ly in layers]
    return _svg.hbars(f"Per-layer {_NAMES[metric]}, before and after", [str(ly.get("name", "?")) for ly in layers],
                      [("before", _svg.GREY, before), ("after", _svg.BLUE, after)], _labels(metric), tips=tips)


def _front_plot(s: Mapping[str, Any]) -> str:
    metric, name = _primary(s), _NAMES.get(_primary(s), _primary(s))
    props = [p for p in s.get("proposals") or [] if _finite(p.get(metric))]
    with_acc = any(_finite(p.get("accuracy")) for p in props)
    if with_acc:
        props = [p for p in props if _finite(p.get("accuracy"))]
        chart = _svg.Chart(f"Every proposal: accuracy against {name}", name, "accuracy", _labels(metric),
                           _svg.percent_labels)
        front = pareto_front((p[metric], p["accuracy"]) for p in props)
        xs, ys = [front[0][0]], [front[0][1]]
        for x, acc in front[1:]:  # a step: the best accuracy reachable within each resource
            xs, ys = xs + [x, x], ys + [ys[-1], acc]
        chart.line(xs, ys, _svg.GREEN, label="Pareto front")
        for b in s.get("budgets") or []:
            if b.get("metric") == metric and _finite(b.get("limit")):
                chart.vline(b["limit"], _svg.RED, f"budget {b.get('text', '')}")
    else:
        chart = _svg.Chart(f"Every proposal: {name} per iteration (accuracy was not measured)", "iteration", name,
                           yfmt=_labels(metric), xint=True)
    tips = [f"iteration {p.get('iteration', '?')}: {p.get('pass', '?')} {_settings(p.get('settings'))} on "
            f"{p.get('layer', '?')}: {_fmt(metric, p[metric])}, accuracy {_pct(p.get('accuracy'))}"
            + (" (picked)" if p.get("picked") else "") for p in props]
    for picked, color, label, r in ((False, _svg.GREY, "proposal", 3.5), (True, _svg.ORANGE, "picked", 5.5)):
        idx = [i for i, p in enumerate(props) if bool(p.get("picked")) == picked]
        xs = [props[i][metric] if with_acc else _num(props[i].get("iteration")) or 0 for i in idx]
        ys = [props[i]["accuracy" if with_acc else metric] for i in idx]
        chart.points(xs, ys, color, [tips[i] for i in idx], label=label if idx else None, r=r)
    return chart.render()


def _history(s: Mapping[str, Any]) -> str:
    history = s.get("history") or []
    out = ["<section><h2>History</h2>"]
    if history:
        out.append("<table><tr><th>iteration</th><th>layer</th><th>pass</th><th>settings</th><th>target</th>"
                   "<th>Δ latency</th><th>Δ energy</th><th>Δ size</th><th>Δ accuracy</th></tr>")
        for h in history:
            cells = [h.get("iteration", ""), h.get("layer", ""), h.get("pass", ""), _settings(h.get("settings")),
                     f"≤ {_fmt(h.get('metric'), h.get('target'))}" if _finite(h.get("target")) else "–"]
            cells += [_delta(m, h.get(f"delta_{m}")) for m in METRICS]
            d = h.get("delta_accuracy")
            cells.append(f"{d * 100:+.2f} pp" if _finite(d) else "–")
            out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
        out.append("</table>")
    else:
        out.append('<p class="note">No iterations: the input model already met every budget, '
                   "or no change could be made.</p>")
    rejected = s.get("rejected") or []
    out.append(f"<details><summary>Rejected proposals ({len(rejected)})</summary>")
    out.append(_table(["iteration", "layer", "pass", "reason"],
                      [[r.get("iteration", ""), r.get("layer", ""), r.get("pass", ""), r.get("reason", "")]
                       for r in rejected]) + "</details>")
    props, metric = s.get("proposals") or [], _primary(s)
    out.append(f"<details><summary>All proposals ({len(props)})</summary>")
    out.append(_table(["iteration", "layer", "pass", "settings", _NAMES.get(metric, metric), "accuracy", "picked"],
                      [[p.get("iteration", ""), p.get("layer", ""), p.get("pass", ""), _settings(p.get("settings")),
                        _fmt(metric, p.get(metric)), _pct(p.get("accuracy")), "yes" if p.get("picked") else ""]
                       for p in props]) + "</details></section>")
    return "\n".join(out)


def _layers_table(s: Mapping[str, Any]) -> str:
    rows = []
    for ly in s.get("layers") or []:
        before, after = ly.get("before") or {}, ly.get("after")
        row = [ly.get("name", "?"), ly.get("op_type", "?"), ly.get("on", "?")]
        for m in ("latency_s", "energy_j"):
            row += [_fmt(m, before.get(m)), _fmt(m, after.get(m)) if after else "removed"]
        rows.append(row)
    if not rows:
        return ""
    head = ["layer", "op", "runs on", "latency before", "latency after", "energy before", "energy after"]
    return f"<section><h2>Layers</h2>{_table(head, rows)}</section>"


def _payload(s: Mapping[str, Any]) -> str:
    payload = s.get("payload") or {}
    items = payload.items() if isinstance(payload, Mapping) else ((p, "") for p in payload)
    lis = "".join(f"<li><code>{_e(k)}</code>{': ' + _e(v) if v else ''}</li>" for k, v in items)
    return f"<section><h2>Payload files</h2><ul>{lis}</ul></section>" if lis else ""


def _footer(s: Mapping[str, Any]) -> str:
    timing = s.get("timing") or {}
    parts = [f"hwcc {_e(s.get('hwcc_version', '?'))}", f"created {_e(s.get('created', '?'))}"]
    if _finite(timing.get("wall_s")):
        parts.append(f"{_e(format_metric('latency_s', timing['wall_s']))} wall time")
    if timing.get("iterations") is not None:
        parts.append(f"{_e(timing['iterations'])} iterations")
    return f'<footer><p class="note">{" · ".join(parts)}</p></footer>'


# --- helpers ----------------------------------------------------------------------------


def _trajectory(s: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Metrics at the original, after each iteration, and at the final model."""
    current = dict(s.get("original") or {})
    steps: list[tuple[str, Mapping[str, Any]]] = [("original", current)]
    for i, h in enumerate(s.get("history") or []):
        if h.get("metrics"):
            current = dict(h["metrics"])
        else:  # older summaries kept only the deltas
            current = {k: (v + h[f"delta_{k}"] if _finite(v) and _finite(h.get(f"delta_{k}")) else v)
                       for k, v in current.items()}
        steps.append((f"iteration {h.get('iteration', i + 1)}: {h.get('pass', '?')} "
                      f"{_settings(h.get('settings'))} on {h.get('layer', '?')}", current))
    steps.append(("final", s.get("final") or {}))
    return steps


def _plot_metrics(s: Mapping[str, Any]) -> list[str]:
    metrics = [b.get("metric") for b in s.get("budgets") or [] if b.get("metric") in _NAMES]
    return list(dict.fromkeys(metrics)) or [_primary(s)]


def _primary(s: Mapping[str, Any]) -> str:
    return (s.get("target") or {}).get("primary_metric") or "latency_s"


def _has_accuracy(s: Mapping[str, Any]) -> bool:
    return _finite((s.get("original") or {}).get("accuracy")) or _finite((s.get("final") or {}).get("accuracy"))


def _labels(metric: str) -> _svg.Formatter:
    unit = _UNITS.get(metric)
    return (lambda ticks: _svg.si_labels(ticks, unit)) if unit else _svg.count_labels


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return '<p class="note">none</p>'
    body = "".join("<tr>" + "".join(f"<td>{_e('–' if c is None else c)}</td>" for c in r) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{body}</table>"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v: Any) -> float | None:
    return float(v) if _finite(v) else None


def _fmt(metric: str | None, value: Any) -> str:
    return format_metric(metric, value) if _finite(value) else "–"


def _delta(metric: str, value: Any) -> str:
    if not _finite(value):
        return "–"
    return ("+" if value > 0 else "") + format_metric(metric, value)


def _pct(value: Any) -> str:
    return f"{value * 100:.2f}%" if _finite(value) else "not measured"


def _ratio(a: Any, b: Any) -> str:
    return f"{b / a:.3g}×" if _finite(a) and _finite(b) and a != 0 else "–"


def _settings(settings: Any) -> str:
    """``{"k": 4}`` -> ``k=4``; ``{"quantize": {"mode": "int8"}}`` -> ``quantize(mode=int8)``."""
    if not isinstance(settings, Mapping):
        return "" if settings is None else str(settings)
    return ", ".join(f"{k}({_settings(v)})" if isinstance(v, Mapping) else f"{k}={v}" for k, v in settings.items())
