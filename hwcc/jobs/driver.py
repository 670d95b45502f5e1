"""The driver of a run of tuning jobs: :func:`run` behind ``hwcc jobs run`` and ``hwcc.jobs.run``.

1. The job file is read and checked whole (:mod:`hwcc.jobs.spec`); a bad file is one
   error and nothing runs.
2. The results folder is taken (``RESULTS/.lock``: one driver at a time) and every job
   whose artifact is already complete is skipped: the folder is the driver's only state,
   so a driver killed and run again with the same arguments does only what is left.
3. Each other job becomes one Ray task (:mod:`hwcc.jobs.engine`); a job asking for a
   device no machine of the cluster offers fails at once with a message saying how to
   offer it, and the others go on.
4. While they run, the driver reads their progress, shows it (:mod:`hwcc.jobs.view`), and
   as each job ends writes what it sent back (an artifact from a machine that cannot
   write the folder, the device's lookup table under ``RESULTS/tables/<device>/``) and
   rewrites ``summary.json``, ``summary.csv`` and ``index.html``.

The exit code is 0 when every job ended with every budget and its accuracy floor met,
:data:`EXIT_UNMET` otherwise (a job missed, or failed).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwcc.errors import HwccError
from hwcc.jobs.results import finished, row, write_summary
from hwcc.jobs.spec import Job, JobSpec, load_spec
from hwcc.jobs.worker import TOKEN_FILE, table_files, unpack

__all__ = ["run", "JobsResult", "EXIT_UNMET"]

EXIT_UNMET = 3
Watch = Callable[[Sequence[Mapping[str, Any]]], None]


@dataclass
class JobsResult:
    """What a run of jobs ended with: one row per job (as ``summary.json`` has them)."""

    rows: list[dict[str, Any]]
    folder: Path

    @property
    def exit_code(self) -> int:
        return 0 if all(r["status"] == "done" for r in self.rows) else EXIT_UNMET

    @property
    def skipped(self) -> list[str]:
        """The jobs that were already finished when this run started."""
        return [r["id"] for r in self.rows if r.get("skipped")]


def run(
    spec: JobSpec | str | os.PathLike,
    output: str | os.PathLike,
    *,
    address: str | None = None,
    progress: Watch | None = None,
    poll_s: float = 0.5,
) -> JobsResult:
    """Run every job of ``spec`` that has not finished yet, and write the results folder.

    Args:
        spec: a :class:`~hwcc.jobs.spec.JobSpec` or the path of a job file.
        output: the results folder (created if missing).
        address: a Ray cluster to join (``"auto"``, ``"ray://HOST:PORT"``); None starts
            Ray on this machine, offering every device the jobs name.
        progress: called with every job's row whenever one changes (``hwcc jobs run``
            passes a :class:`~hwcc.jobs.view.JobsView`'s ``update``).
        poll_s: how often the driver looks at running jobs' progress.

    Raises:
        HwccError: a bad job file, a results folder that cannot be written or is in use
            by another driver, Ray missing or its cluster unreachable.
    """
    if not isinstance(spec, JobSpec):
        spec = load_spec(spec)
    results = Path(output).resolve()
    with _taken(results):
        return _Run(spec, results, progress or (lambda rows: None)).go(address, poll_s)


class _Run:
    def __init__(self, spec: JobSpec, results: Path, watch: Watch):
        self.spec, self.results, self.watch = spec, results, watch
        self.state: dict[str, dict[str, Any]] = {j.id: {"status": "queued"} for j in spec.jobs}
        self.summaries: dict[str, dict[str, Any] | None] = {}
        self.token = _token(results)
        self.meta = {
            "source": spec.source,
            "results": str(results),
            "driver_pid": os.getpid(),
            "driver_host": socket.gethostname(),
        }

    def go(self, address: str | None, poll_s: float) -> JobsResult:
        from hwcc.jobs.engine import connect

        todo = []
        for job in self.spec.jobs:
            self.summaries[job.id] = finished(self.results, job)
            if self.summaries[job.id] is None:
                todo.append(job)
            else:
                self.state[job.id]["skipped"] = True
        self._write()
        if todo:
            engine = connect(address, {j.device for j in todo if j.device})
            pending: dict[Any, Job] = {}
            try:
                self._run_all(engine, todo, pending, poll_s)
            finally:  # interrupted: stop this run's tasks, so a rerun does not meet them
                engine.cancel(pending)
                engine.close()
        self._write()
        return JobsResult(self.rows(), self.results)

    def _run_all(
        self, engine: Any, todo: list[Job], pending: dict[Any, Job], poll_s: float
    ) -> None:
        offered = engine.offered()
        for job in todo:
            if job.resource and job.resource not in offered:
                self.state[job.id] = {
                    "status": "failed",
                    "error": f"no machine of the Ray cluster offers the device {job.device}",
                    "hint": f"on the machine that is {job.device}: ray start --address ... "
                    f"--resources '{{\"{job.resource}\": 1}}'",
                }
                continue
            tables = table_files(self.results, job.device)
            pending[engine.submit(job, str(self.results), self.token, tables)] = job
        self._write()
        last = 0.0
        while pending:
            ready = engine.wait(list(pending), timeout=poll_s)
            changed = self._merge_progress(engine.progress(), pending.values())
            for ref in ready:
                self._ended(pending.pop(ref), engine.answer(ref))
                changed = True
            if ready or (changed and time.monotonic() - last > 2.0):
                self._write()
                last = time.monotonic()
            elif changed:
                self.watch(self.rows())

    def _merge_progress(self, board: Mapping[str, dict[str, Any]], running: Any) -> bool:
        changed = False
        for job in running:
            posted = board.get(job.id)
            if posted and posted != self.state[job.id].get("posted"):
                self.state[job.id] = {**self.state[job.id], **posted, "posted": posted}
                changed = True
        return changed

    def _ended(self, job: Job, answer: Mapping[str, Any]) -> None:
        if answer.get("files"):
            unpack(answer["files"], self.results / job.id)
        for name, data in (answer.get("tables") or {}).items():
            folder = self.results / "tables" / str(job.device)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        run = answer.get("run") or {}
        base = {k: v for k, v in self.state[job.id].items() if k not in ("posted",)}
        base.update({k: run[k] for k in ("node_id", "host") if k in run})
        if answer.get("status") == "done":
            self.summaries[job.id] = finished(self.results, job)
            self.state[job.id] = {**base, "status": "done"}
        else:
            self.state[job.id] = {
                **base,
                "status": "failed",
                "error": answer.get("error"),
                "hint": answer.get("hint"),
            }

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for job in self.spec.jobs:
            state = self.state[job.id]
            r = row(job, state, self.summaries.get(job.id))
            if r["status"] == "running":
                r.update({k: state[k] for k in ("current", "limits", "phase") if k in state})
            if state.get("skipped"):
                r["skipped"] = True
            out.append(r)
        return out

    def _write(self) -> None:
        rows = self.rows()
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        write_summary(self.results, rows, {**self.meta, "updated": now})
        self.watch(rows)


class _taken:
    """``RESULTS/.lock``, held while a driver runs: a second driver on the same folder fails
    at once. The kernel drops the lock of a killed driver, so a stale file blocks no one."""

    def __init__(self, results: Path):
        self.results = results

    def __enter__(self) -> None:
        try:
            self.results.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.results / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise HwccError(
                f"cannot write the results folder {self.results}: {e.strerror}",
                "give -o a folder you can write",
            ) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise HwccError(
                f"another 'hwcc jobs run' is writing {self.results}",
                "wait for it to end, or give another -o folder",
            ) from None

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _token(results: Path) -> str:
    """The folder's token (kept across runs, so a machine's scratch folder stays the same):
    a worker that reads it at the same path shares the driver's disk."""
    path = results / TOKEN_FILE
    try:
        return path.read_text().strip()
    except OSError:
        token = secrets.token_hex(8)
        path.write_text(token + "\n")
        return token
