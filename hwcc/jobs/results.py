"""The results folder's table of jobs: ``summary.json`` and ``summary.csv``, and the status.

The driver keeps no state that the results folder does not hold. A job is finished when
its artifact is there (``RESULTS/<id>/hwcc.json``, written atomically by the compile);
``summary.json`` says what the driver last knew of every job (queued, running on which
node, done, failed with its error), and :func:`status` joins the two, so that a driver
killed mid-run leaves a folder whose status is still true: a job whose driver died shows
as interrupted, with the iteration its checkpoint reached.

Each row (:func:`row`) holds the job's spec, where it ran, its status, and for a finished
job the original and final metrics, the budgets with whether each was met, the exit
reason and a link to its report. Both files are rewritten whole and atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwcc.jobs.spec import Job
from hwcc.report.disk import write_text

__all__ = ["row", "write_summary", "read_summary", "status", "finished", "METRICS"]

METRICS = ("latency_s", "energy_j", "size_bytes", "accuracy")
STATUSES = ("queued", "running", "done", "unmet", "failed", "interrupted")


def finished(results: Path, job: Job) -> dict[str, Any] | None:
    """The ``hwcc.json`` of ``job``'s artifact if it is complete, else None."""
    try:
        return json.loads((results / job.id / "hwcc.json").read_text())
    except (OSError, ValueError):
        return None


def row(job: Job, state: Mapping[str, Any], summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """One job's row: its spec, its state as the driver knows it, and its artifact's numbers."""
    out: dict[str, Any] = {
        "id": job.id,
        "model": job.model,
        "target": job.target,
        "device": job.device,
        "budgets": list(job.budgets),
        "status": state.get("status", "queued"),
        "node_id": state.get("node_id"),
        "host": state.get("host"),
        "pid": state.get("pid"),
        "iteration": state.get("iteration"),
        "error": state.get("error"),
        "hint": state.get("hint"),
    }
    if summary is not None:
        record = summary.get("job") or {}
        met = bool(summary.get("budget_met")) and bool(summary.get("accuracy_floor_met", True))
        out.update(
            status="done" if met else "unmet",
            node_id=record.get("node_id", out["node_id"]),
            host=record.get("host", out["host"]),
            iteration=(summary.get("timing") or {}).get("iterations"),
            resumed_from_iteration=record.get("resumed_from_iteration"),
            budget_met=met,
            exit_reason=summary.get("exit_reason"),
            budget_results=[
                {k: b.get(k) for k in ("text", "metric", "limit", "met")}
                for b in summary.get("budgets") or []
            ],
            original={m: (summary.get("original") or {}).get(m) for m in METRICS},
            final={m: (summary.get("final") or {}).get(m) for m in METRICS},
            primary_metric=(summary.get("target") or {}).get("primary_metric"),
            wall_s=(summary.get("timing") or {}).get("wall_s"),
            report=f"{job.id}/report.html",
        )
    return out


def write_summary(
    results: Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]
) -> None:
    """Rewrite ``summary.json`` and ``summary.csv`` (and the page) from ``rows``."""
    from hwcc.jobs.page import render

    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    doc = {"summary_version": 1, **meta, "counts": counts, "jobs": list(rows)}
    write_text(results / "summary.json", json.dumps(doc, indent=2, default=str) + "\n")
    write_text(results / "summary.csv", _csv(rows))
    write_text(results / "index.html", render(doc))


def read_summary(results: Path) -> dict[str, Any] | None:
    try:
        return json.loads((results / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def status(results: Path) -> list[dict[str, Any]]:
    """Where every job of ``results`` stands now: ``summary.json`` corrected by the disk
    (a finished artifact; a checkpoint left by a job whose driver is gone)."""
    doc = read_summary(results) or {"jobs": []}
    alive = _driver_alive(doc.get("driver_pid"), doc.get("driver_host"))
    out = []
    for r in doc["jobs"]:
        job = Job.from_json({k: r[k] for k in ("id", "model", "target", "budgets", "device")})
        summary = finished(results, job)
        if summary is not None:
            r = {**r, **row(job, r, summary)}
        elif r["status"] in ("queued", "running") and not alive:
            ckpt = _checkpoint_iteration(results / f"{job.id}.checkpoint")
            r = {**r, "status": "interrupted", "iteration": ckpt}
        out.append(r)
    return out


def _checkpoint_iteration(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "state.json").read_text())["state"]["iteration"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _driver_alive(pid: Any, host: Any) -> bool:
    import socket

    if not isinstance(pid, int) or host != socket.gethostname():
        return host is not None and host != socket.gethostname()  # another machine's: trust it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    head = [
        "id",
        "model",
        "target",
        "device",
        "budgets",
        "status",
        "budget_met",
        "node_id",
        "host",
        "iteration",
        "resumed_from_iteration",
        "wall_s",
        "exit_reason",
        "error",
    ]
    head += [f"original_{m}" for m in METRICS] + [f"final_{m}" for m in METRICS] + ["report"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in rows:
        flat = {**r, "budgets": " ".join(r.get("budgets") or [])}
        for side in ("original", "final"):
            for m in METRICS:
                flat[f"{side}_{m}"] = (r.get(side) or {}).get(m)
        w.writerow(["" if flat.get(k) is None else flat[k] for k in head])
    return buf.getvalue()
