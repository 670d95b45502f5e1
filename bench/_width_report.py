"""width's page: the table of every point, hwcc against the multiplier, findings and plots.

Reads the measured points :mod:`bench._width_points` made; see :mod:`bench.width`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench._common import fmt_count, md_table, save_svg
from bench._width_common import (
    FLOOR_DROP,
    PAPER_SPEEDUP,
    TEST_SAMPLES,
    data_of,
    speedup_at_accuracy,
)
from hwcc.report.svg import BLUE, GREEN, GREY, ORANGE, RED, Chart, percent_labels, si_labels

PURPLE = "#9467bd"


def _us(t: float | None) -> str:
    return "n/a" if t is None else f"{t * 1e6:.1f} us"


def markdown(models: list[dict[str, Any]], plots: list[str]) -> str:
    """The section's body: both tables, the findings, and the plots."""
    lines = [
        "**Every point.** Speed-up is the input model's measured latency over the point's; "
        "*MACs* counts the multiply-accumulates left; ×8: channels rounded up to a multiple "
        "of 8.",
        "",
    ]
    rows = []
    for mod in models:
        for p in [mod["original"]] + mod["multiplier"] + mod["hwcc"] + mod.get("peers", []):
            also = "".join(
                f" (= {m.split('(')[-1].rstrip(')')})" for m in dict.fromkeys(p.get("also", ()))
            )
            rows.append(
                (
                    f"`{mod['model']}`",
                    p["method"].split(" (")[0],
                    p["label"] + also,
                    _us(p["latency_s"]),
                    f"{p['speedup']:.2f}x",
                    f"{p['accuracy']:.2%}",
                    fmt_count(p["macs"]),
                )
            )
    lines += [
        md_table(
            ["model", "method", "setting", "measured latency", "speed-up", "test accuracy", "MACs"],
            rows,
            "llllrrr",
        ),
        "",
    ]
    lines += [
        "**hwcc against the multiplier** (both roundings together: the fastest multiplier "
        "model at each accuracy). For each hwcc point: the multiplier's latency at the same "
        "test accuracy, read off its curve, and the speed-up that makes (*at least* when "
        "hwcc is more accurate than every multiplier point: the ratio is then taken at the "
        "most accurate one; *at most* when even the narrowest multiplier is more accurate), "
        "and the multiplier's accuracy at the hwcc point's latency. *Predicted* is the `cpu` "
        "target's lookup-table estimate the search worked with.",
        "",
    ]
    lines += [
        md_table(
            [
                "model",
                "hwcc budget",
                "speed-up predicted / measured",
                "hwcc latency",
                "hwcc accuracy",
                "multiplier latency at that accuracy",
                "hwcc speed-up at equal accuracy",
                "multiplier accuracy at hwcc's latency",
                "Torch-Pruning accuracy at hwcc's latency",
            ],
            _against_rows(models),
            "llrlllrrr",
        ),
        "",
    ]
    lines += _findings(models)
    lines += ["", *plots]
    return "\n".join(lines)


def _against_rows(models: list[dict[str, Any]]) -> list[tuple]:
    rows = []
    for mod in models:
        for p in mod["hwcc"]:
            acc = p["multiplier_accuracy_at_latency"]
            lat = p["multiplier_latency_at_accuracy_s"]
            rows.append(
                (
                    f"`{mod['model']}`",
                    p["label"],
                    f"{1 / p['predicted_ratio']:.2f}x / {p['speedup']:.2f}x",
                    _us(p["latency_s"]),
                    f"{p['accuracy']:.2%}",
                    _us(lat) if lat is not None else "never",
                    _ratio(p),
                    f"{acc:.2%}" if acc is not None else "below its fastest point",
                    _peer_cell(mod, p),
                )
            )
        for b in mod["search"]["unreached"]:
            rows.append(
                (f"`{mod['model']}`", f"{b * 100:g}%", "not reached", "", "", "", "", "", "")
            )
    return rows


def _peer_cell(mod: dict[str, Any], p: dict[str, Any]) -> str:
    if not mod.get("peers"):
        return "not run"
    acc = p.get("peers_accuracy_at_latency")
    return f"{acc:.2%}" if acc is not None else "below its fastest point"


def _peer_finding(mod: dict[str, Any]) -> str | None:
    """hwcc against Torch-Pruning at equal measured latency, for one model."""
    if not mod.get("peers"):
        return None
    samples = mod.get("test_samples") or TEST_SAMPLES.get(mod.get("data", data_of(mod["model"])))
    tie = 1 / (samples or 1)
    parts, wins = [], 0
    for p in mod["hwcc"]:
        acc = p.get("peers_accuracy_at_latency")
        if acc is None:
            parts.append(f"{p['label']}: faster than every Torch-Pruning point")
            wins += 1
            continue
        ok = p["accuracy"] >= acc - tie - 1e-12
        wins += ok
        parts.append(
            f"{p['label']}: {p['accuracy']:.2%} against {acc:.2%} "
            f"({(p['accuracy'] - acc) * 100:+.1f} points)"
        )
    best = max(mod["peers"], key=lambda q: q["accuracy"])
    slow = [q for q in mod["peers"] if q["speedup"] < 1]
    odd = [
        sum(c % 8 != 0 for c in q["channels"].values()) / max(1, len(q["channels"]))
        for q in mod["peers"]
    ]
    slow_note = (
        f" {len(slow)} of its {len(mod['peers'])} points are slower than the input despite "
        "fewer MACs: a uniform ratio leaves channel counts off multiples of 8 (on average "
        f"{np.mean(odd):.0%} of a point's channel groups), where onnxruntime's kernels are slow."
        if slow
        else ""
    )
    return (
        f"- `{mod['model']}` against Torch-Pruning at hwcc's measured latency (its curve: the "
        f"input and its {len(mod['peers'])} points, magnitude and global, read as the "
        f"multiplier's is): {'; '.join(parts) or 'no hwcc point'}; hwcc is at least as accurate "
        f"(within one test sample) at {wins} of {len(mod['hwcc'])} points. Torch-Pruning's most "
        f"accurate point: {best['label']}, {best['accuracy']:.2%} at {best['speedup']:.2f}x."
        + slow_note
    )


def _ratio(p: dict[str, Any]) -> str:
    return (p["bound"] + " " if p["bound"] else "") + f"{p['speedup_at_equal_accuracy']:.2f}x"


def _findings(models: list[dict[str, Any]]) -> list[str]:
    out = [_headline(models)]
    out += _task_goal(models, "zoo:glyphs")
    out += [_model_finding(mod) for mod in models]
    out += [f for f in map(_peer_finding, models) if f]
    pairs = [(1 / p["predicted_ratio"], p["speedup"]) for mod in models for p in mod["hwcc"]]
    if pairs:
        over = float(np.median([a / b for a, b in pairs]))
        out.append(
            "- hwcc's search worked with the `cpu` target's predicted latencies: for its "
            f"points the predicted speed-up is {over:.2f}x the measured one (median over "
            f"{len(pairs)} points), "
            + (
                "so the search believed its changes saved more than they do here."
                if over > 1.1
                else "so the search believed its changes saved less than they do here."
                if over < 0.9
                else "so prediction and measurement agree within 10 %."
            )
        )
    out.append(
        "- Noise: the interquartile range of a speed-up's per-round values, relative to "
        "it, is "
        + "; ".join(
            f"`{m['model']}` {m['spread']['median']:.1%} for the median point, at "
            f"most {m['spread']['max']:.1%}"
            for m in models
        )
        + ". Speed-ups that differ by less than that are not different; and since the "
        "other tenants of this machine change how much larger models suffer (the shared "
        "caches), speed-ups move by more than that from one run of this section to the "
        "next."
    )
    out.append(_CAVEATS)
    return out


def _headline(models: list[dict[str, Any]]) -> str:
    near = [
        (p["speedup_at_equal_accuracy"], mod["model"], p)
        for mod in models
        for p in mod["hwcc"]
        if p["accuracy"] >= mod["accuracy0"] - FLOOR_DROP - 1e-12 and p["bound"] != "at most"
    ]
    if not near:
        return (
            f"- No hwcc point stays within {FLOOR_DROP:.0%} of its input model's accuracy, so "
            "there is no speed-up at equal accuracy to set against the paper's "
            f"{PAPER_SPEEDUP}x."
        )
    sp, name, p = max(near, key=lambda b: b[0])
    verdict = (
        "reaches" if sp >= PAPER_SPEEDUP else "falls short of"
    ) + f" the paper's {PAPER_SPEEDUP}x"
    return (
        "- Largest hwcc speed-up over the multiplier at equal or higher accuracy, among hwcc "
        f"points within {FLOOR_DROP:.0%} of the input model's accuracy: **{_ratio(p)}** "
        f"(`{name}`, budget {p['label']}, {p['accuracy']:.2%}); this {verdict}. A ratio "
        "below 1 means the width multiplier is faster at that accuracy."
    )


def best_at_equal_accuracy(
    mod: dict[str, Any], tolerance: int = 0, floor: float | None = FLOOR_DROP
) -> tuple[float, dict] | None:
    """A model's largest hwcc speed-up over the multiplier at equal accuracy, among hwcc points
    within ``floor`` of the input's accuracy (None: every point): the multiplier's latency at
    the hwcc point's accuracy less ``tolerance`` test samples, over the hwcc point's latency (the
    speed-up is a lower bound where the multiplier never gets there; a point whose accuracy
    even the narrowest multiplier beats is left out). None: no such point."""
    samples = mod.get("test_samples") or TEST_SAMPLES.get(mod.get("data", data_of(mod["model"])))
    curve = [(p["latency_s"], p["accuracy"]) for p in [mod["original"]] + mod["multiplier"]]
    best = None
    for p in mod["hwcc"]:
        if floor is not None and p["accuracy"] < mod["accuracy0"] - floor - 1e-12:
            continue
        ratio, bound = speedup_at_accuracy(
            curve, p["latency_s"], p["accuracy"] - tolerance / (samples or 1)
        )
        if bound != "at most" and (best is None or ratio > best[0]):
            best = (ratio, p)
    return best


def _task_goal(models: list[dict[str, Any]], data: str, one: float = 1.7, median: float = 1.3):
    """The harder task's goal: at least ``one`` x on one of its models, ``median`` x at the
    median over them, at equal accuracy (strictly, and within one test sample), over every
    hwcc point (not only those within a point of the input: each model's line says what
    the fine-tuning alone does to the input, the multiplier's α=1)."""
    mods = [m for m in models if m.get("data", data_of(m["model"])) == data]
    if not mods:
        return []
    out = []
    for tolerance, how in (
        (0, "at equal accuracy"),
        (1, "with the multiplier one test sample less accurate"),
    ):
        bests = [(m["model"], best_at_equal_accuracy(m, tolerance, None)) for m in mods]
        ratios = [b[0] if b else 0.0 for _, b in bests]
        top, mid = max(ratios), float(np.median(ratios))
        alone = {m["model"]: _alone(m) for m in mods}
        each = ", ".join(
            f"`{n}` {b[0]:.2f}x ({b[1]['label']}, {b[1]['accuracy']:.2%}{alone[n]})"
            if b
            else f"`{n}` no hwcc point"
            for n, b in bests
        )
        verdict = (
            f"goal met (at least {one}x on one model, {median}x at the median)"
            if top >= one and mid >= median
            else f"goal missed: best {top:.2f}x against {one}x ({top / one - 1:+.0%}), median "
            f"{mid:.2f}x against {median}x ({mid / median - 1:+.0%})"
        )
        out.append(
            f"- `{data}` models, hwcc's best speed-up over the multiplier {how} (any hwcc "
            f"point): {each}; {verdict}."
        )
    return out


def _alone(mod: dict[str, Any]) -> str:
    """``; input 92.60 %, fine-tuned alone 92.80 %``: the multiplier's α=1 point, the input
    given the same fine-tuning as every point."""
    same = [p for p in mod["multiplier"] if p.get("alpha") == 1.0]
    if not same:
        return ""
    return f"; input {mod['accuracy0']:.2%}, fine-tuned alone {same[0]['accuracy']:.2%}"


def _model_finding(mod: dict[str, Any]) -> str:
    info = mod["search"]
    pts = (
        ", ".join(f"{p['label']}: {_ratio(p)} at {p['accuracy']:.2%}" for p in mod["hwcc"])
        or "none"
    )
    missed = ", ".join(f"{b * 100:g}%" for b in info["unreached"])
    unreached = f"; budget(s) {missed} not reached" if info["unreached"] else ""
    low = min(info["history"], key=lambda h: h["search_accuracy"], default=None)
    fell = (
        " Its accuracy after short-term fine-tuning fell to "
        f"{low['search_accuracy']:.2%} at iteration {low['iteration']} ({low['changed']}); "
        "without an accuracy floor (`max_accuracy_drop`) the search goes on from there."
        if low and low["search_accuracy"] < mod["accuracy0"] - 0.1
        else ""
    )
    return (
        f"- `{mod['model']}` (input {mod['accuracy0']:.2%}): hwcc against the multiplier at "
        f"equal accuracy {pts}{unreached}. Search: {info['iterations']} iterations, "
        f"{info['search_steps']} proposal fine-tune steps, {info['search_s']:.0f} s; stopped: "
        f"{info['stop']}.{fell}"
    )


_CAVEATS = (
    "- Caveats: the search scores its proposals on the same test split the tables report (the "
    "zoo's data sets have no separate validation split), which favours hwcc slightly; one test "
    "image is 0.28 points on digits and 0.1 on glyphs, so accuracy differences of that size are "
    "within noise; the "
    "multiplier is fine-tuned from the input's pruned weights, not trained from scratch at its "
    "width as MobileNet's multipliers are (the zoo's recipe is 900-1350 Adam steps per network, "
    "3-4.5x this section's whole fine-tuning budget per point, for each of the widths: not "
    "cheap on this machine); hwcc's search prices with the `cpu` target's lookup table, which "
    "measures the kernels it lacks as it goes and keeps its entries at the speed of the slower "
    "machine phase it has seen, so the search's path, and its points, can change from one run "
    "to the next as the table fills; at the digits' 8x8 inputs much of the latency is "
    "per-kernel and per-inference overhead that no pruning removes; and onnxruntime's kernels "
    "are much slower at some channel counts (not multiples of 8) than at nearby ones, which is "
    "why some multiplier points are slower than wider ones."
)


def plot(mod: dict[str, Any], out: Path) -> str:
    """Accuracy against measured latency: the input, each multiplier curve, and hwcc's points."""
    chart = Chart(
        f"{mod['model']}: test accuracy against measured CPU latency",
        "measured latency (onnxruntime, batch 1)",
        "test accuracy",
        lambda t: si_labels(t, "s"),
        percent_labels,
    )
    # the curves each multiplier point lies on
    on = {id(p): {p["method"], *p.get("also", ())} for p in mod["multiplier"]}
    methods = sorted(set().union(*on.values()))
    series = [
        ([mod["original"]] + [p for p in mod["multiplier"] if m in on[id(p)]], c, m)
        for m, c in zip(methods, (ORANGE, GREEN))
    ]
    series.append(([mod["original"]] + mod["hwcc"], BLUE, "hwcc"))
    for kind, color in (("magnitude", RED), ("global", PURPLE)):
        pts = [p for p in mod.get("peers", []) if p["method"] == f"Torch-Pruning ({kind})"]
        if pts:
            series.append(([mod["original"]] + pts, color, f"Torch-Pruning ({kind})"))
    for pts, color, label in series:
        pts = sorted(pts, key=lambda p: p["latency_s"])
        xs, ys = [p["latency_s"] for p in pts], [p["accuracy"] for p in pts]
        chart.line(xs, ys, color, label)
        chart.points(
            xs,
            ys,
            color,
            [
                f"{p['method']} {p['label']}: {_us(p['latency_s'])}, {p['accuracy']:.2%}"
                for p in pts
            ],
            ["" if p is mod["original"] else p["label"] for p in pts],
        )
    chart.vline(mod["original"]["latency_s"], GREY, "input")
    name = f"width_{mod['model']}.svg"
    return save_svg(
        out,
        name,
        chart.render(),
        f"{mod['model']}: accuracy against measured latency, hwcc and width multiplier",
    )
