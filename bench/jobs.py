"""Tuning jobs on Ray: 8 modelled-target jobs side by side against one after another.

Three runs of the same 8 jobs (lenet300-digits and lenet5-digits, on EIE and Eyeriss, to
70 % and 50 % of their primary metric, with the digits data and short searches), each in a
process of its own, timed from its start to its end, so that each pays for its imports
and, on Ray, for starting Ray:

1. **direct**: ``hwcc.compile`` eight times in one process, one after another;
2. **Ray, 1 CPU**: ``hwcc.jobs.run`` on a Ray instance started with one CPU, so the jobs
   still run one after another: the difference from (1), per job, is the engine's
   overhead (Ray's start, a task per job, the progress board, the results folder);
3. **Ray, every CPU**: the same on a Ray instance with every CPU of the machine.

The issue asks for (3) at least 1.6x faster than (1) on a 2-core machine, and an overhead
under 2 s per job. The machine is shared: the load average at the start and end is
reported beside the times.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from bench._common import ROOT, md_table, run_child

TITLE = "Tuning jobs on Ray"
ORDER = 80

MODELS = ("lenet300-digits", "lenet5-digits")
TARGETS = ("eie", "eyeriss")
BUDGETS = ("70%", "50%")
# A job of the default search (30 and 200 fine-tune steps): what a tuning job runs, so
# that the engine's overhead is weighed against real work, not against 1-second jobs.
FULL = {"max_iterations": 4}
QUICK = {"short_term_steps": 2, "long_term_steps": 2, "max_iterations": 1}

_DIRECT = """
import sys, json, hwcc
jobs, out = json.loads(sys.argv[1]), sys.argv[2]
for j in jobs:
    hwcc.compile(j["model"], j["target"], j["budget"], data="zoo:digits",
                 output=f"{out}/{j['id']}", **j["search"])
"""
_ON_RAY = """
import sys, ray, hwcc.jobs
ray.init(num_cpus=int(sys.argv[3]), log_to_driver=False, include_dashboard=False)
result = hwcc.jobs.run(sys.argv[1], sys.argv[2])
sys.exit(0 if all(r["status"] in ("done", "unmet") for r in result.rows) else 1)
"""


def _jobs(search: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"id": f"{m}.{t}.{b[:-1]}", "model": f"zoo:{m}", "target": t, "budget": b, "search": search}
        for m in MODELS
        for t in TARGETS
        for b in BUDGETS
    ]


def _job_file(jobs: list[dict[str, Any]]) -> str:
    search = "\n".join(f"{k} = {v}" for k, v in jobs[0]["search"].items())
    head = f'[defaults]\ndata = "zoo:digits"\n[defaults.search]\n{search}\n'
    return head + "".join(
        textwrap.dedent(
            f"""\
            [[job]]
            id = "{j["id"]}"
            model = "{j["model"]}"
            target = "{j["target"]}"
            budget = "{j["budget"]}"
            """
        )
        for j in jobs
    )


def _timed(code: str, *args: str) -> float:
    r = run_child([sys.executable, "-c", code, *args], cwd=ROOT, timeout=1800)
    if r.returncode != 0:
        tail = "\n".join(line for _, line in r.stderr[-30:])
        raise RuntimeError(f"a bench run failed ({r.returncode}): {tail}")
    return r.wall_s


def run(quick: bool, out: Path) -> dict[str, Any]:
    jobs = _jobs(QUICK if quick else FULL)
    cpus = os.cpu_count() or 1
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hwcc-bench-jobs-") as tmp:
        (Path(tmp) / "jobs.toml").write_text(_job_file(jobs))
        direct = _timed(_DIRECT, json.dumps(jobs), f"{tmp}/direct")
        one = _timed(_ON_RAY, f"{tmp}/jobs.toml", f"{tmp}/ray1", "1")
        every = _timed(_ON_RAY, f"{tmp}/jobs.toml", f"{tmp}/ray{cpus}", str(cpus))
    load1 = os.getloadavg()[0]
    speedup, overhead = direct / every, (one - direct) / len(jobs)
    rows = [
        ["direct: hwcc.compile, one after another", f"{direct:.1f} s", "1.00x"],
        ["hwcc.jobs.run, Ray with 1 CPU", f"{one:.1f} s", f"{direct / one:.2f}x"],
        [f"hwcc.jobs.run, Ray with {cpus} CPUs", f"{every:.1f} s", f"{speedup:.2f}x"],
    ]
    verdict = (
        f"Side by side on {cpus} CPUs the jobs ran **{speedup:.2f}x** faster than one after "
        f"another (the issue asks for 1.6x on 2 cores: {'met' if speedup >= 1.6 else 'not met'}); "
        f"the engine's overhead was **{overhead:.2f} s per job** (asked: under 2 s: "
        f"{'met' if overhead < 2 else 'not met'}). Load average {load0:.2f} at the start, "
        f"{load1:.2f} at the end."
    )
    return {
        "title": TITLE,
        "what": f"{len(jobs)} jobs: {', '.join(MODELS)} on {', '.join(TARGETS)} to "
        f"{' and '.join(BUDGETS)}, data zoo:digits, search {jobs[0]['search']}; each run "
        "in a process of its own, timed from start to end (imports and Ray's start included).",
        "markdown": md_table(["run", "wall time", "speed-up"], rows, "lrr") + "\n\n" + verdict,
        "data": {
            "jobs": len(jobs),
            "cpus": cpus,
            "direct_s": direct,
            "ray_1cpu_s": one,
            "ray_all_s": every,
            "speedup": speedup,
            "overhead_per_job_s": overhead,
            "load_average": [load0, load1],
        },
    }


if __name__ == "__main__":
    result = run("--quick" in sys.argv, Path(tempfile.mkdtemp()))
    print(result["markdown"])
