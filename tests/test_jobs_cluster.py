"""Tuning jobs on a local multi-node Ray cluster (Ray's ``cluster_utils.Cluster``) whose two
nodes offer one named device each: the issue's 2 models x 3 targets x 2 budgets, a worker
killed mid-job, and a driver interrupted and run again.

Slow (a few minutes on a 2-core machine: three Ray nodes' processes, and every job a real
compile at the fast settings of tests/compile_runs.py): run with ``-m slow``.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

import hwcc.jobs  # noqa: E402
from hwcc.jobs.results import status  # noqa: E402

pytestmark = pytest.mark.slow

FAST = textwrap.dedent(
    """\
    [defaults]
    data = "zoo:digits"
    [defaults.search]
    short_term_steps = 8
    long_term_steps = 8
    max_iterations = 4
    """
)


@pytest.fixture(scope="module")
def cluster():
    """A head node offering ``dev-a`` and a second node offering ``dev-b``, one CPU each."""
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"hwcc-device:dev-a": 1}},
    )
    c.add_node(num_cpus=1, resources={"hwcc-device:dev-b": 1})
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    nodes = {}
    for n in ray.nodes():
        for r in n["Resources"]:
            if r.startswith("hwcc-device:"):
                nodes[r.removeprefix("hwcc-device:")] = n["NodeID"]
    yield c, nodes
    ray.shutdown()
    c.shutdown()


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(FAST + text)
    return path


def _record(results: Path, job_id: str) -> dict:
    return json.loads((results / job_id / "hwcc.json").read_text())


def test_two_models_three_targets_two_budgets(cluster, tmp_path):
    _, nodes = cluster
    spec = _spec(
        tmp_path,
        textwrap.dedent(
            """\
            [devices]
            cpu = "dev-a"
            [matrix]
            models = ["zoo:lenet300-digits", "zoo:lenet5-digits"]
            targets = ["cpu", "eie", "eyeriss"]
            budgets = ["70%", "50%"]
            [[override]]
            model = "zoo:lenet5-digits"
            target = "cpu"
            device = "dev-b"
            """
        ),
    )
    results = tmp_path / "results"
    seen = []
    result = hwcc.jobs.run(spec, results, address=cluster[0].address, progress=seen.append)
    rows = {r["id"]: r for r in result.rows}
    assert len(rows) == 12
    assert all(r["status"] in ("done", "unmet") for r in rows.values()), rows
    cpu = []
    for job_id, r in rows.items():
        record = _record(results, job_id)
        assert (results / job_id / "model.onnx").is_file()
        assert (results / job_id / "report.html").is_file()
        # a task holds one CPU, and Ray runs its worker with one OpenMP thread
        assert record["job"]["omp_num_threads"] == os.environ.get("OMP_NUM_THREADS", "1")
        if r["target"] == "cpu":  # ran on the node that offers its device, as hwcc.json says
            assert record["job"]["node_id"] == nodes[r["device"]], job_id
            cpu.append((r["device"], record["job"]["started_at"], record["timing"]["wall_s"]))
    assert {d for d, _, _ in cpu} == {"dev-a", "dev-b"} and len(cpu) == 4
    for device in ("dev-a", "dev-b"):  # never two jobs on one device at once
        spans = sorted((s, s + w) for d, s, w in cpu if d == device)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    assert list((results / "tables").glob("dev-*/cpu-*.json")), "the devices' tables came back"
    summary = json.loads((results / "summary.json").read_text())
    assert [r["id"] for r in summary["jobs"]] == list(rows)
    csv_lines = (results / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 13
    page = (results / "index.html").read_text()
    assert all(f'href="{job_id}/report.html"' in page for job_id in rows)
    assert page.count("<svg") == 2  # one plot per model
    assert any(r["status"] == "running" for rows_now in seen for r in rows_now)
    assert result.exit_code == (0 if all(r["status"] == "done" for r in rows.values()) else 3)


def test_a_killed_worker_resumes_from_its_checkpoint(cluster, tmp_path):
    text = "".join(
        textwrap.dedent(
            f"""\
            [[job]]
            id = "{name}"
            model = "zoo:lenet300-digits"
            target = "eie"
            budget = "25%"
            [job.search]
            max_iterations = 8
            one_shot = false
            """
        )
        for name in ("killed", "whole")
    )
    results = tmp_path / "results"
    killed = []

    def kill_after_first_iteration(rows):
        r = next(r for r in rows if r["id"] == "killed")
        if not killed and r["status"] == "running" and (r.get("iteration") or 0) >= 1:
            os.kill(r["pid"], signal.SIGKILL)
            killed.append(r["iteration"])

    result = hwcc.jobs.run(
        _spec(tmp_path, text),
        results,
        address=cluster[0].address,
        progress=kill_after_first_iteration,
        poll_s=0.1,
    )
    assert killed, "the job ended before it could be killed"
    a, b = _record(results, "killed"), _record(results, "whole")
    assert a["job"]["resumed_from_iteration"] >= 1  # not from the start
    assert b["job"]["resumed_from_iteration"] is None
    assert a["timing"]["iterations"] == b["timing"]["iterations"]
    assert a["final"] == b["final"] and a["history"] == b["history"]
    assert {r["status"] for r in result.rows} <= {"done", "unmet"}


def test_a_driver_run_again_skips_finished_jobs(cluster, tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    jobs = (("first", "zoo:lenet300-digits", "eie"), ("second", "zoo:lenet300-digits", "eyeriss"))
    text = "".join(
        f'[[job]]\nid = "{name}"\nmodel = "{model}"\ntarget = "{target}"\nbudget = "50%"\n'
        for name, model, target in (*jobs, ("failing", "broken.onnx", "eie"))
    )
    spec = _spec(tmp_path, text)
    results = tmp_path / "results"

    def stop_when_one_ended(rows):
        if any(r["status"] in ("done", "unmet") for r in rows):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hwcc.jobs.run(spec, results, address=cluster[0].address, progress=stop_when_one_ended)
    ended = [r["id"] for r in status(results) if r["status"] in ("done", "unmet")]
    assert ended
    stamps = {j: (results / j / "hwcc.json").stat().st_mtime_ns for j in ended}
    again = hwcc.jobs.run(spec, results, address=cluster[0].address)
    assert set(again.skipped) == set(ended)
    assert {j: (results / j / "hwcc.json").stat().st_mtime_ns for j in ended} == stamps
    rows = {r["id"]: r for r in again.rows}
    assert rows["failing"]["status"] == "failed" and "broken.onnx" in rows["failing"]["error"]
    assert all(rows[j]["status"] in ("done", "unmet") for j in ("first", "second"))
    assert again.exit_code == 3  # one job failed; the others went on
