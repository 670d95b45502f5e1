"""Killed, damaged or out of disk, a compile never leaves anything half-written.

A compile killed at any moment leaves its output folder absent or complete, and
``--resume`` ends it with the same result as an uninterrupted run (the run is
deterministic: the comparison is exact). A damaged checkpoint, a full disk or an output
path that cannot be written is an HwccError saying where and what to do.

The disk tests mount small tmpfs file systems, which needs root; they skip elsewhere.
"""

from __future__ import annotations

import hashlib
import json
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

import hwcc
from hwcc.cli.commands import main
from hwcc.errors import HwccError
from hwcc.report.artifact import Checkpoint, is_artifact, output_lock, write_artifact

QUICK = [
    "zoo:lenet300-digits",
    "--target",
    "eie",
    "--budget",
    "50%",
    "--data",
    "zoo:digits",
    "--seed",
    "5",
    "--max-iterations",
    "3",
    "--short-term-steps",
    "8",
    "--long-term-steps",
    "8",
]
QUICK_API = {
    "model": "zoo:lenet300-digits",
    "target": "eie",
    "budget": "50%",
    "data": "zoo:digits",
    "seed": 5,
    "max_iterations": 3,
    "short_term_steps": 8,
    "long_term_steps": 8,
}
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


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _summary(folder: Path) -> dict:
    return json.loads((folder / "hwcc.json").read_text())


def _state(out: Path) -> dict | None:
    path = Path(f"{out}.checkpoint") / "state.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _outcome(out: Path) -> str:
    """``absent`` or ``complete``; anything else fails."""
    if not out.exists():
        return "absent"
    assert is_artifact(out), f"{out} is half-written: {sorted(p.name for p in out.iterdir())}"
    _summary(out)
    hwcc.load(out / "model.onnx")
    return "complete"


def _leftovers(out: Path) -> list[str]:
    """Whatever of this run is beside ``out`` other than ``out`` itself."""
    return sorted(
        p.name
        for p in out.parent.iterdir()
        if p.name != out.name
        and (p.name.startswith(out.name + ".") or p.name.startswith(f".{out.name}."))
    )


def _assert_same_as(out: Path, ref: Path) -> None:
    """``out`` is complete, nothing of its run is left beside it, and it is ``ref``'s result
    exactly."""
    assert _outcome(out) == "complete" and _leftovers(out) == []
    a, b = _summary(out), _summary(ref)
    assert a["final"] == b["final"] and a["history"] == b["history"]
    assert _sha(out / "model.onnx") == _sha(ref / "model.onnx")


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


@pytest.fixture(scope="module")
def quick_ref(tmp_path_factory):
    """An uninterrupted QUICK run."""
    out = tmp_path_factory.mktemp("ref") / "ref"
    assert main(["compile", *QUICK, "-o", str(out)]) == 0
    return out


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


# ---------------------------------------------------------------------- damaged checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The checkpoint a QUICK run interrupted after its first iteration left."""
    out = tmp_path_factory.mktemp("ckpt") / "art"

    def stop(kind, info):
        if kind == "picked":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hwcc.compile(**QUICK_API, output=out, progress=stop)
    return Path(f"{out}.checkpoint")


def _edit(key: str, value=None, delete: bool = False):
    """An edit of state.json: ``key`` is a path such as ``state.limits``."""

    def edit(folder: Path) -> None:
        doc = json.loads((folder / "state.json").read_text())
        *parents, last = key.split(".")
        obj = doc
        for p in parents:
            obj = obj[p]
        if delete:
            del obj[last]
        else:
            obj[last] = value
        (folder / "state.json").write_text(json.dumps(doc))

    return edit


def _truncate(name: str):
    def edit(folder: Path) -> None:
        path = folder / name if name == "state.json" else next(folder.glob("graph-*.onnx"))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return edit


def _write(text: str):
    return lambda folder: (folder / "state.json").write_text(text)


def _remove_graph(folder: Path) -> None:
    next(folder.glob("graph-*.onnx")).unlink()


@pytest.mark.parametrize(
    "damage, why",
    [
        pytest.param(
            _truncate("state.json"),
            "cannot be read: (Unterminated|Expecting)",
            id="truncated state",
        ),
        pytest.param(_write(""), "cannot be read: Expecting value", id="empty state"),
        pytest.param(_write("[1, 2]"), "state.json is an array, not an object", id="a list"),
        pytest.param(
            _edit("graph_sha256", delete=True),
            "state.json has no 'graph_sha256'",
            id="no graph hash",
        ),
        pytest.param(
            _edit("state", "resume me"),
            "state.json: 'state' is a string, not an object",
            id="state a string",
        ),
        pytest.param(
            _edit("state.iteration", delete=True), "the state has no 'iteration'", id="no iteration"
        ),
        pytest.param(
            _edit("state.iteration", "2"),
            "the state: 'iteration' is a string, not a number",
            id="iteration a string",
        ),
        pytest.param(
            _edit("state.iteration", True),
            "the state: 'iteration' is a boolean, not a number",
            id="iteration a boolean",
        ),
        pytest.param(
            _edit("state.limits", [1]),
            "the state: 'limits' is an array, not an object",
            id="limits a list",
        ),
        pytest.param(
            _edit("state.current.energy_j", delete=True),
            "the state's 'current' has no 'energy_j'",
            id="a metric missing",
        ),
        pytest.param(
            _edit("state.limits.speed", 1.0), "'limits' name unknown metrics", id="an unknown limit"
        ),
        pytest.param(
            _edit("state.schedule.r0", None),
            "the state's schedule: 'r0' is null, not a number",
            id="schedule null",
        ),
        pytest.param(
            _edit("state.history", [3]),
            "'history' holds something other than objects",
            id="history of numbers",
        ),
        pytest.param(
            _edit("graph", "../art.onnx"),
            "names '../art.onnx', which is not a file in the checkpoint",
            id="graph outside",
        ),
        pytest.param(
            _remove_graph,
            "names 'graph-1-0.onnx', which is not a file in the checkpoint",
            id="graph missing",
        ),
        pytest.param(
            _truncate("graph"),
            "graph-1-0.onnx is not the graph that was saved \\(truncated or changed\\)",
            id="graph truncated",
        ),
    ],
)
def test_a_damaged_checkpoint_is_a_clear_error(checkpoint, tmp_path, damage, why):
    out = tmp_path / "art"
    shutil.copytree(checkpoint, f"{out}.checkpoint")
    damage(Path(f"{out}.checkpoint"))
    with pytest.raises(HwccError, match=why) as e:
        hwcc.compile(**QUICK_API, output=out, resume=True)
    assert f"checkpoint at {out}.checkpoint" in e.value.message and "remove" in e.value.hint
    assert not out.exists() and _leftovers(out) == [f"{out.name}.checkpoint"]


def test_the_cli_reports_a_damaged_checkpoint_without_a_traceback(checkpoint, tmp_path, capsys):
    out = tmp_path / "art"
    shutil.copytree(checkpoint, f"{out}.checkpoint")
    _write("[]")(Path(f"{out}.checkpoint"))
    assert main(["compile", *QUICK, "-o", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "state.json is an array" in err and "hint: remove" in err and "Traceback" not in err


def test_resuming_a_finished_run_says_it_is_complete(quick_ref):
    with pytest.raises(HwccError, match="already complete"):
        hwcc.compile(**QUICK_API, output=quick_ref, resume=True)


# ---------------------------------------------------------------------- disks that refuse
@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mount a tmpfs with the given options at a fresh folder; unmounted after the test."""
    mounted = []

    def mount(options: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], timeout=30)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` up to ``leave`` free bytes; the filler file."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_an_artifact_that_does_not_fit_is_an_error_and_leaves_nothing(mount_tmpfs):
    disk = mount_tmpfs("size=100k")
    graph = hwcc.load("zoo:lenet300-digits")  # 200 KB of weights: the disk fills up mid-write
    with pytest.raises(
        HwccError, match=f"cannot write the artifact {disk / 'art'}: the disk is full"
    ) as e:
        write_artifact(disk / "art", graph, {}, None)
    assert "free some space" in e.value.hint
    assert os.listdir(disk) == []


def test_a_lookup_table_that_cannot_be_saved_is_an_error_and_the_file_is_kept(mount_tmpfs):
    from hwcc.targets.cpu.table import KernelTable

    disk = mount_tmpfs("size=64k")
    path = disk / "t.json"
    table = KernelTable({"cpu": "test"}, lambda specs: [(1e-6, 2e-6)] * len(specs), path=path)
    gemm = {
        "op": "Gemm",
        "N": 1,
        "K": 8,
        "M": 8,
        "transA": 0,
        "transB": 1,
        "alpha": 1.0,
        "beta": 1.0,
        "bias": True,
        "b_const": True,
        "act": "",
        "act_params": [],
    }
    table.ensure([gemm])
    before = path.read_text()
    _fill(disk, 0)
    with pytest.raises(
        HwccError, match=f"cannot save lookup table {path}: No space left on device"
    ):
        table.ensure([{**gemm, "M": 16}])
    assert path.read_text() == before and sorted(os.listdir(disk)) == [
        "filler",
        "t.json",
        "t.json.lock",
    ]


def test_a_disk_that_fills_up_mid_compile_keeps_the_checkpoint_and_resume_finishes(
    mount_tmpfs, quick_ref
):
    """The disk fills up twice: before the checkpoint of iteration 2 and before the artifact.
    Each time the compile stops with a clear error, the last checkpoint whole; once there
    is room again, --resume finishes with the uninterrupted run's result."""
    disk = mount_tmpfs("size=2m")
    out = disk / "art"

    def fill_on(event: str):
        def progress(kind, info):
            if kind == event and not (disk / "filler").exists():
                _fill(disk, 8192)

        return progress

    with pytest.raises(
        HwccError, match=f"cannot write the checkpoint {out}.checkpoint: the disk is full"
    ):
        hwcc.compile(**QUICK_API, output=out, progress=fill_on("picked"))
    saved = _state(out)
    assert saved["state"]["iteration"] == 1 and sorted(os.listdir(f"{out}.checkpoint")) == [
        "graph-1-0.onnx",
        "state.json",
    ]
    assert sorted(os.listdir(disk)) == ["art.checkpoint", "filler"]
    (disk / "filler").unlink()

    with pytest.raises(HwccError, match=f"cannot write the artifact {out}: the disk is full"):
        hwcc.compile(**QUICK_API, output=out, resume=True, progress=fill_on("long_term"))
    assert sorted(os.listdir(disk)) == ["art.checkpoint", "filler"]
    (disk / "filler").unlink()

    hwcc.compile(**QUICK_API, output=out, resume=True)
    _assert_same_as(out, quick_ref)


def test_a_read_only_disk_is_a_clear_error(mount_tmpfs, capsys):
    disk = mount_tmpfs("size=1m,ro")
    with pytest.raises(
        HwccError, match=f"cannot write the lock file {disk / 'art.lock'}: Read-only file system"
    ) as e:
        hwcc.compile(**QUICK_API, output=disk / "art")
    assert e.value.hint == "give -o a folder you can write to"
    with pytest.raises(HwccError, match="Read-only file system"):
        write_artifact(disk / "art", hwcc.load("zoo:lenet300-digits"), {}, None)
    assert main(["compile", *QUICK, "-o", str(disk / "art")]) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "Traceback" not in err


def test_a_file_where_a_folder_should_be_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "art"
    with pytest.raises(
        HwccError, match=f"cannot write the lock file {out}.lock: a part of that path is a file"
    ):
        hwcc.compile(**QUICK_API, output=out)
    with pytest.raises(
        HwccError,
        match=f"cannot write the checkpoint {out}.checkpoint: a part of that path is a file",
    ):
        Checkpoint(f"{out}.checkpoint", {}).save(hwcc.load("zoo:lenet300-digits"), {"iteration": 0})
    assert main(["compile", *QUICK, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
