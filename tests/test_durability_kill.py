"""Killed, a compile never leaves anything half-written: a run killed in its search or while
writing its artifact leaves its output folder absent, and ``--resume`` ends it with the
same result as an uninterrupted run (the run is deterministic: the comparison is exact);
(slow) SIGKILL at ten seeded moments of a longer run. A killed writer's stale siblings are
removed, and an artifact it moved aside is put back, by the next writer.

Damaged checkpoints are in test_durability_checkpoint.py, disks that refuse in
test_durability_disk.py; the QUICK run and the checks in tests/durability_runs.py.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from durability_runs import QUICK
from durability_runs import assert_same_as as _assert_same_as
from durability_runs import leftovers as _leftovers
from durability_runs import outcome as _outcome
from durability_runs import state as _state
from durability_runs import summary as _summary

import hwcc
from hwcc.cli.commands import main
from hwcc.report.artifact import output_lock, write_artifact

# about 10 s on an idle 2-core machine: a search of ~8 iterations, then a long fine-tune
LONG = [
    "zoo:lenet300-digits",
    "--target",
    "eie",
    "--budget",
    "25%",
    "--data",
    "zoo:digits",
    "--seed",
    "5",
    "--max-iterations",
    "10",
    "--short-term-steps",
    "150",
    "--long-term-steps",
    "8000",
]
TIMEOUT_S = 600


def _cli(args: list[str], out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hwcc", "compile", *args, "-o", str(out), *extra]


def _finish(args: list[str], out: Path) -> str:
    """End a killed run as a user would; how: ``--resume`` where it left a checkpoint, a
    fresh run where it was killed before its first, nothing where it had finished."""
    if _state(out) is not None:
        assert main(["compile", *args, "-o", str(out), "--resume"]) == 0
        return "resumed"
    if out.exists():
        return "already complete"
    assert main(["compile", *args, "-o", str(out)]) == 0
    return "run again (killed before its first checkpoint)"


# ---------------------------------------------------------------------- killed
def test_a_run_killed_in_its_search_resumes_to_the_same_result(quick_ref, tmp_path):
    out = tmp_path / "art"
    proc = subprocess.Popen(_cli(QUICK, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while _state(out) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the first checkpoint is there: iteration 1 is under way
    finally:
        proc.kill()
        proc.wait()
    assert _outcome(out) == "absent"
    assert _finish(QUICK, out) == "resumed"
    _assert_same_as(out, quick_ref)


_KILLED_WRITING = """
import os, signal, sys
from hwcc.report import html as report
from hwcc.cli.commands import main

# model.onnx is written, the rest is not
report.write = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
main(sys.argv[1:])
"""


@pytest.mark.slow  # a compile killed and run again, in processes: 6 s
def test_a_run_killed_while_writing_its_artifact_resumes_and_leaves_no_temporary(
    quick_ref, tmp_path
):
    out = tmp_path / "art"
    argv = [sys.executable, "-c", _KILLED_WRITING, "compile", *QUICK, "-o", str(out)]
    assert (
        subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S).returncode == -signal.SIGKILL
    )
    assert _outcome(out) == "absent"
    assert [n for n in _leftovers(out) if n.startswith(".art.tmp-")]  # what the kill left
    assert _finish(QUICK, out) == "resumed"
    _assert_same_as(out, quick_ref)


@pytest.mark.slow
def test_sigkill_at_ten_random_moments_leaves_nothing_half_written(tmp_path, report_line):
    """Each seeded moment is a random point of a random stretch of the run: before its first
    progress line, between two of them (an iteration of the search), or after the last (the
    long fine-tune and the artifact). Drawn per stretch rather than per second of the
    reference run, the moments fall in every phase however fast this shared machine runs."""
    ref = tmp_path / "ref"
    stretches = _stretches(_cli(LONG, ref))
    rng = random.Random(20240611)
    lines = []
    for k in range(10):
        out = tmp_path / f"run{k}"
        stretch = rng.randrange(len(stretches))
        delay = rng.random() * stretches[stretch]
        phase = _kill_at(_cli(LONG, out), out, stretch, delay)
        seen = _outcome(out)
        how = _finish(LONG, out)
        _assert_same_as(out, ref)
        lines.append(
            f"  {delay:5.2f} s into stretch {stretch} ({phase}): OUT {seen}; {how}; "
            "identical result"
        )
    report_line(
        f"SIGKILL at 10 seeded moments of a {sum(stretches):.1f} s compile "
        f"({len(stretches)} stretches between progress lines):\n" + "\n".join(lines)
    )


def _stretches(cmd: list[str]) -> list[float]:
    """Run ``cmd`` to its end; the seconds before its first progress line, between each two,
    and after the last."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(TIMEOUT_S, proc.kill)
    watchdog.start()
    start, times = time.monotonic(), [0.0]
    try:
        times += [time.monotonic() - start for _ in proc.stderr]
        assert proc.wait() == 0
    finally:
        watchdog.cancel()
    times.append(time.monotonic() - start)
    return [b - a for a, b in zip(times, times[1:])]


def _kill_at(cmd: list[str], out: Path, stretch: int, delay: float) -> str:
    """Run ``cmd`` and SIGKILL it ``delay`` seconds after its ``stretch``-th progress line;
    the phase it was killed in."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(TIMEOUT_S, proc.kill)
    watchdog.start()
    try:
        said = [proc.stderr.readline() for _ in range(stretch)]
        time.sleep(delay)
        if proc.poll() is not None:
            return "it had finished"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        watchdog.cancel()
        proc.stderr.close()
    state = _state(out)
    if out.exists():
        return "after its artifact was written"
    if said and "long-term fine-tune" in said[-1]:
        return "the long fine-tune, legal form or artifact write"
    if state is not None:
        return f"the search, checkpointed at iteration {state['state']['iteration']}"
    return "before its first checkpoint"


# ---------------------------------------------------------------------- what a killed writer leaves
def test_stale_siblings_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    graph = hwcc.load("zoo:lenet300-digits")
    out = tmp_path / "art"
    write_artifact(out, graph, {"n": 1}, None)
    shutil.copytree(out, tmp_path / ".art.old-4242")
    (tmp_path / ".art.tmp-dead").mkdir()
    (tmp_path / ".art.tmp-dead" / "model.onnx").write_bytes(b"half a mod")
    write_artifact(out, graph, {"n": 2}, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"] and _summary(out)["n"] == 2


def test_an_artifact_moved_aside_by_a_killed_writer_is_put_back(tmp_path):
    """Killed between its two renames, a writer leaves OUT absent, the old artifact aside and
    the new one in its temporary folder: the next holder of the lock puts the old one back."""
    out = tmp_path / "art"
    write_artifact(out, hwcc.load("zoo:lenet300-digits"), {"n": 1}, None)
    os.rename(out, tmp_path / ".art.old-4242")
    (tmp_path / ".art.tmp-4242").mkdir()
    with output_lock(out):
        assert _summary(out)["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
