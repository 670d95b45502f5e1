"""Concurrent use never corrupts anything: one lookup table saved by several processes at
once, one output folder that two compiles are told to write.

Writers are forked processes started together behind a barrier; every wait is bounded,
and a process still running at its deadline is killed and fails the test.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime as ort
import pytest

import hwcc
from hwcc.errors import HwccError
from hwcc.report.artifact import is_artifact, output_lock, write_artifact
from hwcc.targets.cpu.table import FORMAT, KernelTable, spec_key

FP = {
    "cpu": "test cpu",
    "cores": 2,
    "onnxruntime": ort.__version__,
    "threads": 1,
    "nchwc_block": 16,
    "l2_bytes": 1 << 20,
    "l3_bytes": 32 << 20,
    "protocol": 0,
}
WRITERS, RUNS, SPECS = 5, 10, 12
DEADLINE_S = 60
FORK = multiprocessing.get_context("fork")


def _gemm(k: int, m: int) -> dict:
    return {
        "op": "Gemm",
        "N": 1,
        "K": k,
        "M": m,
        "transA": 0,
        "transB": 1,
        "alpha": 1.0,
        "beta": 1.0,
        "bias": True,
        "b_const": True,
        "act": "",
        "act_params": [],
    }


def _writer_specs(w: int) -> list[dict]:
    """Writer ``w``'s own specs: on the channel grid, so each is measured as it is."""
    return [_gemm(8 * (w + 1), 8 * (j + 1)) for j in range(SPECS)]


def _fake_measure(specs):
    time.sleep(0.001)  # long enough for the writers' saves to interleave
    return [(1e-6 * s["K"], 2e-6 * s["M"]) for s in specs]


def _write_table(path: Path, w: int, barrier) -> None:
    """A writer process: open the table, wait for the others, measure its specs one save each."""
    table = KernelTable(FP, _fake_measure, path=path)
    barrier.wait(DEADLINE_S)
    table.ensure(_writer_specs(w), batch=1)


def _run_together(target, args_of, n: int) -> list[int]:
    """Run ``target(*args_of(i), barrier)`` in ``n`` forked processes started together;
    their exit codes (a process past the deadline is killed)."""
    barrier = FORK.Barrier(n)
    procs = [FORK.Process(target=target, args=(*args_of(i), barrier)) for i in range(n)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + DEADLINE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


def _table_is_whole(path: Path) -> bool:
    """Whether ``path`` is a valid table holding every spec every writer measured."""
    doc = json.loads(path.read_text())
    want = {spec_key(s) for w in range(WRITERS) for s in _writer_specs(w)}
    return doc["format"] == FORMAT and doc["fingerprint"] == FP and set(doc["entries"]) == want


# ---------------------------------------------------------------------- the lookup table
def test_concurrent_writers_end_with_the_union_of_their_entries(tmp_path, report_line):
    whole = 0
    for run in range(RUNS):
        path = tmp_path / f"t{run}.json"
        codes = _run_together(_write_table, lambda w: (path, w), WRITERS)
        assert codes == [0] * WRITERS, f"run {run}: writer exit codes {codes}"
        whole += _table_is_whole(path)
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], (
            "a temporary file was left"
        )
    report_line(
        f"lookup table, {WRITERS} concurrent writers x {RUNS} runs: {whole}/{RUNS} valid tables "
        f"holding all {WRITERS * SPECS} entries"
    )
    assert whole == RUNS


def test_writers_that_find_a_corrupt_table_set_it_aside_once(tmp_path):
    """Five processes open a truncated table at once: it is set aside exactly once (never
    the valid table another writer has just saved) and the rebuilt table holds everything."""
    path = tmp_path / "t.json"
    path.write_text('{"format": "hwcc-cpu-table/1", "entries": {"a')
    codes = _run_together(_write_table, lambda w: (path, w), WRITERS)
    assert codes == [0] * WRITERS
    assert _table_is_whole(path)
    aside = list(tmp_path.glob("t.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text().endswith('{"a')


@pytest.mark.parametrize(
    "content, why",
    [
        ('{"format": "hwcc-cpu-table/1", "fingerprint": {"cpu": "test', "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (None, "its entries"),  # a whole JSON object whose entries are not entries
    ],
)
def test_a_corrupt_table_is_set_aside_with_a_warning_and_rebuilt(tmp_path, content, why):
    path = tmp_path / "t.json"
    if content is None:
        content = json.dumps(
            {"format": FORMAT, "fingerprint": FP, "extra": {}, "entries": {"k": 3}}
        )
    path.write_text(content)
    with pytest.warns(
        UserWarning, match=f"lookup table {path} is corrupt \\({why}.*set aside as t.json.corrupt-"
    ):
        table = KernelTable(FP, _fake_measure, path=path)
    assert table.entries == {}
    table.ensure([_gemm(8, 8)])
    assert table.lookup(_gemm(8, 8)) == pytest.approx((8e-6, 16e-6))
    doc = json.loads(path.read_text())
    assert list(doc["entries"]) == [spec_key(_gemm(8, 8))]
    [aside] = tmp_path.glob("t.json.corrupt-*")
    assert aside.read_text() == content


def test_a_table_of_another_device_is_still_an_error(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": FORMAT, "fingerprint": {"cpu": "other"}, "entries": {}}))
    with pytest.raises(HwccError, match="another device"):
        KernelTable(FP, _fake_measure, path=path)
    assert path.exists() and not list(tmp_path.glob("*.corrupt-*"))


# ---------------------------------------------------------------------- one output folder
def _hold(folder: Path, barrier) -> None:
    """Hold the folder's lock until the parent has tried to take it."""
    with output_lock(folder):
        barrier.wait(DEADLINE_S)
        barrier.wait(DEADLINE_S)


def test_the_output_lock_names_its_holder_and_is_removed_after(tmp_path):
    out = tmp_path / "art"
    barrier = FORK.Barrier(2)
    holder = FORK.Process(target=_hold, args=(out, barrier))
    holder.start()
    try:
        barrier.wait(DEADLINE_S)
        with pytest.raises(
            HwccError, match=f"another hwcc compile is writing {out} \\(pid {holder.pid}\\)"
        ):
            with output_lock(out):
                pass
        barrier.wait(DEADLINE_S)
    finally:
        holder.join(DEADLINE_S)
        holder.kill()
    with output_lock(out):  # free again; re-entrant in one thread
        with output_lock(out):
            assert Path(f"{out}.lock").read_text() == f"{os.getpid()}\n"
    assert list(tmp_path.iterdir()) == []


def test_a_killed_holder_never_blocks_the_next_writer(tmp_path):
    out = tmp_path / "art"
    code = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys\nfrom hwcc.report.artifact import output_lock\n"
            f"with output_lock({str(out)!r}):\n    os._exit(9)",
        ],
        timeout=DEADLINE_S,
    ).returncode
    assert code == 9 and Path(f"{out}.lock").exists()  # left behind, but no longer locked
    with output_lock(out):
        pass
    assert list(tmp_path.iterdir()) == []


def _write_as(folder: Path, graph, w: int, barrier) -> None:
    """A writer process: exit 0 if its artifact went in, 3 if another writer held the folder."""
    barrier.wait(DEADLINE_S)
    try:
        write_artifact(folder, graph, {"writer": w}, None)
    except HwccError as e:
        sys.exit(3 if "another hwcc compile is writing" in str(e) else 1)


def test_racing_artifact_writers_leave_one_whole_artifact(tmp_path):
    graph = hwcc.load("zoo:lenet300-digits")
    for run in range(5):
        out = tmp_path / f"art{run}"
        codes = _run_together(_write_as, lambda w: (out, graph, w), 4)
        assert set(codes) <= {0, 3} and 0 in codes, codes
        winner = json.loads((out / "hwcc.json").read_text())["writer"]
        assert codes[winner] == 0 and is_artifact(out)
        assert hwcc.load(out / "model.onnx").nodes
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f".art{run}")) == []
        assert not Path(f"{out}.lock").exists()


@pytest.mark.slow  # two compiles in two processes: 6 to 8 s
def test_two_compiles_told_to_write_one_folder_one_wins_whole(tmp_path):
    out = tmp_path / "art"
    cmd = [
        sys.executable,
        "-m",
        "hwcc",
        "compile",
        "zoo:lenet300-digits",
        "--target",
        "eie",
        "--budget",
        "50%",
        "--data",
        "zoo:digits",
        "-o",
        str(out),
        "--max-iterations",
        "2",
        "--short-term-steps",
        "4",
        "--long-term-steps",
        "100",
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=300)
        finally:
            p.kill()
        results.append((p.returncode, err))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    winner_pid = next(p.pid for p, (code, _) in zip(procs, results) if code == 0)
    assert (
        f"another hwcc compile is writing {out} (pid {winner_pid})" in loser
        and "Traceback" not in loser
    )
    assert is_artifact(out) and hwcc.load(out / "model.onnx").nodes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
