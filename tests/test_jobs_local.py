"""``hwcc jobs run`` as a user types it, with no address: hwcc starts Ray on this machine
(offering the cpu device the file names), and ``hwcc jobs status`` reads what it left.

Slow (Ray's start and two compiles in a subprocess, twice): run with ``-m slow``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

JOBS = """\
[defaults]
data = "zoo:digits"
[defaults.search]
short_term_steps = 8
long_term_steps = 8
max_iterations = 4

[matrix]
models = ["zoo:lenet300-digits"]
targets = ["cpu", "eyeriss"]
budgets = ["70%"]
"""


def _hwcc(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hwcc", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_jobs_run_starts_ray_here_and_a_rerun_skips_what_is_done(tmp_path):
    (tmp_path / "jobs.toml").write_text(JOBS)
    first = _hwcc("jobs", "run", "jobs.toml", "-o", "results", cwd=tmp_path)
    assert first.returncode in (0, 3), first.stderr
    ids = ["lenet300-digits.cpu.70pct", "lenet300-digits.eyeriss.70pct"]
    log = [line for line in first.stderr.splitlines() if line.startswith("hwcc jobs: ")]
    for job_id in ids:  # a line when each starts and when it ends, no terminal codes
        assert any(line.startswith(f"hwcc jobs: {job_id}  running") for line in log), log
        assert any(
            f"hwcc jobs: {job_id}  done" in line or f"{job_id}  unmet" in line for line in log
        )
        assert (tmp_path / "results" / job_id / "hwcc.json").is_file()
    assert "\x1b" not in first.stderr and "jobs ended" in first.stdout
    assert "0 failed" in first.stdout  # the cpu job found its device on the local instance
    status = _hwcc("jobs", "status", "results", cwd=tmp_path)
    assert status.returncode == 0 and "2 jobs:" in status.stdout
    assert all(job_id in status.stdout for job_id in ids)
    again = _hwcc("jobs", "run", "jobs.toml", "-o", "results", cwd=tmp_path)
    assert again.returncode == first.returncode
    assert "2 jobs were already finished" in again.stdout
    assert (tmp_path / "results" / "tables" / "cpu").is_dir()  # the device's table came back
