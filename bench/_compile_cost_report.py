"""compile_cost's page: the table of every compile, where the time goes, the trend, the plots."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import fmt_count, fmt_duration, md_table, save_svg
from hwcc.report.svg import BLUE, GREEN, GREY, ORANGE, RED, Chart, si_labels

# one colour per target of compile_cost.TARGETS
COLORS = {"cpu": BLUE, "gpu": ORANGE, "tpu": GREEN, "eie": RED, "eyeriss": GREY}


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _result(r: dict[str, Any]) -> str:
    if r["timed_out"]:
        return f"killed at {r['wall_s']:.0f} s"
    return f"{r['exit_code']} ({'met' if r['budget_met'] else 'unmet'})"


def _short_reason(reason: str) -> str:
    """hwcc's exit reason without its numbers, so that runs can be grouped by it."""
    return re.split(r" from | \(", reason, maxsplit=1)[0].strip()


def body(data: dict[str, Any], out: Path) -> str:
    """The section's markdown from its ``data``; writes the plots into ``out``."""
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
