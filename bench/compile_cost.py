"""What ``hwcc compile`` costs: wall time and peak memory per model and target.

Each compile runs as its own process, one at a time, exactly as a user types it; its wall
time is taken by the clock, its peak resident memory from ``wait4`` on that process, and
the time of each search iteration from when its progress line reached stderr. The
``cpu`` target's lookup table lives in a private folder for the section: it is first
filled with each model's kernels by ``hwcc profile`` (timed separately, a one-off per
machine), so a compile's time is the search, with only the pruned shapes new to the
table profiled inside it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import ROOT, fmt_count, fmt_duration, md_table, run_child, save_svg
from hwcc.report.svg import BLUE, GREEN, GREY, ORANGE, RED, Chart, si_labels

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
COLORS = dict(zip(TARGETS, (BLUE, ORANGE, GREEN, RED, GREY)))
_ITERATION = re.compile(r"^hwcc compile: iteration (\d+):")
_LONG_TERM = "hwcc compile: long-term fine-tune"


def run(quick: bool, out: Path) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    sizes = {m: model_size(m) for m in plan.models}
    with tempfile.TemporaryDirectory(prefix="hwcc-bench-compile-") as tmp:
        env = {
            **os.environ,
            "XDG_CACHE_HOME": str(Path(tmp) / "cache"),
        }  # a table of the section's own
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
        f"30 fine-tune steps per proposal, 200 after the search) to {plan.max_iterations}, "
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
    return {"title": TITLE, "what": what, "markdown": _body(data, out), "data": data}


def model_size(name: str) -> dict[str, Any]:
    """Compute layers (those with MACs), parameters and MACs of a zoo model."""
    import hwcc
    from hwcc.cli.workload_view import summary_json
    from hwcc.ir.workload import analyze

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


# ---------------------------------------------------------------------- the page
def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _result(r: dict[str, Any]) -> str:
    if r["timed_out"]:
        return f"killed at {r['wall_s']:.0f} s"
    return f"{r['exit_code']} ({'met' if r['budget_met'] else 'unmet'})"


def _short_reason(reason: str) -> str:
    """hwcc's exit reason without its numbers, so that runs can be grouped by it."""
    return re.split(r" from | \(", reason, maxsplit=1)[0].strip()


def _body(data: dict[str, Any], out: Path) -> str:
    rows, floor, plan = data["rows"], data["import_floor"], data["plan"]
    mib = lambda b: f"{b / 2**20:.0f}"  # noqa: E731
    table = md_table(
        [
            "model",
            "layers",
            "params",
            "MACs",
            "target",
            "exit",
            "iterations",
            "proposals fine-tuned + rejected",
            "wall s",
            "1st iteration s",
            "s / later iteration",
            "search end s",
            "final phase s",
            "peak MiB",
        ],
        [
            (
                f"`{r['model']}`",
                r["layers"],
                fmt_count(r["params"]),
                fmt_count(r["macs"]),
                f"`{r['target']}`",
                _result(r),
                r["iterations"],
                "?" if r["proposals"] is None else f"{r['proposals']} + {r['rejected']}",
                _s(r["wall_s"]),
                _s(r["first_iteration_s"]),
                _s(r["s_per_iteration"]),
                _s(r["search_end_s"]),
                _s(r["final_phase_s"]),
                mib(r["peak_rss_bytes"]),
            )
            for r in rows
        ],
        "lrrrl",
    )
    unmet = [r for r in rows if r["budget_met"] is False]
    killed = [r for r in rows if r["timed_out"]]
    why: dict[str, list[str]] = {}
    for r in unmet:
        why.setdefault(_short_reason(r["exit_reason"]), []).append(
            f"`{r['model']}` on `{r['target']}`"
        )
    why.update(
        {
            f"killed at the {plan['time_limit_s']:g} s limit": [
                f"`{r['model']}` on `{r['target']}` (iterations accepted: {r['iterations']})"
                for r in killed
            ]
        }
        if killed
        else {}
    )
    lines = [
        _trend(rows, floor),
        "",
        f"{len(rows) - len(unmet) - len(killed)} of {len(rows)} compiles met the {plan['budget']} "
        "budget (exit 0)."
        + "".join(
            f" {reason[0].upper() + reason[1:]}: {', '.join(runs)}." for reason, runs in why.items()
        ),
        "",
        table,
        "",
        "Where the time goes: *1st iteration* runs from the process's start (imports, loading the "
        "model and data, pricing the input) to the first accepted iteration; *s / later iteration* "
        "is the mean time of each accepted iteration after it (n/a with fewer than two); *search "
        "end* runs from the last accepted iteration (or the start, with none) to the long "
        "fine-tune: a last iteration whose proposals were all rejected, and on `cpu` the final "
        "model's measurement; *final phase* is the long fine-tune, the legal form, the final "
        "pricing and the artifact. So wall = 1st iteration + (iterations - 1) x s / later "
        "iteration + search end + final phase. On `cpu`, a final model whose measured latency "
        "misses a budget its prediction met sends the search on after a long fine-tune; such "
        "rounds fall inside the iterations' times. A proposal is *fine-tuned* "
        f"({plan['short_term_steps']} steps) and scored, or *rejected* by the cost model before "
        "any training (no amount of the change meets the iteration's target). A process that only "
        f"imports hwcc, torch and onnxruntime peaks at {mib(floor['peak_rss_bytes'])} MiB and "
        f"takes {floor['wall_s']:.1f} s.",
    ]
    if data["cpu_profile"]:
        lines += [
            "",
            "One-off `hwcc profile --target cpu` per model "
            "(the table the `cpu` compiles start from): "
            + ", ".join(
                f"`{m}` {fmt_duration(p['wall_s'])}" for m, p in data["cpu_profile"].items()
            )
            + ".",
        ]
    lines += [
        "",
        _plot_iteration(rows, out),
        "",
        _plot_iteration(rows, out, "layers"),
        "",
        _plot_memory(rows, floor, out),
    ]
    return "\n".join(lines)


def _ranks(x: list[float]) -> np.ndarray:
    """Ranks from 0, ties sharing their mean rank."""
    a = np.asarray(x, float)
    ranks = np.empty(len(a))
    ranks[np.argsort(a, kind="stable")] = np.arange(len(a))
    for v in np.unique(a):
        ranks[a == v] = ranks[a == v].mean()
    return ranks


def _spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation; NaN when either side is constant or there are < 3 points."""
    ra, rb = _ranks(a), _ranks(b)
    if len(a) < 3 or np.std(ra) == 0 or np.std(rb) == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _trend(rows: list[dict], floor: dict) -> str:
    """One sentence on how time per iteration and memory grow, from the numbers."""
    timed = [r for r in rows if r["s_per_iteration"] is not None and r["proposals"] is not None]
    models = sorted({r["model"]: r["params"] for r in rows}.items(), key=lambda kv: kv[1])
    mem = lambda m: np.median([r["peak_rss_bytes"] for r in rows if r["model"] == m]) / 2**20  # noqa: E731
    ends = [models[0]] if len(models) == 1 else [models[0], models[-1]]
    out = (
        "Peak memory (median over targets) is "
        + " and ".join(f"{mem(m):.0f} MiB for `{m}` ({fmt_count(p)} parameters)" for m, p in ends)
        + f", against {floor['peak_rss_bytes'] / 2**20:.0f} MiB for importing the libraries alone"
    )
    if len({r["model"] for r in timed}) >= 3:
        by_p = _spearman([r["params"] for r in timed], [r["s_per_iteration"] for r in timed])
        by_l = _spearman([r["layers"] for r in timed], [r["s_per_iteration"] for r in timed])
        by_n = _spearman(
            [(r["proposals"] + r["rejected"]) / r["iterations"] for r in timed],
            [r["s_per_iteration"] for r in timed],
        )
        best = max(
            (
                ("the number of proposals per iteration", by_n),
                ("the number of layers", by_l),
                ("the parameter count", by_p),
            ),
            key=lambda kv: -1 if math.isnan(kv[1]) else kv[1],
        )
        lo, hi = (f(timed, key=lambda r: r["s_per_iteration"]) for f in (min, max))
        out += (
            f"; time per iteration runs from {lo['s_per_iteration']:.1f} s (`{lo['model']}` on "
            f"`{lo['target']}`) to {hi['s_per_iteration']:.1f} s (`{hi['model']}` on "
            f"`{hi['target']}`) and follows {best[0]} most closely (rank correlation over "
            f"{len(timed)} runs: parameters {by_p:+.2f}, layers {by_l:+.2f}, proposals per "
            f"iteration {by_n:+.2f})"
        )
    return out + "."


def _mib_labels(ticks) -> list[str]:
    return [f"{t:g} MiB" for t in ticks]


def _param_labels(ticks) -> list[str]:
    return [fmt_count(t) for t in ticks]


def _by_target(rows: list[dict], value, x: str = "params") -> list[tuple[str, list[dict]]]:
    out = []
    for t in dict.fromkeys(r["target"] for r in rows):
        rs = sorted(
            (r for r in rows if r["target"] == t and value(r) is not None), key=lambda r: r[x]
        )
        if rs:
            out.append((t, rs))
    return out


def _plot_iteration(rows: list[dict], out: Path, x: str = "params") -> str:
    """Time per later iteration against ``x`` (``params`` or ``layers``), one line per target."""
    label = {"params": "parameters", "layers": "compute layers"}[x]
    chart = Chart(
        f"hwcc compile: time per search iteration vs {label}",
        label,
        "wall time per iteration",
        xfmt=_param_labels,
        yfmt=lambda t: si_labels(t, "s"),
        xint=x == "layers",
    )
    for t, rs in _by_target(rows, lambda r: r["s_per_iteration"], x):
        chart.line([r[x] for r in rs], [r["s_per_iteration"] for r in rs], COLORS.get(t, BLUE))
        chart.points(
            [r[x] for r in rs],
            [r["s_per_iteration"] for r in rs],
            COLORS.get(t, BLUE),
            [
                f"{r['model']} on {t}: {r['s_per_iteration']:.2f} s/iteration, {r['iterations']} "
                f"iterations, {r['layers']} layers, {fmt_count(r['params'])} parameters"
                for r in rs
            ],
            label=t,
        )
    return save_svg(
        out, f"compile_cost_iteration_{x}.svg", chart.render(), f"time per iteration vs {label}"
    )


def _plot_memory(rows: list[dict], floor: dict, out: Path) -> str:
    chart = Chart(
        "hwcc compile: peak memory vs model size",
        "parameters",
        "peak resident memory",
        xfmt=_param_labels,
        yfmt=_mib_labels,
    )
    chart.hline(floor["peak_rss_bytes"] / 2**20, GREY, "importing hwcc, torch, onnxruntime")
    for t, rs in _by_target(rows, lambda r: r["peak_rss_bytes"]):
        chart.line(
            [r["params"] for r in rs],
            [r["peak_rss_bytes"] / 2**20 for r in rs],
            COLORS.get(t, BLUE),
        )
        chart.points(
            [r["params"] for r in rs],
            [r["peak_rss_bytes"] / 2**20 for r in rs],
            COLORS.get(t, BLUE),
            [
                f"{r['model']} on {t}: {r['peak_rss_bytes'] / 2**20:.0f} MiB"
                + (f" (killed at {r['wall_s']:.0f} s)" if r["timed_out"] else "")
                for r in rs
            ],
            label=t,
        )
    return save_svg(out, "compile_cost_memory.svg", chart.render(), "peak memory vs parameters")
