"""The HTML report of a compilation: what the compiler did, and what it cost.

:func:`render` turns the summary that ``hwcc.json`` holds into one self-contained page
(inline CSS and inline SVG; no script, no external reference) for the engineer who
deploys the model:

1. a header: model, target and where its numbers come from, each budget met or not met,
   the verdict, and the warnings;
2. original against final for each metric, with the ratio final / original;
3. plots (:mod:`hwcc.report.plots`): accuracy against resource per iteration (one panel
   per budgeted metric), per-layer latency and energy before and after, and every
   proposal with the Pareto front (:func:`pareto_front`);
4. the history, the rejected proposals, the payload files and the per-layer table.

Every string from the summary is escaped (layer names come from user models), and every
optional key may be missing or ``None``. :func:`write` writes the page atomically.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwcc.report.disk import write_text
from hwcc.report.plots import pareto_front, plots
from hwcc.report.svg import nice_ticks
from hwcc.report.values import (
    METRIC_NAMES,
    finite,
    format_percent,
    format_settings,
    format_value,
    primary_metric,
)
from hwcc.search.budget import METRICS, format_metric

__all__ = ["nice_ticks", "pareto_front", "render", "write"]

_PROVENANCE = {"model": "an analytic model", "measured": "lookup tables measured on the device"}
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-size:1.2em;font-weight:bold;padding:.5em .8em;border-radius:4px}
.ok{color:#17611c}.bad{color:#a4161a}
.verdict.ok{background:#e6f4e7}.verdict.bad{background:#fbe6e6}
.warnings{background:#fff4d6;border-left:5px solid #e0a800;padding:.5em 1em;margin:1em 0}
.note{color:#666;font-style:italic} .removed{color:#999;font-style:italic}
svg{max-width:100%;height:auto;display:block;margin:1em 0}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:bold} dd{margin:0}
code{font-size:.95em}
"""


def render(summary: Mapping[str, Any]) -> str:
    """The report page for one compilation.

    Args:
        summary: the dictionary ``hwcc.json`` holds; optional keys may be missing or
            ``None``, and keys the report does not know are ignored.

    Returns:
        A complete HTML document.
    """
    model = (summary.get("input") or {}).get("model", "model")
    body = [
        _header(summary),
        _summary_table(summary),
        plots(summary),
        _history(summary),
        _layers_table(summary),
        _payload(summary),
        _footer(summary),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>hwcc report: {_e(model)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body>\n</html>\n"
    )


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
    return write_text(path, render(summary))


# --- sections ---------------------------------------------------------------------------


def _header(s: Mapping[str, Any]) -> str:
    inp, target = s.get("input") or {}, s.get("target") or {}
    rows = [
        (
            "model",
            f"<code>{_e(inp.get('model', '?'))}</code>"
            + (
                f" <small>sha256 {_e(str(inp['sha256'])[:16])}…</small>"
                if inp.get("sha256")
                else ""
            ),
        )
    ]
    rows.append(
        ("data", _e(inp.get("data")) if inp.get("data") else '<span class="note">none</span>')
    )
    source = _PROVENANCE.get(target.get("provenance"), target.get("provenance", "?"))
    rows.append(
        (
            "target",
            f"<b>{_e(target.get('name', '?'))}</b> (costs from {_e(source)}"
            f"; primary metric {_e(METRIC_NAMES.get(primary_metric(s), primary_metric(s)))})",
        )
    )
    if target.get("description"):
        rows.append(("", _e(target["description"])))
    if s.get("legal_form"):
        rows.append(("legal form", _e(format_settings(s["legal_form"]))))
    final = s.get("final") or {}
    items = []
    for b in s.get("budgets") or []:
        met, metric = b.get("met"), b.get("metric")
        word = "met" if met else "not met" if met is not None else "unknown"
        got = f"; final {_e(format_value(metric, final.get(metric)))}" if metric in final else ""
        items.append(
            f'<li class="{"ok" if met else "bad"}"><b>{_e(b.get("text", "?"))}</b>: '
            f"{_e(METRIC_NAMES.get(metric, metric))} ≤ {_e(format_value(metric, b.get('limit')))} "
            f"— <b>{word}</b>{got}</li>"
        )
    rows.append(
        ("budgets", f"<ul>{''.join(items)}</ul>" if items else '<span class="note">none</span>')
    )
    ok = bool(s.get("budget_met"))
    verdict = s.get("exit_reason") or ("every budget met" if ok else "budget not met")
    out = [
        "<header>",
        "<h1>hwcc report</h1>",
        f'<p class="verdict {"ok" if ok else "bad"}">'
        f"{'✔' if ok else '✘ budget not met:'} {_e(verdict)}</p>",
        "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>",
    ]
    warnings = s.get("warnings") or []
    if warnings:
        out.append(
            '<div class="warnings"><b>Warnings</b><ul>'
            + "".join(f"<li>{_e(w)}</li>" for w in warnings)
            + "</ul></div>"
        )
    out.append("</header>")
    return "\n".join(out)


def _summary_table(s: Mapping[str, Any]) -> str:
    orig, final = s.get("original") or {}, s.get("final") or {}
    rows = []
    for m in METRICS:
        if m in orig or m in final:
            a, b = orig.get(m), final.get(m)
            rows.append(
                (
                    f"{METRIC_NAMES[m]} (predicted)",
                    format_value(m, a),
                    format_value(m, b),
                    _ratio(a, b),
                )
            )
    measured = s.get("measured") or {}
    for m in METRICS:
        a, b = measured.get(f"original_{m}"), measured.get(f"final_{m}")
        if a is not None or b is not None:
            rows.append(
                (
                    f"{METRIC_NAMES[m]} (measured on this CPU)",
                    format_value(m, a),
                    format_value(m, b),
                    _ratio(a, b),
                )
            )
    a, b = orig.get("accuracy"), final.get("accuracy")
    change = f"{(b - a) * 100:+.2f} pp" if finite(a) and finite(b) else "–"
    kind = s.get("accuracy_kind") or "accuracy"
    if s.get("accuracy_interval"):
        lo, hi = s["accuracy_interval"]
        kind += f"; final: 95 % interval {lo:.1%} to {hi:.1%}"
    rows.append((f"accuracy ({kind})", format_percent(a), format_percent(b), change))
    body = "".join(
        f"<tr><th>{_e(r[0])}</th>"
        + "".join(f'<td class="num">{_e(c)}</td>' for c in r[1:])
        + "</tr>"
        for r in rows
    )
    note = "" if finite(a) else '<p class="note">Accuracy was not measured.</p>'
    return (
        "<section><h2>Original and final</h2><table>"
        "<tr><th>metric</th><th>original</th><th>final</th><th>final / original</th></tr>"
        f"{body}</table>{note}</section>"
    )


def _history(s: Mapping[str, Any]) -> str:
    history = s.get("history") or []
    out = ["<section><h2>History</h2>"]
    if history:
        out.append(
            "<table><tr><th>iteration</th><th>layer</th><th>pass</th><th>settings</th><th>target</th>"
            "<th>Δ latency</th><th>Δ energy</th><th>Δ size</th><th>Δ accuracy</th></tr>"
        )
        for h in history:
            cells = [
                h.get("iteration", ""),
                h.get("layer", ""),
                h.get("pass", ""),
                format_settings(h.get("settings")),
                f"≤ {format_value(h.get('metric'), h.get('target'))}"
                if finite(h.get("target"))
                else "–",
            ]
            cells += [_delta(m, h.get(f"delta_{m}")) for m in METRICS]
            d = h.get("delta_accuracy")
            cells.append(f"{d * 100:+.2f} pp" if finite(d) else "–")
            out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
        out.append("</table>")
    else:
        out.append(
            '<p class="note">No iterations: the input model already met every budget, '
            "or no change could be made.</p>"
        )
    rejected = s.get("rejected") or []
    out.append(f"<details><summary>Rejected proposals ({len(rejected)})</summary>")
    out.append(
        _table(
            ["iteration", "layer", "pass", "reason"],
            [
                [r.get("iteration", ""), r.get("layer", ""), r.get("pass", ""), r.get("reason", "")]
                for r in rejected
            ],
        )
        + "</details>"
    )
    props, metric = s.get("proposals") or [], primary_metric(s)
    out.append(f"<details><summary>All proposals ({len(props)})</summary>")
    out.append(
        _table(
            [
                "iteration",
                "layer",
                "pass",
                "settings",
                METRIC_NAMES.get(metric, metric),
                "accuracy",
                "picked",
            ],
            [
                [
                    p.get("iteration", ""),
                    p.get("layer", ""),
                    p.get("pass", ""),
                    format_settings(p.get("settings")),
                    format_value(metric, p.get(metric)),
                    format_percent(p.get("accuracy")),
                    "yes" if p.get("picked") else "",
                ]
                for p in props
            ],
        )
        + "</details></section>"
    )
    return "\n".join(out)


def _layers_table(s: Mapping[str, Any]) -> str:
    rows = []
    for ly in s.get("layers") or []:
        before, after = ly.get("before") or {}, ly.get("after")
        row = [ly.get("name", "?"), ly.get("op_type", "?"), ly.get("on", "?")]
        for m in ("latency_s", "energy_j"):
            row += [
                format_value(m, before.get(m)),
                format_value(m, after.get(m)) if after else "removed",
            ]
        rows.append(row)
    if not rows:
        return ""
    head = [
        "layer",
        "op",
        "runs on",
        "latency before",
        "latency after",
        "energy before",
        "energy after",
    ]
    return f"<section><h2>Layers</h2>{_table(head, rows)}</section>"


def _payload(s: Mapping[str, Any]) -> str:
    payload = s.get("payload") or {}
    items = payload.items() if isinstance(payload, Mapping) else ((p, "") for p in payload)
    lis = "".join(f"<li><code>{_e(k)}</code>{': ' + _e(v) if v else ''}</li>" for k, v in items)
    return f"<section><h2>Payload files</h2><ul>{lis}</ul></section>" if lis else ""


def _footer(s: Mapping[str, Any]) -> str:
    timing = s.get("timing") or {}
    parts = [f"hwcc {_e(s.get('hwcc_version', '?'))}", f"created {_e(s.get('created', '?'))}"]
    if finite(timing.get("wall_s")):
        parts.append(f"{_e(format_metric('latency_s', timing['wall_s']))} wall time")
    if timing.get("iterations") is not None:
        parts.append(f"{_e(timing['iterations'])} iterations")
    return f'<footer><p class="note">{" · ".join(parts)}</p></footer>'


# --- helpers ----------------------------------------------------------------------------


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return '<p class="note">none</p>'
    body = "".join(
        "<tr>" + "".join(f"<td>{_e('–' if c is None else c)}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{body}</table>"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _delta(metric: str, value: Any) -> str:
    if not finite(value):
        return "–"
    return ("+" if value > 0 else "") + format_metric(metric, value)


def _ratio(a: Any, b: Any) -> str:
    return f"{b / a:.3g}×" if finite(a) and finite(b) and a != 0 else "–"
