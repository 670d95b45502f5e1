"""Helpers shared by the bench sections and the runner.

Markdown tables and plot files for a section's body, the machine and library versions
for the page's header, and :func:`run_child`, which runs one command and reports its
wall time, its peak memory and when each line of its stderr arrived.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from hwcc.report.disk import write_text

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("hwcc", "onnx", "onnxruntime", "torch", "numpy", "networkx")


# ---------------------------------------------------------------------- section bodies
def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A markdown table; ``align`` has one letter per column (``l``, ``r``), right by default.

    Cells are written with ``str``; ``|`` inside a cell is escaped.
    """
    align = align.ljust(len(headers), "r")
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join(":---" if a == "l" else "---:" for a in align[: len(headers)]) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save_svg(out: Path, filename: str, svg: str, alt: str) -> str:
    """Write ``svg`` to ``out/filename`` and return its markdown image link.

    The link is ``results/<filename>``, as every section writes it; the runner points it
    at wherever the results folder lies relative to the page.
    """
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / filename, svg if svg.endswith("\n") else svg + "\n")
    return f"![{alt}](results/{filename})"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)


def fmt_duration(seconds: float) -> str:
    """``42 s``, ``6 min 05 s``, ``1 h 02 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def fmt_times(ratio: float) -> str:
    """``2.13x``: a ratio such as a speed-up or an energy reduction."""
    return f"{ratio:.2f}x"


def fmt_count(n: float) -> str:
    """``50.6K``, ``1.2M``: parameters and MACs."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:g}"


# ---------------------------------------------------------------------- the machine
def machine() -> dict[str, Any]:
    """CPU model, cores (all, and usable by this process), memory and OS of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_bytes": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "executable": sys.executable,
    }


def versions() -> dict[str, str]:
    """Installed versions of python and the libraries the numbers depend on."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_revision() -> str | None:
    """``abc1234`` or ``abc1234 + local changes`` for the checkout, None outside one."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + (" + local changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------- child processes
@dataclasses.dataclass
class ChildRun:
    """What :func:`run_child` saw of one command.

    Attributes:
        argv: the command.
        returncode: its exit status (negative: killed by that signal).
        wall_s: from start to exit, by the clock.
        peak_rss_bytes: the child's own peak resident memory (``wait4``'s ``ru_maxrss``).
        cpu_s: user plus system time of the child.
        stdout: everything it printed on stdout.
        stderr: ``(seconds since start, line)`` for each line of its stderr.
        timed_out: it was killed for running past the time limit.
    """

    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_bytes: int
    cpu_s: float
    stdout: str
    stderr: list[tuple[float, str]]
    timed_out: bool = False


# Starts the measured command from a small process of its own. On Linux a process's peak
# memory includes that of the process it was forked from (exec records the forked copy's
# high-water mark), so a command started straight from a bench that holds torch would
# report the bench's memory. This starter holds ~10 MiB, waits for the command with
# wait4, and writes the command's own status and resources to the file named first.
# SIGTERM makes it kill the command (and still report).
_STARTER = r"""
import json, os, signal, sys
out, argv, pid, stop = sys.argv[1], sys.argv[2:], None, False
def term(*_):
    global stop
    stop = True
    if pid:
        os.kill(pid, signal.SIGKILL)
signal.signal(signal.SIGTERM, term)
pid = os.posix_spawnp(argv[0], argv, dict(os.environ))
if stop:
    os.kill(pid, signal.SIGKILL)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump({"status": status, "maxrss": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}, f)
"""


def run_child(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> ChildRun:
    """Run ``argv`` to completion, alone, and measure it.

    Peak memory is the command's own ``ru_maxrss`` from ``wait4``, taken by a small
    starter process (see ``_STARTER``), so neither the bench's own memory nor earlier
    commands' (which ``RUSAGE_CHILDREN`` would keep) count. Stdout goes to a temporary
    file while stderr is read line by line as it arrives. After ``timeout`` seconds the
    command is killed; what it used until then is reported.

    Raises:
        RuntimeError: the starter itself failed (the command could not be started).
    """
    argv = list(argv)
    with tempfile.TemporaryDirectory(prefix="hwcc-bench-child-") as tmp:
        report, stdout_path = Path(tmp) / "usage.json", Path(tmp) / "stdout"
        with open(stdout_path, "w+", encoding="utf-8") as stdout:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _STARTER, str(report), *argv],
                cwd=cwd,
                env=env,
                stdout=stdout,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
            fired = threading.Event()
            timer = (
                threading.Timer(timeout, lambda: (fired.set(), proc.terminate()))
                if timeout
                else None
            )
            lines = []
            try:
                if timer:
                    timer.start()
                for line in proc.stderr:
                    lines.append((time.monotonic() - t0, line.rstrip("\n")))
                proc.wait()
            except BaseException:
                proc.terminate()
                proc.wait()
                raise
            finally:
                if timer:
                    timer.cancel()
                proc.stderr.close()
            wall = time.monotonic() - t0
            stdout.seek(0)
            text = stdout.read()
        try:
            usage = json.loads(report.read_text())
        except (OSError, ValueError):
            tail = "\n".join(line for _, line in lines[-5:])
            raise RuntimeError(
                f"could not run {argv[0]} (exit {proc.returncode}): {tail}"
            ) from None
    code = os.waitstatus_to_exitcode(usage["status"])
    # bytes on macOS, KiB elsewhere
    rss = usage["maxrss"] * (1 if sys.platform == "darwin" else 1024)
    return ChildRun(argv, code, wall, rss, usage["cpu_s"], text, lines, timed_out=fired.is_set())


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Fine-tune on one thread: on this shared 2-core machine two threads run several times
    slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
