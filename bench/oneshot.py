"""The one-shot start against the NetAdapt loop: compile time and quality at equal budgets.

Every digits model of the zoo is compiled twice to each latency budget, once by the
NetAdapt loop alone (``one_shot=False``, the default) and once with the one-shot start
before it (``one_shot=True``, :mod:`hwcc.search.oneshot`), with the same seed, data and
search settings, one compile at a time in this process. For each compile the section
reads from its summary (``hwcc.json``) the wall time, the phases (``timing.phases_s``),
the iterations, the final predicted latency against the budget, the measured latency on
a measured target, the held-out accuracy and whether the budget was met; and from the
time of its progress events how the wall time splits into the set-up, the one-shot
stage, the NetAdapt loop and the finish (long-term fine-tune, legal form, measurement:
:func:`split_time`). A tiny compile runs first, unreported, so that neither mode pays for
torch's first use.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hwcc
from bench._common import fmt_duration, md_table, save_svg
from hwcc.report.svg import BLUE, ORANGE, Chart

TITLE = "The one-shot start against the NetAdapt loop"
ORDER = 62
SEED = 0
MODELS = ("lenet5-digits", "mobilenet-digits", "resnet-digits")
TARGETS = ("cpu", "eyeriss")
BUDGETS = (0.7, 0.5)
# modest settings, so that 24 compiles fit the bench's time on two cores
SEARCH = {"max_iterations": 4, "finetune_top": 2, "short_term_steps": 10, "long_term_steps": 30}
QUICK = {"max_iterations": 2, "finetune_top": 1, "short_term_steps": 4, "long_term_steps": 4}
MODES = {False: "NetAdapt", True: "one-shot + NetAdapt"}
STAGES = ("set-up", "one-shot", "NetAdapt loop", "finish")
# the stage a progress event starts; a warning continues the stage it falls in
_STAGE_OF = {
    "one_shot": "one-shot",
    "iteration": "NetAdapt loop",
    "proposal": "NetAdapt loop",
    "picked": "NetAdapt loop",
    "long_term": "finish",
    "done": "finish",
}


# ---------------------------------------------------------------------- pure pieces
def split_time(events: Sequence[tuple[float, str]], wall_s: float) -> dict[str, float]:
    """Seconds of a compile spent in each of :data:`STAGES`, from its progress events.

    Args:
        events: ``(seconds since the compile started, event kind)`` in order.
        wall_s: the compile's wall time; the time after the last event belongs to its stage.

    Returns:
        Each stage's seconds; they add up to ``wall_s``. The gap before the first event is
        the set-up; the gap after an event belongs to the stage that event starts.
    """
    out = dict.fromkeys(STAGES, 0.0)
    stage, t_prev = "set-up", 0.0
    for t, kind in [*events, (wall_s, "")]:
        out[stage] += max(0.0, t - t_prev)
        stage, t_prev = _STAGE_OF.get(kind, stage), max(t_prev, t)
    return out


def compare(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model, target and budget: the one-shot compile against NetAdapt's.

    ``rows`` are compiles (:func:`_compile`'s rows); a case lacking either mode is left out.
    """
    by = {(r["model"], r["target"], r["budget"], r["one_shot"]): r for r in rows}
    out = []
    for (model, target, budget, one_shot), shot in by.items():
        base = by.get((model, target, budget, False))
        if not one_shot or base is None:
            continue
        out.append(
            {
                "model": model,
                "target": target,
                "budget": budget,
                "time_ratio": shot["wall_s"] / base["wall_s"],
                "accuracy_delta": _diff(shot["accuracy"], base["accuracy"]),
                "latency_delta": shot["ratio"] - base["ratio"],
                "met": (base["met"], shot["met"]),
                "ran": shot.get("ran", True),
                "kept": shot["kept"],
            }
        )
    return out


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# ---------------------------------------------------------------------- running
def run(quick: bool, out: Path) -> dict[str, Any]:
    models, targets = (MODELS[:1], TARGETS[:1]) if quick else (MODELS, TARGETS)
    budgets, search = (BUDGETS[-1:], QUICK) if quick else (BUDGETS, SEARCH)
    _warm_up()
    rows = []
    for target in targets:
        for model in models:
            for budget in budgets:
                # the first of a pair times the kernels new to the cpu table: take turns
                first = budgets.index(budget) % 2 == 1
                for one_shot in (first, not first):
                    rows.append(_compile(model, target, budget, one_shot, search))
    rows.sort(
        key=lambda r: (
            targets.index(r["target"]),
            models.index(r["model"]),
            -r["budget"],
            r["one_shot"],
        )
    )
    pairs = compare(rows)
    charts = [_plot(rows, t, out) for t in targets]
    what = (
        f"`hwcc.compile('zoo:MODEL', TARGET, 'P%latency', data='zoo:digits', seed={SEED}, "
        + ", ".join(f"{k}={v}" for k, v in search.items())
        + ", one_shot=...)` for MODEL in "
        + ", ".join(models)
        + f", TARGET in {', '.join(targets)}, P in "
        + ", ".join(f"{b * 100:g}" for b in budgets)
        + ", each with one_shot False and True: "
        f"{len(rows)} compiles one after another in one process (after an unreported warm-up "
        "compile), on a 2-core machine shared with other work. The search settings are "
        "shortened from the defaults (40 iterations, 4 proposals fine-tuned per iteration, "
        "30 steps each, six epochs of the data after the search) so that the section runs in "
        "minutes; the "
        "one-shot start fine-tunes its combination for twice the short-term steps. Accuracy "
        "is the compile's own, on the held-out part of the digits (split with the seed). The "
        "`cpu` target prices from this machine's lookup table (kernels new to it are timed "
        "inside the compile that first needs them, so the two modes take turns to run first: "
        "NetAdapt at the first budget, the one-shot start at the second) and times the final "
        "model beside the input; `eyeriss` is modelled only."
    )
    markdown = _body(rows, pairs, charts)
    data = {"settings": search, "compiles": rows, "pairs": pairs}
    return {"title": TITLE, "what": what, "markdown": markdown, "data": data}


def _warm_up() -> None:
    hwcc.compile(
        "zoo:lenet5-digits", "eyeriss", "90%latency", data="zoo:digits", seed=SEED,
        max_iterations=1, short_term_steps=2, long_term_steps=2,
    )  # fmt: skip


def _compile(
    model: str, target: str, budget: float, one_shot: bool, search: dict[str, int]
) -> dict[str, Any]:
    """One compile and what the section reports of it."""
    events: list[tuple[float, str]] = []
    tried: list[dict[str, Any]] = []
    t0 = time.monotonic()

    def progress(kind: str, info: dict[str, Any]) -> None:
        events.append((time.monotonic() - t0, kind))
        if kind == "one_shot" and info.get("stage") == "tried":
            tried.append({k: info[k] for k in ("share", "groups", "untuned", "tuned")})

    result = hwcc.compile(
        f"zoo:{model}", target, f"{budget * 100:g}%latency", data="zoo:digits", seed=SEED,
        one_shot=one_shot, progress=progress, **search,
    )  # fmt: skip
    s = result.summary
    wall = s.timing["wall_s"]
    print(
        f"[oneshot] {model} {target} {budget:.0%} {MODES[one_shot]}: {wall:.1f} s", file=sys.stderr
    )
    first = s.history[0]["layer"] if s.history else ""
    kept = one_shot and first.startswith("one-shot")
    measured = s.measured or {}
    m0, m1 = measured.get("original_latency_s"), measured.get("final_latency_s")
    return {
        "model": model,
        "target": target,
        "budget": budget,
        "one_shot": one_shot,
        "wall_s": wall,
        "stages_s": split_time(events, wall),
        "phases_s": s.timing.get("phases_s", {}),
        "iterations": s.timing["iterations"],
        "netadapt_iterations": s.timing["iterations"] - int(kept),
        "ran": any(kind == "one_shot" for _, kind in events),
        "kept": kept,
        "tried": tried,
        "ratio": s.final["latency_s"] / s.original["latency_s"],
        "measured_ratio": m1 / m0 if m0 and m1 else None,
        "accuracy0": s.original["accuracy"],
        "accuracy": s.final["accuracy"],
        "met": s.budget_met,
        "floor_met": s.accuracy_floor_met,
        "exit": s.exit_reason,
        "honesty_rounds": len(s.honesty_rounds),
    }


# ---------------------------------------------------------------------- the page
def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x * 100:+.1f}" if signed else f"{x * 100:.1f} %"


def _body(rows: list[dict], pairs: list[dict], charts: list[str]) -> str:
    table = md_table(
        ["model", "target", "budget", "search", "wall", "one-shot stage", "NetAdapt loop",
         "pricing / fine-tuning", "iterations", "predicted latency", "measured latency",
         "accuracy (input)", "budget met", "exit"],
        [(f"`{r['model']}`", f"`{r['target']}`", f"{r['budget'] * 100:g} %", MODES[r["one_shot"]],
          f"{r['wall_s']:.1f} s", _oneshot_cell(r), f"{r['stages_s']['NetAdapt loop']:.1f} s",
          _phases_cell(r), _iterations_cell(r), _pct(r["ratio"]), _pct(r["measured_ratio"]),
          f"{_pct(r['accuracy'])} ({_pct(r['accuracy0'])})", "yes" if r["met"] else "no",
          _exit_cell(r)) for r in rows],
        "llllrrrrrrrrrl",
    )  # fmt: skip
    return "\n".join([_findings(rows, pairs), "", table, "", _footnote(), "", *charts, ""])


def _oneshot_cell(r: dict) -> str:
    if not r["one_shot"]:
        return "-"
    if not r.get("ran", True):
        return "not run"
    how = "kept" if r["kept"] else "fell back"
    return f"{r['stages_s']['one-shot']:.1f} s ({how})"


def _iterations_cell(r: dict) -> str:
    return f"1 + {r['netadapt_iterations']}" if r["kept"] else str(r["iterations"])


def _phases_cell(r: dict) -> str:
    p = r["phases_s"]
    tuning = p.get("fine-tuning", 0.0) + p.get("long-term fine-tune", 0.0)
    return f"{p.get('pricing', 0.0):.1f} / {tuning:.1f} s"


def _exit_cell(r: dict) -> str:
    n = r["honesty_rounds"]
    return r["exit"] + (f" (measured and sent back {n}x)" if n else "")


def _footnote() -> str:
    return (
        "*One-shot stage*: from the one-shot start's first progress event to the first event "
        "after it (its sensitivity pass, the allocation and the fine-tunes of each combination "
        "tried); *kept* when its combination was taken as the first iteration, *fell back* "
        "when none held the accuracy floor and the loop started from the input, *not run* when "
        "the exact cleanups alone met the budget. *NetAdapt "
        "loop*: the loop's iterations (in every round, when the measurement sent the search "
        "back to work). *Pricing / fine-tuning*: the compile's own phase times (`timing.phases_s` "
        "in its `hwcc.json`), the fine-tunes in and after the search together. "
        "*Iterations*: `1 + n` is the one-shot step and n NetAdapt iterations. "
        "*Predicted latency* is the final model's over the input's, as the target prices them "
        "(the budget is held against it); *measured latency* is the same ratio timed by "
        "onnxruntime on this CPU (cpu only); *budget met* needs both. *Accuracy* is top-1 on "
        "the held-out digits after the long-term fine-tune."
    )


def _findings(rows: list[dict], pairs: list[dict]) -> str:
    if not pairs:
        return "No case ran in both modes."
    out = []
    for target in dict.fromkeys(p["target"] for p in pairs):
        ps = [p for p in pairs if p["target"] == target]
        shot = [r for r in rows if r["target"] == target and r["one_shot"]]
        loop = [r for r in rows if r["target"] == target and not r["one_shot"]]
        ran = [r["stages_s"]["one-shot"] for r in shot if r.get("ran", True)] or [0.0]
        loop_s = statistics.median(r["stages_s"]["NetAdapt loop"] for r in loop)
        share = sum(r["stages_s"]["one-shot"] for r in shot) / sum(r["wall_s"] for r in shot)
        ratios = [p["time_ratio"] for p in ps]
        out.append(
            f"**`{target}`**: with the one-shot start a compile took "
            f"{statistics.median(ratios):.2f}x the NetAdapt loop's wall time at the median "
            f"({min(ratios):.2f}x to {max(ratios):.2f}x); the one-shot stage itself was "
            f"{share * 100:.0f} % of those compiles' time ({statistics.median(ran):.1f} s at "
            f"the median where it ran, against {loop_s:.1f} s for the loop in the compiles "
            f"without it). Its combination was kept in {sum(p['kept'] for p in ps)} of the "
            f"{sum(p['ran'] for p in ps)} cases where it ran (of {len(ps)}). The budget was met "
            f"by NetAdapt in {sum(p['met'][0] for p in ps)} and by the one-shot start in "
            f"{sum(p['met'][1] for p in ps)} of {len(ps)}. {_quality(ps)}"
        )
    total = sum(r["wall_s"] for r in rows)
    out.append(
        f"The {len(rows)} compiles took {fmt_duration(total)} in all. Wall times are of one "
        "compile each on a shared machine (see the load in the contents table), so a ratio "
        "of compile times is a rough figure."
    )
    return "\n\n".join(out)


def _quality(ps: list[dict]) -> str:
    """Accuracy at equal budgets: where both modes met it, and over every case."""
    both = [p for p in ps if p["met"] == (True, True) and p["accuracy_delta"] is not None]
    every = [p for p in ps if p["accuracy_delta"] is not None]
    text = []
    for name, group in ((f"Where both met the budget ({len(both)} of {len(ps)})", both),
                        (f"Over all {len(ps)} cases", every)):  # fmt: skip
        if not group:
            text.append(f"{name}: no case.")
            continue
        d = [p["accuracy_delta"] for p in group]
        lat = statistics.median(p["latency_delta"] for p in group)
        text.append(
            f"{name}, the one-shot start's held-out accuracy minus NetAdapt's is "
            f"{_points(statistics.median(d))} at the median ({_points(min(d))} to "
            f"{_points(max(d))}), at a predicted latency {_points(lat)} of the input's "
            "against NetAdapt's."
        )
    return " ".join(text)


def _points(x: float) -> str:
    """``+1.2 points``, of a fraction (0.012)."""
    return f"{x * 100:+.1f} points"


def _plot(rows: list[dict], target: str, out: Path) -> str:
    measured = all(r["measured_ratio"] is not None for r in rows if r["target"] == target)
    key = "measured_ratio" if measured else "ratio"
    chart = Chart(
        f"{target}: held-out accuracy against latency (lines join one model's budgets)",
        f"final latency / input latency ({'measured' if measured else 'predicted'})",
        "accuracy",
    )
    for one_shot, color in ((False, BLUE), (True, ORANGE)):
        for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
            rs = sorted(
                (
                    r
                    for r in rows
                    if (r["target"], r["model"], r["one_shot"]) == (target, model, one_shot)
                ),
                key=lambda r: r[key],
            )
            if not rs:
                continue
            xs, ys = [r[key] for r in rs], [r["accuracy"] for r in rs]
            chart.line(xs, ys, color, label=MODES[one_shot] if i == 0 else None, dashed=one_shot)
            chart.points(
                xs, ys, color,
                [f"{model} {MODES[one_shot]} at {r['budget'] * 100:g} %: latency "
                 f"{r[key]:.3f}, accuracy {r['accuracy']:.3f}" for r in rs],
                [f"{model.removesuffix('-digits')} {r['budget'] * 100:g}%" for r in rs],
            )  # fmt: skip
    return save_svg(
        out, f"oneshot_{target}.svg", chart.render(), f"accuracy against latency, {target}"
    )
