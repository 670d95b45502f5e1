"""What ``hwcc jobs run`` shows while it waits: a line per job on a terminal, a log elsewhere.

On a terminal the block of lines (one per job: queued, running on which device and node
at which iteration with its metrics against their limits, or how it ended) and a totals
line with the time left are redrawn in place. The time left is the mean wall time of the
jobs finished so far times the jobs still to run, over how many run at once. Without a
terminal (a log file, a pipe, a test) it writes one line when a job starts, one when it
ends, and the totals after each end, so that a log stays short and readable.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from hwcc.progress import format_duration
from hwcc.search.budget import format_metric

__all__ = ["JobsView"]


class JobsView:
    """Draws the state of every job. ``update(rows)`` after each change; ``close()`` at the end.

    Args:
        stream: where to write (default stderr).
        tty: force the terminal form on or off; default: whether ``stream`` is a terminal.
    """

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = tty if tty is not None else bool(isatty and isatty())
        self.start = time.monotonic()
        self._drawn = 0
        self._said: dict[str, str] = {}

    def update(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if self.tty:
            self._redraw(rows)
        else:
            self._log(rows)

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
        self.stream.flush()

    def totals(self, rows: Sequence[Mapping[str, Any]]) -> str:
        ended = [r for r in rows if r["status"] in ("done", "unmet", "failed")]
        running = sum(r["status"] == "running" for r in rows)
        left = len(rows) - len(ended)
        walls = [r["wall_s"] for r in ended if r.get("wall_s")]
        eta = "?"
        if left == 0:
            eta = "0s"
        elif walls:
            eta = format_duration(sum(walls) / len(walls) * left / max(running, 1))
        counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "unmet", "failed")}
        return (
            f"{len(ended)}/{len(rows)} jobs ended ({counts['done']} met, {counts['unmet']} unmet, "
            f"{counts['failed']} failed), {running} running, "
            f"{format_duration(time.monotonic() - self.start)} so far, about {eta} left"
        )

    def _redraw(self, rows: Sequence[Mapping[str, Any]]) -> None:
        width = 160
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, AttributeError, ValueError):
            pass
        lines = [line_of(r)[: width - 1] for r in rows] + [self.totals(rows)[: width - 1]]
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn - 1}F")  # to the start of the first line
        self.stream.write("\n".join("\r" + s + "\x1b[K" for s in lines))
        self.stream.flush()
        self._drawn = len(lines)

    def _log(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for r in rows:
            said, now = self._said.get(r["id"]), r["status"]
            if now in ("queued",) or said == now:
                continue
            if now == "running" and said is not None:
                continue
            self._said[r["id"]] = now
            self.stream.write(f"hwcc jobs: {line_of(r)}\n")
            if now in ("done", "unmet", "failed"):
                self.stream.write(f"hwcc jobs: {self.totals(rows)}\n")
        self.stream.flush()


def line_of(r: Mapping[str, Any]) -> str:
    """One job as one line: ``id  status  where  iteration  metrics/limits``."""
    status = r["status"]
    where = r.get("device") or "any cpu"
    if r.get("node_id"):
        where += f" on node {str(r['node_id'])[:8]}"
    parts = [f"{r['id']}", status]
    if status == "running":
        parts.append(where)
        if r.get("iteration") is not None:
            parts.append(f"iteration {r['iteration']}")
        limits, current = r.get("limits") or {}, r.get("current") or {}
        parts += [
            f"{format_metric(m, current[m])}/{format_metric(m, lim)}"
            for m, lim in limits.items()
            if m in current
        ]
        if r.get("phase"):
            parts.append(str(r["phase"]))
    elif status in ("done", "unmet"):
        parts.append(where)
        final = r.get("final") or {}
        parts += [
            f"{b['text']}: {format_metric(b['metric'], final.get(b['metric']) or 0)}"
            + ("" if b.get("met") else " (missed)")
            for b in r.get("budget_results") or []
        ]
        if final.get("accuracy") is not None:
            parts.append(f"accuracy {final['accuracy']:.2%}")
    elif status == "failed":
        parts.append(str(r.get("error")))
    return "  ".join(parts)
