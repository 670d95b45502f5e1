"""The results folder's page, ``index.html``: every job's row, and accuracy against budget.

One self-contained page (inline CSS and SVG, as the compile report): a line of totals; one
row per job with its status, where it ran, each budgeted metric's final value against its
limit, the accuracy before and after, and a link to the job's own ``report.html``; then
for each model a plot of accuracy against the budgeted metric across its targets. Targets
price in different units and scales (microseconds on one, milliseconds on another;
energy on Eyeriss), so the plot's x axis is the budgeted metric as a fraction of the
input model's on the same target: a point at 0.5 used half of what the original did.
Every string from the jobs is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from hwcc.report import svg as _svg
from hwcc.report.values import finite, format_percent
from hwcc.search.budget import format_metric

__all__ = ["render"]

_COLORS = (_svg.BLUE, _svg.ORANGE, _svg.GREEN, _svg.RED, _svg.GREY, "#9467bd", "#8c564b")
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4} .ok{color:#17611c}.bad{color:#a4161a}.run{color:#8a6d00}
svg{max-width:100%;height:auto;display:block;margin:1em 0}
"""
_STATUS_CLASS = {"done": "ok", "unmet": "bad", "failed": "bad", "running": "run"}


def render(doc: Mapping[str, Any]) -> str:
    """The page for ``summary.json``'s content ``doc``."""
    jobs = doc.get("jobs") or []
    counts = doc.get("counts") or {}
    totals = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    body = [
        f"<h1>hwcc tuning jobs: {_e(doc.get('source', ''))}</h1>",
        f"<p>{len(jobs)} jobs: {_e(totals)}. Updated {_e(doc.get('updated', ''))}.</p>",
        _table(jobs),
        "<h2>Accuracy against the budgeted metric</h2>",
        *_plots(jobs),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>hwcc jobs</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _table(jobs: list[Mapping[str, Any]]) -> str:
    head = ["job", "model", "target", "device / node", "status", "budgets", "accuracy", "report"]
    rows = []
    for j in jobs:
        status = j.get("status", "?")
        detail = j.get("exit_reason") or j.get("error") or ""
        if status == "running" and j.get("iteration") is not None:
            detail = f"iteration {j['iteration']}"
        where = " / ".join(str(x) for x in (j.get("device"), _short(j.get("node_id"))) if x)
        report = f'<a href="{_e(j["report"])}">report</a>' if j.get("report") else ""
        acc = ""
        if j.get("final"):
            acc = (
                f"{format_percent((j.get('original') or {}).get('accuracy'))} → "
                f"{format_percent(j['final'].get('accuracy'))}"
            )
        cls = _STATUS_CLASS.get(status, "")
        rows.append(
            [
                _e(j.get("id")),
                _e(j.get("model")),
                _e(j.get("target")),
                _e(where),
                f'<span class="{cls}">{_e(status)}</span><br><small>{_e(detail)}</small>',
                _budgets(j),
                _e(acc),
                report,
            ]
        )
    cells = "".join(f"<th>{h}</th>" for h in head)
    lines = ["<table>", f"<tr>{cells}</tr>"]
    lines += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows]
    return "\n".join(lines + ["</table>"])


def _budgets(j: Mapping[str, Any]) -> str:
    """Each budget with the final value of its metric: ``latency 1.2 ms / 2 ms ✓``."""
    if not j.get("budget_results"):
        return _e(", ".join(j.get("budgets") or []))
    out = []
    for b in j["budget_results"]:
        value = (j.get("final") or {}).get(b.get("metric"))
        shown = format_metric(b["metric"], value) if finite(value) else "?"
        mark = '<span class="ok">met</span>' if b.get("met") else '<span class="bad">missed</span>'
        limit = format_metric(b["metric"], b["limit"]) if finite(b.get("limit")) else "?"
        out.append(f"{_e(b.get('text'))}: {_e(shown)} / {_e(limit)} {mark}")
    return "<br>".join(out)


def _plots(jobs: list[Mapping[str, Any]]) -> list[str]:
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for j in jobs:
        if j.get("final") and j.get("budget_results"):
            by_model.setdefault(j["model"], []).append(j)
    if not by_model:
        return ['<p class="note">No job has finished yet.</p>']
    charts = []
    for model, done in by_model.items():
        chart = _svg.Chart(
            f"{model}: accuracy against the budgeted metric, per target",
            "budgeted metric, as a fraction of the original's on the same target",
            "accuracy",
            _svg.percent_labels,
            _svg.percent_labels,
        )
        targets = list(dict.fromkeys(str(j["target"]) for j in done))
        for k, target in enumerate(targets):
            xs, ys, tips, labels = [], [], [], []
            for j in (j for j in done if str(j["target"]) == target):
                metric = j["budget_results"][0]["metric"]
                before, after = (j.get("original") or {}).get(metric), j["final"].get(metric)
                acc = j["final"].get("accuracy")
                if not (finite(before) and finite(after) and finite(acc)) or before <= 0:
                    continue
                xs.append(after / before)
                ys.append(acc)
                labels.append(" ".join(j.get("budgets") or []))
                tips.append(
                    f"{j['id']}: {format_metric(metric, after)} of {format_metric(metric, before)}"
                    f", accuracy {format_percent(acc)}"
                )
            if xs:
                chart.points(xs, ys, _COLORS[k % len(_COLORS)], tips, labels, label=target)
        charts.append(chart.render())
    return charts


def _short(node_id: Any) -> str | None:
    return str(node_id)[:8] if node_id else None


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))
