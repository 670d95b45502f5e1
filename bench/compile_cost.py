"""What ``hwcc compile`` costs: wall time and peak memory per model and target.

Each compile runs as its own process, one at a time, exactly as a user types it; its wall
time is taken by the clock, its peak resident memory from ``wait4`` on that process, and
the time of each search iteration from when its progress line reached stderr. The
``cpu`` target's lookup table lives in a private folder for the section: it is first
filled with each model's kernels by ``hwcc profile`` (timed separately, a one-off per
machine), so a compile's time is the search, with only the pruned shapes new to the
table profiled inside it. The page is written by :mod:`bench._compile_cost_report`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import hwcc
from bench._common import ROOT, run_child
from bench._compile_cost_report import body
from hwcc.cli.workload_view import summary_json
from hwcc.ir.workload import analyze

TITLE = "Compile cost"
ORDER = 60


@dataclasses.dataclass(frozen=True)
class Plan:
    """The matrix one run measures, and the search settings every compile gets."""

    models: tuple[str, ...]
    targets: tuple[str, ...]
    max_iterations: int
    short_term_steps: int
    long_term_steps: int
    budget: str = "50%"
    seed: int = 0
    time_limit_s: float | None = None  # a compile still running then is killed and reported as such

    def flags(self) -> list[str]:
        return [
            "--budget",
            self.budget,
            "--data",
            "zoo:digits",
            "--json",
            "--seed",
            str(self.seed),
            "--max-iterations",
            str(self.max_iterations),
            "--short-term-steps",
            str(self.short_term_steps),
            "--long-term-steps",
            str(self.long_term_steps),
        ]


DIGITS = ("lenet300-digits", "mobilenet-digits", "resnet-digits", "lenet5-digits")
TARGETS = ("cpu", "gpu", "tpu", "eie", "eyeriss")
# Measured here: at 6 iterations, 10 and 50 steps the 20 compiles took 23 min, 12 of them
# in two runs (mobilenet-digits and resnet-digits on tpu, 424 s and 284 s: a few hundred
# proposals per run rejected by the cost model). Hence 4 iterations, fewer long fine-tune
# steps and a time limit per compile.
FULL = Plan(
    DIGITS, TARGETS, max_iterations=4, short_term_steps=10, long_term_steps=30, time_limit_s=90
)
QUICK = Plan(
    ("lenet300-digits",),
    ("eie", "eyeriss"),
    max_iterations=2,
    short_term_steps=3,
    long_term_steps=5,
    time_limit_s=60,
)
_ITERATION = re.compile(r"^hwcc compile: iteration (\d+):")
_LONG_TERM = "hwcc compile: long-term fine-tune"


def run(quick: bool, out: Path) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    sizes = {m: model_size(m) for m in plan.models}
    with tempfile.TemporaryDirectory(prefix="hwcc-bench-compile-") as tmp:
        # a table of the section's own
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        floor = run_child(
            [sys.executable, "-c", "import hwcc.api, torch, onnxruntime"], cwd=ROOT, env=env
        )
        profiles = {}
        if "cpu" in plan.targets:
            for m in plan.models:
                p = run_child(
                    [
                        sys.executable,
                        "-m",
                        "hwcc",
                        "profile",
                        "--target",
                        "cpu",
                        "--model",
                        f"zoo:{m}",
                    ],
                    cwd=ROOT,
                    env=env,
                )
                _check(p, f"hwcc profile --model zoo:{m}")
                profiles[m] = {"wall_s": p.wall_s, "peak_rss_bytes": p.peak_rss_bytes}
        rows = []
        for m in plan.models:
            for t in plan.targets:
                rows.append(
                    {
                        "model": m,
                        "target": t,
                        **sizes[m],
                        **compile_once(m, t, plan, Path(tmp), env),
                    }
                )
                print(
                    f"[bench]   compile {m} --target {t}: exit {rows[-1]['exit_code']}, "
                    f"{rows[-1]['iterations']} iterations, {rows[-1]['wall_s']:.1f} s, "
                    f"{rows[-1]['peak_rss_bytes'] / 2**20:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
    data = {
        "plan": dataclasses.asdict(plan),
        "rows": rows,
        "cpu_profile": profiles,
        "import_floor": {"wall_s": floor.wall_s, "peak_rss_bytes": floor.peak_rss_bytes},
    }
    command = " ".join(
        ["python -m hwcc compile zoo:MODEL --target TARGET", *plan.flags(), "-o TMP"]
    )
    what = (
        f"`{command}` for MODEL in {', '.join(plan.models)} and TARGET in "
        f"{', '.join(plan.targets)}: {len(rows)} compiles, one process at a time, on a machine "
        "shared with other work. The search is shortened from the defaults (40 iterations at most, "
        "30 fine-tune steps per proposal, six epochs of the data after the search) to "
        f"{plan.max_iterations}, "
        f"{plan.short_term_steps} and {plan.long_term_steps} so the matrix fits the bench's time "
        "(hwcc raises the first step when the cap cannot reach the budget, and says so), and a "
        f"compile still running after {plan.time_limit_s:g} s is killed and shown as such. Wall "
        "time is the process's, from start to exit (imports and the artifact included); peak "
        "memory is its maximum resident set. "
        + (
            "The `cpu` target's table is built first in a folder of the section's own by "
            "`hwcc profile --target cpu --model zoo:MODEL`; that time is reported apart."
            if profiles
            else ""
        )
    )
    return {"title": TITLE, "what": what, "markdown": body(data, out), "data": data}


def model_size(name: str) -> dict[str, Any]:
    """Compute layers (those with MACs), parameters and MACs of a zoo model."""
    s = summary_json(analyze(hwcc.load(f"zoo:{name}")))
    return {
        "layers": sum(1 for layer in s["layers"] if layer["macs"] > 0),
        "params": s["totals"]["params"],
        "macs": s["totals"]["macs"],
    }


def compile_once(
    model: str, target: str, plan: Plan, tmp: Path, env: dict[str, str]
) -> dict[str, Any]:
    """One ``hwcc compile`` process: its exit code, times, peak memory and search summary.

    A compile still running at ``plan.time_limit_s`` is killed; its row keeps what it
    did until then (the iterations reported, from its checkpoint the proposals tried).
    """
    artifact = tmp / f"{model}.{target}"
    argv = [
        sys.executable,
        "-m",
        "hwcc",
        "compile",
        f"zoo:{model}",
        "--target",
        target,
        *plan.flags(),
        "-o",
        str(artifact),
    ]
    child = run_child(argv, cwd=ROOT, env=env, timeout=plan.time_limit_s)
    picks = [t for t, line in child.stderr if _ITERATION.match(line)]
    row = {
        "argv": argv[1:],
        "exit_code": child.returncode,
        "timed_out": child.timed_out,
        "wall_s": child.wall_s,
        "cpu_s": child.cpu_s,
        "peak_rss_bytes": child.peak_rss_bytes,
    }
    if child.timed_out:
        state = _checkpoint(artifact)
        return {
            **row,
            "budget_met": None,
            "exit_reason": f"killed at the {plan.time_limit_s:g} s limit",
            "iterations": len(picks),
            "proposals": len(state["proposals"]) if state else None,
            "rejected": len(state["rejected"]) if state else None,
            **phases(picks, None, child.wall_s),
        }
    if child.returncode not in (0, 3):  # 3: budget unmet, a result like any other
        _check(child, f"hwcc compile zoo:{model} --target {target}")
    summary = json.loads(child.stdout)
    record = json.loads((artifact / "hwcc.json").read_text())
    # on cpu a final model whose measurement misses the budget sends the search on: the
    # search's end is the last long fine-tune, earlier ones count in their iterations
    rounds = [t for t, line in child.stderr if line.startswith(_LONG_TERM)]
    long_term = rounds[-1] if rounds else child.wall_s
    return {
        **row,
        "long_term_rounds": len(rounds),
        "budget_met": summary["budget_met"],
        "exit_reason": summary["exit_reason"],
        "iterations": int(summary["timing"]["iterations"]),
        "proposals": len(record.get("proposals", [])),
        "rejected": len(record.get("rejected", [])),
        **phases(picks, long_term, child.wall_s),
        "accuracy": [summary["original"].get("accuracy"), summary["final"].get("accuracy")],
        "warnings": summary.get("warnings", []),
    }


def _checkpoint(artifact: Path) -> dict[str, Any] | None:
    """The search state a killed compile left in its checkpoint, if readable."""
    try:
        state = json.loads(
            (artifact.parent / f"{artifact.name}.checkpoint" / "state.json").read_text()
        )["state"]
        return {"proposals": list(state["proposals"]), "rejected": list(state["rejected"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def phases(picks: list[float], long_term: float | None, wall: float) -> dict[str, float | None]:
    """Split a compile's wall time at its progress lines; the four parts add up to ``wall``.

    Args:
        picks: seconds from the start at which each accepted iteration was reported.
        long_term: when the long fine-tune began (the search's end); None for a compile
            killed before it.
        wall: when the process exited.

    Returns:
        ``first_iteration_s`` (start-up, pricing the input and the first iteration; None
        without one), ``s_per_iteration`` (the mean of the later ones; None with fewer than
        two), ``search_end_s`` (from the last accepted iteration, or the start, to the long
        fine-tune: a last iteration that found nothing acceptable, and on the ``cpu`` the
        check of the final model by measurement) and ``final_phase_s`` (the long fine-tune,
        the legal form, the final pricing, the artifact).
    """
    last = picks[-1] if picks else 0.0
    return {
        "first_iteration_s": picks[0] if picks else None,
        "s_per_iteration": (picks[-1] - picks[0]) / (len(picks) - 1) if len(picks) > 1 else None,
        "search_end_s": None if long_term is None else long_term - last,
        "final_phase_s": None if long_term is None else wall - long_term,
    }


def _check(child, what: str) -> None:
    if child.returncode != 0:
        tail = "\n".join(line for _, line in child.stderr[-5:])
        raise RuntimeError(f"{what} exited with {child.returncode}: {tail}")
