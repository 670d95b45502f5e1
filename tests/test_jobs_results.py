"""What a run of jobs leaves and shows, without Ray: a job run where the driver's disk is not
seen (the artifact sent back and written whole), the summary files and page, the status of
a folder whose driver died, and the progress on a terminal and in a log."""

from __future__ import annotations

import csv
import io
import json

import pytest

from hwcc.jobs.results import status, write_summary
from hwcc.jobs.spec import Job
from hwcc.jobs.view import JobsView, line_of
from hwcc.jobs.worker import TOKEN_FILE, run_job, unpack

FAST = {"short_term_steps": 8, "long_term_steps": 8, "max_iterations": 4}
JOB = Job("lenet300.eie", "zoo:lenet300-digits", "eie", ("50%",), data="zoo:digits", options=FAST)


@pytest.fixture(scope="module")
def remote_answer(tmp_path_factory):
    """A job run by a worker that does not see the results folder (another token)."""
    results = tmp_path_factory.mktemp("results")
    (results / TOKEN_FILE).write_text("the-driver's\n")
    scratch = tmp_path_factory.mktemp("cache")
    posted = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(scratch))
        answer = run_job(JOB, str(results), "another", {}, {"node_id": "n1"}, posted.append)
    return results, scratch, answer, posted


def test_a_worker_that_cannot_see_the_folder_sends_the_artifact_back(remote_answer):
    results, scratch, answer, posted = remote_answer
    assert answer["status"] == "done", answer
    assert not (results / JOB.id).exists()  # nothing written behind the driver's back
    assert {"model.onnx", "hwcc.json", "report.html"} <= set(answer["files"])
    assert not list(scratch.glob("hwcc/jobs/*/*"))  # the worker's copy is gone
    unpack(answer["files"], results / JOB.id)
    record = json.loads((results / JOB.id / "hwcc.json").read_text())
    assert record["job"]["node_id"] == "n1" and record["job"]["resumed_from_iteration"] is None
    assert record["job"]["spec"]["id"] == JOB.id
    assert 0 < record["job"]["cpu_s"] and "omp_num_threads" in record["job"]
    assert posted[0]["status"] == "running" and any("iteration" in p for p in posted)


def test_unpack_refuses_a_path_out_of_the_artifact(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        unpack({"../evil": b"x"}, tmp_path / "a")
    assert not (tmp_path / "a").exists() and not (tmp_path / "evil").exists()


def _rows():
    done = {
        "id": "a",
        "model": "zoo:m",
        "target": "eie",
        "device": None,
        "budgets": ["50%"],
        "status": "done",
        "node_id": "abcdef0123",
        "wall_s": 10.0,
        "budget_results": [{"text": "50%", "metric": "latency_s", "limit": 2e-6, "met": True}],
        "original": {"latency_s": 4e-6, "accuracy": 0.98},
        "final": {"latency_s": 1.5e-6, "accuracy": 0.95},
        "report": "a/report.html",
    }
    running = {
        "id": "b<script>",
        "model": "zoo:m",
        "target": "cpu",
        "device": "dev-a",
        "budgets": ["5ms"],
        "status": "running",
        "node_id": "1234567890",
        "iteration": 2,
        "current": {"latency_s": 0.006},
        "limits": {"latency_s": 0.005},
    }
    failed = {
        "id": "c",
        "model": "x.onnx",
        "target": "eie",
        "device": None,
        "budgets": ["1ms"],
        "status": "failed",
        "error": "cannot read x.onnx",
    }
    return [done, running, failed]


def test_summary_files_and_page(tmp_path):
    write_summary(tmp_path, _rows(), {"source": "jobs.toml", "updated": "now"})
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["counts"]["done"] == 1 and doc["counts"]["failed"] == 1
    table = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert [r["id"] for r in table] == ["a", "b<script>", "c"]
    assert (
        float(table[0]["final_latency_s"]) == 1.5e-6 and table[2]["error"] == "cannot read x.onnx"
    )
    page = (tmp_path / "index.html").read_text()
    assert 'href="a/report.html"' in page and "<script>" not in page
    assert page.count("<svg") == 1 and page.count("<circle") == 1  # one finished job, one point


def test_status_says_which_jobs_a_dead_driver_left(tmp_path):
    rows = _rows()
    write_summary(tmp_path, rows, {"driver_pid": 2**22 + 12345, "driver_host": _host()})
    (tmp_path / "b<script>.checkpoint").mkdir()
    (tmp_path / "b<script>.checkpoint" / "state.json").write_text(
        json.dumps({"state": {"iteration": 3}})
    )
    now = {r["id"]: r for r in status(tmp_path)}
    assert now["b<script>"]["status"] == "interrupted" and now["b<script>"]["iteration"] == 3
    assert now["a"]["status"] == "done" and now["c"]["status"] == "failed"


def test_progress_on_a_terminal_and_in_a_log():
    rows = _rows()
    tty = io.StringIO()
    view = JobsView(tty, tty=True)
    view.update(rows)
    view.update(rows)
    lines = tty.getvalue().split("\x1b[3F")  # the second draw starts at the first line again
    assert len(lines) == 2 and lines[1].count("\n") == 3  # three jobs and the totals
    assert (
        "iteration 2" in lines[1]
        and "6 ms/5 ms" in lines[1]
        and "dev-a on node 12345678" in lines[1]
    )
    assert "1/3 jobs ended" not in view.totals(rows) and "2/3 jobs ended" in view.totals(rows)
    assert "left" in view.totals(rows)
    log = io.StringIO()
    quiet = JobsView(log, tty=False)
    quiet.update(rows)
    quiet.update(rows)  # nothing new: nothing written
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert (
        text.count("hwcc jobs: a  done") == 1 and text.count("hwcc jobs: b<script>  running") == 1
    )
    assert "cannot read x.onnx" in line_of(rows[2])


def _host():
    import socket

    return socket.gethostname()
