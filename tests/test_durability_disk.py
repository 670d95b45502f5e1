"""Out of disk, or an output path that cannot be written, is an HwccError saying where and
what to do, and nothing is left half-written: an artifact that does not fit, a lookup
table that cannot be saved, a disk that fills up mid-compile (the checkpoint kept, resume
finishes), a read-only disk, and a file where a folder should be.

The disk tests mount small tmpfs file systems, which needs root; they skip elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from durability_runs import QUICK, QUICK_API
from durability_runs import assert_same_as as _assert_same_as
from durability_runs import state as _state

import hwcc
from hwcc.cli.commands import main
from hwcc.errors import HwccError
from hwcc.report.artifact import Checkpoint, write_artifact


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
