"""What one job does where it runs: a resumable ``hwcc.compile`` and the files it brings back.

A job is exactly a compile (:func:`hwcc.compile` with ``output``): the same artifact and
the same checkpoint, so a job whose worker died and is run again continues from
``<out>.checkpoint`` (``resume=True``) instead of starting over, and ends with the same
model as a run that was never interrupted.

Where the artifact is written depends on whether this machine sees the driver's results
folder: the driver leaves a token file there (:data:`TOKEN_FILE`); a worker that reads
the same token at the same path writes straight into it, and any other worker compiles
into a folder of its own machine's cache and sends the files back in its answer, which
the driver writes into place (:func:`unpack`). A checkpoint then stays on that machine,
so a retry resumes only when Ray runs it there again.

When the compile is done, the job adds its record to the artifact's ``hwcc.json`` under
``job``: the node, host and process it ran on, when it started, the iteration a retry
resumed from, the ``OMP_NUM_THREADS`` it ran under (Ray sets it to the task's one CPU, so
torch and the BLAS use one thread each) and the CPU time its process spent compiling
(with ``timing.wall_s``: how much of a core it had). ``hwcc.compile`` itself is unchanged.

A measured target's lookup table belongs to its device: the driver sends the table it
holds for the device (``RESULTS/tables/<device>/``) with the job, the worker puts it in
this machine's table cache when that has none (so it is not measured again), and the
table as the compile left it comes back to the driver. Nothing here imports Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hwcc.jobs.spec import Job
from hwcc.targets.base import load_target

__all__ = ["TOKEN_FILE", "run_job", "unpack", "table_files"]

TOKEN_FILE = ".hwcc-jobs-token"
Report = Callable[[dict[str, Any]], None]


def run_job(
    job: Job,
    results: str,
    token: str,
    tables: Mapping[str, bytes],
    node: Mapping[str, str],
    report: Report,
) -> dict[str, Any]:
    """Run ``job`` here and say how it went; never raises for the job's own failures.

    Args:
        job: what to compile.
        results: the driver's results folder (an absolute path on the driver's machine).
        token: the driver's token, to tell whether ``results`` is the driver's folder here.
        tables: the device's lookup tables the driver holds (file name -> JSON bytes).
        node: where this runs (``node_id``, ``node_ip``), recorded in the artifact.
        report: called with the job's progress (``{"status": ..., "iteration": ...}``).

    Returns:
        ``status`` (``done`` or ``failed``), ``error``/``hint`` when failed, ``files``
        (the artifact, file -> bytes) when the driver cannot see this machine's disk,
        ``tables`` (file -> bytes) for a measured target, and ``run`` (the record that
        the artifact's ``hwcc.json`` holds under ``job``).
    """
    import hwcc  # here, not at the top: the driver imports this module and needs no torch

    shared = _reads_token(Path(results), token)
    out = Path(results, job.id) if shared else _scratch(token) / job.id
    checkpoint = Path(f"{out}.checkpoint", "state.json")
    run: dict[str, Any] = {
        "id": job.id,
        "device": job.device,
        **node,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "resumed_from_iteration": None,
        "started_at": time.time(),  # with timing.wall_s: when it held its device
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "spec": job.to_json(),
    }
    report({"status": "running", **{k: run[k] for k in ("node_id", "host", "pid")}})
    _install_tables(job, tables)

    def progress(kind: str, info: dict[str, Any]) -> None:
        state = info.get("state")
        if kind == "resumed":
            run["resumed_from_iteration"] = state.iteration
        if state is not None and kind in ("resumed", "picked", "iteration"):
            report(
                {
                    "status": "running",
                    "iteration": state.iteration,
                    "current": dict(state.current),
                    "limits": dict(state.limits),
                    "accuracy": state.accuracy,
                }
            )
        elif kind == "long_term":
            report({"status": "running", "phase": "long-term fine-tune"})

    start, cpu = time.monotonic(), time.process_time()
    try:
        result = hwcc.compile(
            job.model,
            job.target,
            list(job.budgets),
            data=job.data,
            holdout=job.holdout,
            metric=job.metric,
            output=str(out),
            resume=checkpoint.is_file(),
            progress=progress,
            **job.options,
        )
    except hwcc.HwccError as e:
        return {"status": "failed", "error": e.message, "hint": e.hint, "run": run}
    except Exception as e:  # a bug or a broken model: the job fails, the others go on
        tail = traceback.format_exc(limit=-3)
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "hint": tail, "run": run}
    run["cpu_s"] = time.process_time() - cpu
    _record(out / "hwcc.json", run)
    answer: dict[str, Any] = {"status": "done", "run": run, "wall_s": time.monotonic() - start}
    answer["exit_code"] = result.exit_code
    if not shared:
        answer["files"] = _pack(out)
        shutil.rmtree(out, ignore_errors=True)
    table = getattr(result.target, "table", None) if job.device else None
    if table is not None and Path(table.path).is_file():
        answer["tables"] = {Path(table.path).name: Path(table.path).read_bytes()}
    return answer


def unpack(files: Mapping[str, bytes], folder: Path) -> None:
    """Write an artifact sent back by a worker into ``folder``, all at once: the files go to
    a temporary folder beside it, which is renamed into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for rel, data in files.items():
            path = tmp / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise ValueError(f"a worker sent a file outside its artifact: {rel}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def table_files(results: Path, device: str | None) -> dict[str, bytes]:
    """The lookup tables the results folder holds for ``device`` (file name -> bytes)."""
    if not device:
        return {}
    folder = results / "tables" / device
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


def _reads_token(results: Path, token: str) -> bool:
    try:
        return (results / TOKEN_FILE).read_text().strip() == token
    except OSError:
        return False


def _scratch(token: str) -> Path:
    """A folder of this machine's own for artifacts the driver's disk cannot take directly."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    path = Path(base, "hwcc", "jobs", token)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _install_tables(job: Job, tables: Mapping[str, bytes]) -> None:
    """Put the device's tables from the driver into this machine's table cache, where it has
    none of that name: a table the machine already holds is at least as full."""
    if not job.device or not tables:
        return
    table = getattr(load_target(job.target), "table", None)  # a measured target's own table
    if table is None:
        return
    folder = Path(table.path).parent
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in tables.items():
        path = folder / Path(name).name
        if path.exists():
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


def _record(summary: Path, run: Mapping[str, Any]) -> None:
    """Add the job's record (where it ran; the iteration a retry resumed from) to the
    artifact's ``hwcc.json`` under ``job``, replacing the file whole. The compile wrote the
    artifact atomically; a job killed between the two leaves it complete, without the record.
    """
    doc = json.loads(summary.read_text())
    doc["job"] = dict(run)
    fd, tmp = tempfile.mkstemp(prefix=".hwcc.json.", dir=summary.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, summary)


def _pack(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
