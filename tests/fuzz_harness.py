"""The loader fuzzer's harness (tests/test_fuzz_loader_*.py): a worker process that loads
case after case (startup is the costly part), and the parent that feeds it, under a
watchdog that kills and restarts it when a case takes more than ``HANG_S`` seconds.

The worker runs with a 4 GiB memory limit so that a blow-up fails fast (it is still
reported, as "out of memory"). It records every file the process opens (an audit hook,
and the one C++ open in onnx's external-data reader) and reports any outside the case's
folder and the Python installation: a model must not make hwcc read ``../secret``.

This file is also the worker's program, and reproduces one case (the worker runs with
``PYTHONHASHSEED=0``)::

    PYTHONHASHSEED=0 .venv/bin/python tests/fuzz_harness.py --case SEED   # loads it here
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

from fuzz_bases import MODEL, SECRET, base_models
from fuzz_cases import Case, make_case, write_case

import hwcc
import hwcc.targets
from hwcc.errors import HwccError

HANG_S = 20


def _worker() -> None:
    """Load the cases the parent sends, one JSON line each, and answer one line each.

    Protocol output goes to the original stdout; anything else written to fd 1 (by onnx's
    C++ code, say) is sent to stderr so it cannot corrupt the answers.
    """
    import resource

    resource.setrlimit(
        resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30)
    )  # a runaway allocation fails here
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    opened: list[str] = []
    _audit_opens(opened)
    installed = [
        os.path.realpath(p)
        for p in (
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            *hwcc.__path__,
            *hwcc.targets.__path__,
        )
    ]
    answers.write("ready\n")
    answers.flush()
    for line in sys.stdin:
        job = json.loads(line)
        path = Path(job["path"])
        opened.clear()
        error = _load_and_save(path, job["kwargs"])
        folder = os.path.realpath(path.parent)
        # Before the traceback is formatted: that reads source files.
        escapes = sorted({p for p in opened if not _inside(p, [folder, *installed])})
        answers.write(json.dumps({**_outcome(error), "escapes": escapes}) + "\n")
        answers.flush()


def _audit_opens(opened: list[str]) -> None:
    """Record every path this process opens: Python's ``open`` audit events, and onnx's
    C++ opening of external data files, which Python does not see."""
    import onnx.external_data_helper as edh

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.path.realpath(os.fsdecode(args[0])))

    sys.addaudithook(hook)
    cpp_open = edh._open_external_data_fd

    def recorded_open(base_dir, location, tensor_name, read_only):
        opened.append(os.path.realpath(os.path.join(base_dir, location)))
        return cpp_open(base_dir, location, tensor_name, read_only)

    edh._open_external_data_fd = recorded_open


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _load_and_save(path: Path, kwargs: dict) -> Exception | None:
    """Load the model at ``path`` and save it back beside it; the exception, if any."""
    try:
        hwcc.save(hwcc.load(path, **kwargs), path.parent / "saved" / MODEL)
    except Exception as e:  # noqa: BLE001 - exactly what the fuzzer looks for
        return e
    return None


def _outcome(error: Exception | None) -> dict:
    """``{"outcome": "ok" | "clean" | "memory" | "foreign", "error": ..., "where": ...}``.

    "memory": an HwccError that reports running out of memory, which the worker's memory
    limit turned from a blow-up into an error: the model should have been refused first.
    """
    if error is None:
        return {"outcome": "ok"}
    if isinstance(error, HwccError):
        memory = "MemoryError" in str(error) or "bad_alloc" in str(error)
        return {"outcome": "memory" if memory else "clean", "error": str(error)[:300]}
    where = "".join(traceback.format_exception(error)[-4:])
    return {
        "outcome": "foreign",
        "error": f"{type(error).__name__}: {str(error)[:300]}",
        "where": where,
    }


class Harness:
    """Runs cases in a worker process, restarting it after a hang or a crash."""

    def __init__(self, root: Path):
        self.root = root
        self.log = root / "worker.log"
        self.proc: subprocess.Popen | None = None
        (root / SECRET).write_bytes(bytes(4096))

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
        if self._read_line(120) != "ready":
            raise RuntimeError(f"the fuzz worker did not start; see {self.log}")

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def _read_line(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline().decode().strip()

    def run(self, case: Case) -> dict:
        """The worker's answer for ``case``, or ``{"outcome": "hang" | "crash"}``."""
        if self.proc is None:
            self._start()
        path = write_case(case, self.root / "case")
        start = time.perf_counter()
        try:
            self.proc.stdin.write(
                (json.dumps({"path": str(path), "kwargs": case.kwargs}) + "\n").encode()
            )
            self.proc.stdin.flush()
            line = self._read_line(HANG_S)
        except BrokenPipeError:  # the worker died before it could take the case
            line = ""
        seconds = time.perf_counter() - start
        if line is None or line == "":
            code = self.proc.poll()
            self._stop()
            outcome = "hang" if line is None else "crash"
            return {
                "outcome": outcome,
                "error": f"after {seconds:.1f} s, exit code {code}",
                "seconds": seconds,
            }
        return {**json.loads(line), "seconds": seconds}


def fuzz(root: Path, seeds: range) -> tuple[Counter, list[str]]:
    """Run the cases of ``seeds``; the outcome counts and a report line per bad case."""
    bases = base_models()
    counts: Counter = Counter()
    bad: list[str] = []
    with Harness(root) as h:
        for seed in seeds:
            case = make_case(seed, bases)
            answer = h.run(case)
            counts[answer["outcome"]] += 1
            if answer.get("escapes"):
                counts["escapes"] += 1
                bad.append(
                    f"opened outside the model's folder {answer['escapes']}: {case.describe()}"
                )
            if answer["outcome"] not in ("ok", "clean"):
                error, where = answer.get("error"), answer.get("where", "")
                bad.append(f"{answer['outcome']}: {error}\n{where}    {case.describe()}")
    return counts, bad


def _reproduce(seed: int) -> None:
    """Write the case of ``seed`` to a new temporary folder and load it here, so that an
    exception shows its whole traceback."""
    import tempfile

    case = make_case(seed, base_models())
    print(case.describe())
    root = Path(tempfile.mkdtemp(prefix="hwcc-fuzz-"))
    (root / SECRET).write_bytes(bytes(4096))
    path = write_case(case, root / "case")
    print(f"written to {path}")
    graph = hwcc.load(path, **case.kwargs)
    hwcc.save(graph, path.parent / "saved" / MODEL)
    print("loaded and saved:", graph)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    elif len(sys.argv) == 3 and sys.argv[1] == "--case":
        _reproduce(int(sys.argv[2]))
    else:
        sys.exit("usage: fuzz_harness.py --case SEED")
