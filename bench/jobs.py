"""Tuning jobs on Ray: 8 modelled-target jobs side by side against one after another.

The same 8 jobs (two digits models on EIE and Eyeriss, each to two budgets of its primary
metric, with the default search: 30 fine-tune steps a proposal, six epochs of the digits
at the end), run in a process of its own each time, timed from the process's start to its
end:

1. **direct**: ``hwcc.compile`` eight times in one process, one after another, with
   torch's own thread count (two on this machine: what ``hwcc compile`` runs with);
2. **direct, 1 thread**: the same with ``OMP_NUM_THREADS=1`` (torch and numpy's BLAS on
   one thread each). The faster of (1) and (2) is the baseline, so no speed-up below
   comes from a baseline slowed by its own threads (two threads spin against a busy
   neighbour's: under load they can be several times slower). (2) runs first, and (1)
   is stopped once it has taken longer, since it can no longer be the baseline;
3. **Ray**: ``hwcc.jobs.run`` on a Ray instance with every CPU of the machine; each job
   is a task on one CPU, whose worker Ray runs with ``OMP_NUM_THREADS=1``.

Ray's start (``ray.init``) and stop are timed apart from the jobs, so the speed-up is
given with them and without them. The engine's overhead per job is read from the run
itself: each job's record (``hwcc.json``, ``job``) says when its compile started, in which
process, and how long it took, so the time each CPU slot spent not compiling until its
last job ended (the workers' first imports, handing out tasks, the answers and the
results folder) and the driver's time after the last job, shared among the jobs, is the
engine's; Ray's start and stop are then added, shared the same way.

The issue asks for (3) at least 1.6x faster than the baseline on a 2-core machine, and an
overhead under 2 s per job. The machine is shared: the load average before each run and
at the end is reported beside the times.
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

MODELS = ("mobilenet-digits", "resnet-digits")
TARGETS = ("eie", "eyeriss")
BUDGETS = ("50%", "35%")
FULL: dict[str, int] = {}  # the default search: jobs of tens of seconds, as tuning jobs are
QUICK_MODELS = ("lenet300-digits", "lenet5-digits")
QUICK = {"short_term_steps": 2, "long_term_steps": 2, "max_iterations": 1}

_DIRECT = """
import json, sys, time
t0 = time.monotonic()
import hwcc, torch
jobs, out, walls = json.loads(sys.argv[1]), sys.argv[2], {}
imported = time.monotonic() - t0
for j in jobs:
    t = time.monotonic()
    hwcc.compile(j["model"], j["target"], j["budget"], data="zoo:digits",
                 output=f"{out}/{j['id']}", **j["search"])
    walls[j["id"]] = time.monotonic() - t
print(json.dumps({"import_s": imported, "threads": torch.get_num_threads(), "walls": walls}))
"""
_ON_RAY = """
import json, sys, time
from pathlib import Path
t0 = time.monotonic()
import ray, hwcc.jobs
t1 = time.monotonic()
ray.init(num_cpus=int(sys.argv[3]), log_to_driver=False, include_dashboard=False)
t2, at = time.monotonic(), time.time()
result = hwcc.jobs.run(sys.argv[1], sys.argv[2])
t3 = time.monotonic()
ray.shutdown()
t4 = time.monotonic()
spans = {}
for r in result.rows:
    doc = json.loads(Path(sys.argv[2], r["id"], "hwcc.json").read_text())
    job = doc["job"]
    spans[r["id"]] = {"pid": job["pid"], "start": job["started_at"] - at,
                      "wall": doc["timing"]["wall_s"], "cpu": job.get("cpu_s"),
                      "threads": job.get("omp_num_threads"), "status": r["status"]}
print(json.dumps({"import_s": t1 - t0, "ray_start_s": t2 - t1, "jobs_s": t3 - t2,
                  "ray_stop_s": t4 - t3, "spans": spans}))
ok = all(r["status"] in ("done", "unmet") for r in result.rows)
sys.exit(0 if ok else 1)
"""


def _jobs(models: tuple[str, ...], search: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"id": f"{m}.{t}.{b[:-1]}", "model": f"zoo:{m}", "target": t, "budget": b, "search": search}
        for m in models
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


def _child(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 1800
) -> dict[str, Any]:
    """Run ``code`` in a process of its own: its wall and CPU time and what it printed;
    ``stopped`` when it ran past ``timeout`` (then its wall time is a lower bound)."""
    load = os.getloadavg()[0]
    r = run_child([sys.executable, "-c", code, *args], cwd=ROOT, env=env, timeout=timeout)
    if r.timed_out:
        return {"wall_s": r.wall_s, "cpu_s": r.cpu_s, "load": load, "stopped": True}
    if r.returncode != 0:
        tail = "\n".join(line for _, line in r.stderr[-30:])
        raise RuntimeError(f"a bench run failed ({r.returncode}): {tail}")
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    return {"wall_s": r.wall_s, "cpu_s": r.cpu_s, "load": load, "stopped": False, **printed}


def slots(spans: dict[str, dict[str, Any]], cpus: int, jobs_s: float) -> dict[str, float]:
    """How the CPU slots were used: the engine's time per job and how many jobs ran at once.

    Each job is put on the slot that has been free the longest when it starts (its
    process's slot, in a run where no worker was replaced). A slot's time from the run's
    start, or its previous job's end, to its next job's start is the engine's, as is the
    time from the last job's end to the run's end; a slot with no job left is idle, not
    overhead.
    """
    free = [0.0] * cpus
    gaps = 0.0
    for s in sorted(spans.values(), key=lambda s: s["start"]):
        i = min(range(cpus), key=lambda k: free[k])
        gaps += max(0.0, s["start"] - free[i])
        free[i] = s["start"] + s["wall"]
    ends = [s["start"] + s["wall"] for s in spans.values()]
    gaps += max(0.0, jobs_s - max(ends))
    edges = sorted([(s["start"], 1) for s in spans.values()] + [(e, -1) for e in ends])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return {"engine_s_per_job": gaps / len(spans), "most_at_once": most}


def run(quick: bool, out: Path) -> dict[str, Any]:
    jobs = _jobs(QUICK_MODELS, QUICK) if quick else _jobs(MODELS, FULL)
    cpus = os.cpu_count() or 1
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="hwcc-bench-jobs-") as tmp:
        (Path(tmp) / "jobs.toml").write_text(_job_file(jobs))
        single = _child(_DIRECT, json.dumps(jobs), f"{tmp}/single", env=one_thread)
        # past the 1-thread run's time it cannot be the baseline: stopped there
        limit = single["wall_s"] * 1.05 + 5
        direct = _child(_DIRECT, json.dumps(jobs), f"{tmp}/direct", timeout=limit)
        ray = _child(_ON_RAY, f"{tmp}/jobs.toml", f"{tmp}/ray", str(cpus))
    load_end = os.getloadavg()[0]
    return _result(jobs, cpus, direct, single, ray, load_end)


def _result(jobs, cpus, direct, single, ray, load_end) -> dict[str, Any]:
    n = len(jobs)
    base = min(direct["wall_s"], single["wall_s"])
    start_stop = ray["ray_start_s"] + ray["ray_stop_s"]
    without = ray["wall_s"] - start_stop
    used = slots(ray["spans"], cpus, ray["jobs_s"])
    engine, engine_all = used["engine_s_per_job"], used["engine_s_per_job"] + start_stop / n
    speedup, speedup_jobs = base / ray["wall_s"], base / without
    spans = ray["spans"].values()
    slower = sum(s["wall"] for s in spans) / sum(single["walls"].values())
    share = sum(s["cpu"] or 0 for s in spans) / sum(s["wall"] for s in spans)
    threads = "/".join(sorted({str(s["threads"]) for s in spans}))

    rows = [
        [
            "direct: hwcc.compile, one after another",
            direct.get("threads", "torch's own"),
            ("stopped at " if direct["stopped"] else "") + _s(direct["wall_s"]),
            _s(direct["cpu_s"]),
            f"{direct['load']:.2f}",
            ("< " if direct["stopped"] else "") + f"{base / direct['wall_s']:.2f}x",
        ],
        [
            "direct, OMP_NUM_THREADS=1",
            single["threads"],
            _s(single["wall_s"]),
            _s(single["cpu_s"]),
            f"{single['load']:.2f}",
            f"{base / single['wall_s']:.2f}x",
        ],
        [
            f"hwcc.jobs.run, Ray with {cpus} CPUs",
            f"{threads} per job",
            _s(ray["wall_s"]),
            "",
            f"{ray['load']:.2f}",
            f"**{speedup:.2f}x**",
        ],
        [
            f"the same without Ray's start ({_s(ray['ray_start_s'])}) and stop "
            f"({_s(ray['ray_stop_s'])})",
            "",
            _s(without),
            "",
            "",
            f"**{speedup_jobs:.2f}x**",
        ],
    ]
    table = md_table(
        ["run", "torch threads", "wall time", "CPU time", "load before", "speed-up"], rows, "lr"
    )
    verdict = (
        f"Against the faster one-after-another run ({base:.1f} s), the jobs on Ray with "
        f"{cpus} CPUs ran **{speedup:.2f}x** faster counting Ray's start and stop, and "
        f"**{speedup_jobs:.2f}x** without them (the issue asks for 1.6x on 2 cores: "
        f"{_met(speedup >= 1.6)} with them, {_met(speedup_jobs >= 1.6)} without). At most "
        f"{used['most_at_once']} jobs ran at once; side by side a job's compile took "
        f"{slower:.2f}x as long as alone on one thread, with {share:.2f} of a core on "
        f"average (its CPU time over its wall time; alone, one after another: "
        f"{single['cpu_s'] / single['wall_s']:.2f}). The engine's overhead was "
        f"**{engine:.2f} s per job**, {engine_all:.2f} s with Ray's start and stop shared "
        f"among the {n} jobs (asked: under 2 s: {_met(engine_all < 2)}). Load average "
        f"{single['load']:.2f} at the start, {load_end:.2f} at the end (other work runs on "
        "this machine at the same time)."
    )
    return {
        "title": TITLE,
        "what": f"{n} jobs: {', '.join(sorted({j['model'][4:] for j in jobs}))} on "
        f"{', '.join(TARGETS)} to {' and '.join(BUDGETS)}, data zoo:digits, search "
        f"{jobs[0]['search'] or 'the default'}; each run in a process of its own, timed from "
        "start to end (imports and Ray's start and stop included).",
        "markdown": table + "\n\n" + verdict + "\n\n" + _timeline(jobs, single, ray),
        "data": {
            "jobs": n,
            "cpus": cpus,
            "direct": direct,
            "direct_one_thread": single,
            "ray": ray,
            "baseline_s": base,
            "speedup": speedup,
            "speedup_without_ray_start_stop": speedup_jobs,
            "engine_s_per_job": engine,
            "engine_s_per_job_with_ray_start_stop": engine_all,
            "most_at_once": used["most_at_once"],
            "side_by_side_slowdown": slower,
            "side_by_side_core_share": share,
            "load_average": [single["load"], load_end],
        },
    }


def _timeline(jobs, single, ray) -> str:
    """Each job's compile: alone on one thread, and on Ray (when it started, in which
    worker process, for how long), so that the reader sees the jobs overlap."""
    spans = ray["spans"]
    pids = {p: i + 1 for i, p in enumerate(dict.fromkeys(s["pid"] for s in spans.values()))}
    rows = [
        [
            f"`{j['id']}`",
            f"{single['walls'][j['id']]:.1f} s",
            f"{spans[j['id']]['start']:.1f} s",
            f"{spans[j['id']]['start'] + spans[j['id']]['wall']:.1f} s",
            f"worker {pids[spans[j['id']]['pid']]}",
            spans[j["id"]]["status"],
        ]
        for j in jobs
    ]
    return (
        "Each job's compile, one thread alone and on Ray (seconds from the start of "
        "`hwcc.jobs.run`, after Ray's start):\n\n"
        + md_table(["job", "alone", "Ray: start", "end", "where", "status"], rows, "lrrrll")
    )


def _s(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


if __name__ == "__main__":
    result = run("--quick" in sys.argv, Path(tempfile.mkdtemp()))
    print(result["markdown"])
