"""hwcc's search against a uniform width multiplier, at equal latency measured on this CPU.

NetAdapt (Yang et al., ECCV 2018) reports networks up to 1.7x faster than MobileNet width
multipliers at equal or higher accuracy, latency measured on a phone's CPU and GPU. The
same comparison on the digits models, on this machine's CPU under onnxruntime:

* **Width multiplier** ``α``: every prunable channel group of ``C`` channels keeps its
  ``⌈α·C⌉`` filters of largest L2 norm (the ``prune_channels`` pass, ``ratio = 1 − α``;
  coupled layers, residual Adds and depthwise convolutions shrink with their group), and
  again with ``α·C`` rounded up to a multiple of 8, as MobileNet's published multipliers
  round it (the pass's ``round_to``). The multiplier's curve is the better of the two.
* **hwcc**: ``hwcc.compile(model, "cpu", "P%", data="zoo:digits")``, the NetAdapt loop
  priced by the ``cpu`` target's measured kernel tables, with the default passes
  (channel pruning, weight pruning, low-rank). One search runs to the smallest budget
  ``P_min``; its model after every iteration is kept, and the point for budget ``P`` is
  the first one predicted at or below ``P %`` of the input's latency: the model a run
  with budget ``P`` stops at (that run's last step would aim at exactly ``P``, so it may
  be a little less pruned).

Every point of both methods is then fine-tuned to the same total number of SGD steps
``T`` (a search point has had ``S`` steps per iteration along its path and gets the
rest) and scored on the digits test split in onnxruntime. All points of a model are
timed together, round-robin, as ``hwcc compile`` times its result on the ``cpu`` target
(:func:`hwcc.targets.cpu.target.measure_models`), and a speed-up is the median over rounds of
the ratio within one round (:func:`by_round`), so that it compares models under the same
state of this shared machine. The speed-up at equal accuracy reads the multiplier's
latency at the hwcc point's accuracy off the multiplier's curve (linear between its
points, after making accuracy non-decreasing in latency).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import fmt_count, md_table, one_torch_thread, save_svg

TITLE = "hwcc against a uniform width multiplier at equal measured CPU latency"
ORDER = 20

SEED = 0
PAPER_SPEEDUP = 1.7   # NetAdapt (Yang et al., ECCV 2018): up to 1.7x faster than width multipliers, equal accuracy
FLOOR_DROP = 0.01     # the headline counts hwcc points within one point of the input model's accuracy
DEFAULT_PASSES = ("prune_channels", "prune_weights", "low_rank")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much is run.

    Attributes:
        models: digits zoo models.
        budgets: latency budgets, fractions of the input model's predicted latency; the
            search runs to the smallest.
        alphas: width multipliers (1.0: the input model fine-tuned like every other point; the
            input model as it is, without fine-tuning, is always a point too).
        round_to: the multiplier's roundings of ``α·C``: 1 is ``⌈α·C⌉``; 8 rounds up to a
            multiple of 8, as MobileNet's published multipliers do (``_make_divisible``).
        max_iterations: most search iterations.
        short_term_steps: ``S``, the search's fine-tune steps per proposal.
        total_steps: ``T``, fine-tune steps every point has had in all.
        rounds: rounds of the round-robin latency measurement (:func:`measure`).
        runs: timed runs per model per round.
    """

    models: tuple[str, ...]
    budgets: tuple[float, ...]
    alphas: tuple[float, ...]
    round_to: tuple[int, ...]
    max_iterations: int
    short_term_steps: int
    total_steps: int
    rounds: int
    runs: int


QUICK = Settings(models=("lenet5-digits",), budgets=(0.7,), alphas=(1.0, 0.75, 0.5), round_to=(1,),
                 max_iterations=2, short_term_steps=5, total_steps=30, rounds=8, runs=30)
FULL = Settings(models=("lenet5-digits", "mobilenet-digits", "resnet-digits"), budgets=(0.75, 0.5, 0.35),
                alphas=(1.0, 0.75, 0.5, 0.35, 0.25), round_to=(1, 8), max_iterations=10, short_term_steps=30,
                total_steps=300, rounds=30, runs=50)


# ---------------------------------------------------------------------- pure pieces
def envelope(curve: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """``(latency, accuracy)`` points sorted by latency, accuracy made non-decreasing.

    A slower point that is less accurate than a faster one is never the better choice:
    its accuracy is raised to the best accuracy available at or below its latency.
    """
    out: list[tuple[float, float]] = []
    best = -math.inf
    for lat, acc in sorted(curve):
        best = max(best, acc)
        out.append((lat, best))
    return out


def latency_at_accuracy(curve: Sequence[tuple[float, float]], accuracy: float) -> float | None:
    """The least latency at which ``curve`` reaches ``accuracy``, linear between points.

    Returns:
        The latency; the fastest point's latency if every point reaches ``accuracy``;
        None if no point does.
    """
    env = envelope(curve)
    for i, (lat, acc) in enumerate(env):
        if acc >= accuracy - 1e-12:
            if i == 0:
                return lat
            (l0, a0) = env[i - 1]
            return l0 + (accuracy - a0) / (acc - a0) * (lat - l0)
    return None


def accuracy_at_latency(curve: Sequence[tuple[float, float]], latency: float) -> float | None:
    """The accuracy ``curve`` reaches at ``latency`` (linear between points, envelope).

    Returns:
        None below the fastest point; the best accuracy beyond the slowest.
    """
    env = envelope(curve)
    if not env or latency < env[0][0]:
        return None
    for (l0, a0), (l1, a1) in zip(env, env[1:]):
        if l0 <= latency <= l1:
            return a0 if l1 == l0 else a0 + (latency - l0) / (l1 - l0) * (a1 - a0)
    return env[-1][1]


def speedup_at_accuracy(curve: Sequence[tuple[float, float]], latency: float, accuracy: float) -> tuple[float, str]:
    """How much faster a model of ``(latency, accuracy)`` is than ``curve`` at the same accuracy.

    Returns:
        ``(ratio, bound)``: ``ratio`` is the curve's latency at ``accuracy`` over
        ``latency``; ``bound`` is ``""`` when the curve reaches ``accuracy`` within its
        points, ``"at least"`` when no point reaches it (the ratio is then taken at the
        curve's most accurate point, which is less accurate than the model), ``"at most"``
        when even the fastest point is more accurate (a narrower one might still reach it).
    """
    env = envelope(curve)
    top = env[-1][1]
    if accuracy > top + 1e-12:
        return latency_at_accuracy(curve, top) / latency, "at least"
    if accuracy < env[0][1] - 1e-12:
        return env[0][0] / latency, "at most"
    return latency_at_accuracy(curve, accuracy) / latency, ""


def by_round(rounds: Sequence[Sequence[float]], reference: Sequence[int] | None = None
             ) -> tuple[list[float], list[float], list[float]]:
    """Speed-ups from rounds of a round-robin measurement, each ratio taken within one round.

    This machine switches between two speeds about 1.8x apart for seconds at a time; one
    round visits every model within well under a second, so the models of a round share
    the machine's state. With ``t[r][i]`` model ``i``'s latency in round ``r`` and ``k``
    its reference model (``reference[i]``, model 0 by default):

        speedup_i = median_r t[r][k] / t[r][i],     latency_i = median_r t[r][k] / speedup_i,
        spread_i  = interquartile range_r (t[r][k] / t[r][i]) / speedup_i.

    Returns:
        ``(latency, speedup, spread)``, one value per model.
    """
    t = np.asarray(rounds, dtype=float)
    ref = np.asarray(reference if reference is not None else [0] * t.shape[1])
    ratios = t[:, ref] / t
    speedup = np.median(ratios, axis=0)
    q1, q3 = np.percentile(ratios, [25, 75], axis=0)
    base = np.median(t, axis=0)[ref]
    return (base / speedup).tolist(), speedup.tolist(), ((q3 - q1) / speedup).tolist()


def measure(models: Sequence[bytes], threads: int, rounds: int, runs: int,
            reference: Sequence[int] | None = None) -> dict[str, Any]:
    """Every model timed ``runs`` times per round, round-robin, ``rounds`` rounds; see :func:`by_round`."""
    from hwcc.targets.cpu.target import measure_models

    table = [measure_models(list(models), threads, runs=runs, rounds=1, warmup=3) for _ in range(rounds)]
    latency, speedup, spread = by_round(table, reference)
    return {"latency_s": latency, "speedup": speedup, "spread": spread, "rounds_s": table}


def first_meeting(points: Sequence[Mapping[str, Any]], limit: float) -> Mapping[str, Any] | None:
    """The first point (in search order) whose ``predicted_s`` is at or below ``limit``."""
    return next((p for p in points if p["predicted_s"] <= limit * (1 + 1e-12)), None)


# ---------------------------------------------------------------------- helpers


class _Model:
    """One digits model: the input as loaded, cleaned up as ``hwcc compile`` does, its data."""

    def __init__(self, name: str):
        import hwcc
        from hwcc.api import CLEANUP
        from hwcc.data.evaluate import Evaluator, resolve_data
        from hwcc.ir.transform import PassContext, PassManager

        self.name = name
        self.src = hwcc.load(f"zoo:{name}")
        self.graph = PassManager(list(CLEANUP), PassContext(seed=SEED, verify=True)).run(self.src).graph
        self.tune, held, _ = resolve_data(self.graph, "zoo:digits", None, SEED)
        self.evaluator = Evaluator(self.graph, held)
        self.accuracy0 = self.evaluator.accuracy(self.graph)

    def finish(self, graph, steps: int) -> tuple[Any, float]:
        """``graph`` fine-tuned ``steps`` more SGD steps (the compile's settings), and its test accuracy."""
        from hwcc.train.finetune import finetune

        if steps > 0:
            graph = finetune(graph, self.tune.inputs, self.tune.labels, steps=steps, seed=SEED).graph
        return graph, self.evaluator.accuracy(graph)


def _shape(graph) -> dict[str, Any]:
    """What a point kept: MACs, and the output channels of every prunable group."""
    from hwcc.passes.prune_channels import prunable_groups
    from hwcc.ir.workload import analyze

    return {"macs": analyze(graph).macs, "channels": {g.id: g.channels for g in prunable_groups(graph)}}


def _multiplier(m: _Model, s: Settings) -> list[dict[str, Any]]:
    """Every multiplier point, each rounding in turn; a width another rounding already gave is not repeated."""
    from hwcc.ir.transform import PassContext, get_pass

    out: list[dict[str, Any]] = []
    for round_to in s.round_to:
        method = "width multiplier" + (f" (multiples of {round_to})" if round_to > 1 else "")
        for alpha in s.alphas:
            graph = m.graph
            if alpha < 1.0:  # alpha = 1: the input model, fine-tuned as long as every other point
                knobs = {"prune_channels": {"ratio": 1 - alpha, "round_to": round_to}}
                graph = get_pass("prune_channels")(m.graph, PassContext(knobs=knobs, verify=False)).graph
            shape = _shape(graph)
            same = next((p for p in out if p["channels"] == shape["channels"]), None)
            if same is not None:
                same.setdefault("also", []).append(method)  # one model, on both curves
                continue
            graph, acc = m.finish(graph, s.total_steps)
            out.append({"method": method, "label": f"α={alpha:g}" + (f" ×{round_to}" if round_to > 1 else ""),
                        "alpha": alpha, "round_to": round_to, "graph": graph, "accuracy": acc,
                        "steps": s.total_steps, **shape})
    return out


def _search(m: _Model, s: Settings) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One search to the smallest budget; the point for each budget, fine-tuned to ``T``."""
    import hwcc

    picked: list[dict[str, Any]] = []

    def progress(kind: str, info: dict[str, Any]) -> None:
        if kind == "picked":
            p = info["proposal"]
            picked.append({"iteration": info["state"]["iteration"], "graph": p.graph,
                           "predicted_s": p.metrics["latency_s"], "search_accuracy": p.accuracy,
                           "changed": f"{p.unit.id} ({p.unit.pass_name})"})

    lowest = min(s.budgets)
    t0 = time.monotonic()
    result = hwcc.compile(m.graph, "cpu", f"{lowest * 100:g}%", data="zoo:digits", seed=SEED,
                          max_iterations=s.max_iterations, short_term_steps=s.short_term_steps, long_term_steps=0,
                          progress=progress)
    search_s = time.monotonic() - t0
    r0 = result.summary["original"]["latency_s"]
    points, unreached = [], []
    for budget in sorted(s.budgets, reverse=True):
        p = first_meeting(picked, budget * r0)
        if p is None:
            unreached.append(budget)
            continue
        if points and points[-1]["iteration"] == p["iteration"]:
            points[-1]["label"] += f", {budget * 100:g}%"
            continue
        done = p["iteration"] * s.short_term_steps
        graph, acc = m.finish(p["graph"], max(0, s.total_steps - done))
        points.append({**p, "method": "hwcc", "label": f"{budget * 100:g}%", "budget": budget, "graph": graph,
                       "accuracy": acc, "steps": max(s.total_steps, done), "predicted_ratio": p["predicted_s"] / r0,
                       **_shape(graph)})
    info = {"search_s": search_s, "iterations": len(picked), "stop": result.summary["exit_reason"],
            "predicted_original_s": r0, "budget": f"{lowest * 100:g}%", "unreached": unreached,
            "history": [{k: v for k, v in p.items() if k != "graph"} for p in picked],
            "search_steps": s.short_term_steps * len(result.summary["proposals"]),
            "warnings": result.summary["warnings"]}
    return points, info


def _model(name: str, s: Settings, target) -> dict[str, Any]:
    from hwcc.ir.onnx_io import to_proto

    t0 = time.monotonic()
    m = _Model(name)
    hwcc_points, info = _search(m, s)
    base = _multiplier(m, s)
    original = {"method": "original", "label": "input", "alpha": 1.0, "graph": m.src, "accuracy": m.accuracy0,
                "steps": 0, **_shape(m.graph)}
    every = [original] + base + hwcc_points
    got = measure([to_proto(p["graph"]).SerializeToString() for p in every], target.threads, s.rounds, s.runs)
    for i, p in enumerate(every):
        p.update(latency_s=got["latency_s"][i], speedup=got["speedup"][i], spread=got["spread"][i],
                 rounds_s=[r[i] for r in got["rounds_s"]])
        del p["graph"]
    curve = [(p["latency_s"], p["accuracy"]) for p in [original] + base]
    for p in hwcc_points:
        p["multiplier_latency_at_accuracy_s"] = latency_at_accuracy(curve, p["accuracy"])
        p["speedup_at_equal_accuracy"], p["bound"] = speedup_at_accuracy(curve, p["latency_s"], p["accuracy"])
        p["multiplier_accuracy_at_latency"] = accuracy_at_latency(curve, p["latency_s"])
    return {"model": name, "accuracy0": m.accuracy0, "original": original, "multiplier": base, "hwcc": hwcc_points,
            "search": info, "spread": {"median": float(np.median(got["spread"][1:])), "max": max(got["spread"][1:])},
            "seconds": time.monotonic() - t0}


# ---------------------------------------------------------------------- the section
def run(quick: bool, out: Path) -> dict[str, Any]:
    from hwcc.targets.base import load_target

    s = QUICK if quick else FULL
    target = load_target("cpu")
    t0 = time.monotonic()
    with one_torch_thread():
        models = [_model(name, s, target) for name in s.models]
    plots = [_plot(mod, out) for mod in models]
    data = {"settings": dataclasses.asdict(s), "models": models, "paper_speedup": PAPER_SPEEDUP,
            "threads": target.threads, "seconds": time.monotonic() - t0}
    return {"title": TITLE, "what": _what(s, target), "markdown": _markdown(models, plots), "data": data}


def _what(s: Settings, target) -> str:
    budgets = ", ".join(f"{b * 100:g} %" for b in s.budgets)
    roundings = " and ".join("⌈α·C⌉" if r == 1 else f"α·C rounded up to a multiple of {r}" for r in s.round_to)
    return (
        f"Digits models {', '.join(f'`{m}`' for m in s.models)}, BatchNormalization folded first (as `hwcc compile` "
        f"does), seed {SEED}. hwcc: one `hwcc.compile(model, 'cpu', '{min(s.budgets) * 100:g}%', data='zoo:digits', "
        f"seed={SEED}, max_iterations={s.max_iterations}, short_term_steps={s.short_term_steps}, long_term_steps=0)` "
        f"per model with the default passes ({', '.join(DEFAULT_PASSES)}), no accuracy floor; for each budget "
        f"({budgets} of the predicted latency) the first iteration's model predicted within it is a point. Width "
        f"multiplier: `prune_channels` with `ratio = 1 - α` (L2-norm filter choice, every prunable group keeps "
        f"{roundings} channels), α in {', '.join(f'{a:g}' for a in s.alphas)}, fine-tuned from the pruned "
        f"weights, not retrained from scratch. Every point of both methods has {s.total_steps} SGD steps of "
        f"fine-tuning in all (batch 32, lr 0.01, momentum 0.9, digits train split, one torch thread). Accuracy: "
        f"digits test split (359 images, one image = 0.28 points) in onnxruntime. Latency: all points of one model "
        f"(the input, the multiplier's, hwcc's) timed together in onnxruntime ({target.threads} thread, batch 1, "
        f"`ORT_ENABLE_ALL`), round-robin: {s.rounds} rounds, each timing every model {s.runs} times in turn "
        f"(`hwcc.targets.cpu.target.measure_models`, one round per call); a speed-up is the median over rounds of the "
        f"input's latency over the point's within the round, and a latency is the input's median latency over "
        f"that speed-up. This shared machine switches between two speeds about 1.8x apart, so absolute "
        f"latencies are only indicative; ratios within a round are what is compared.")


def _us(t: float | None) -> str:
    return "n/a" if t is None else f"{t * 1e6:.1f} us"


def _markdown(models: list[dict[str, Any]], plots: list[str]) -> str:
    lines = ["**Every point.** Speed-up is the input model's measured latency over the point's; *MACs* counts "
             "the multiply-accumulates left; ×8: channels rounded up to a multiple of 8.", ""]
    rows = []
    for mod in models:
        for p in [mod["original"]] + mod["multiplier"] + mod["hwcc"]:
            also = "".join(f" (= {m.split('(')[-1].rstrip(')')})" for m in p.get("also", ()))
            rows.append((f"`{mod['model']}`", p["method"].split(" (")[0], p["label"] + also, _us(p["latency_s"]),
                         f"{p['speedup']:.2f}x", f"{p['accuracy']:.2%}", fmt_count(p["macs"])))
    lines += [md_table(["model", "method", "setting", "measured latency", "speed-up", "test accuracy", "MACs"],
                       rows, "llllrrr"), ""]
    lines += ["**hwcc against the multiplier** (both roundings together: the fastest multiplier model at each "
              "accuracy). For each hwcc point: the multiplier's latency at the same test accuracy, read off its "
              "curve, and the speed-up that makes (*at least* when hwcc is more accurate than every multiplier "
              "point: the ratio is then taken at the most accurate one; *at most* when even the narrowest multiplier "
              "is more accurate), and the multiplier's accuracy at the hwcc point's latency. *Predicted* is the "
              "`cpu` target's lookup-table estimate the search worked with.", ""]
    rows = []
    for mod in models:
        for p in mod["hwcc"]:
            acc = p["multiplier_accuracy_at_latency"]
            lat = p["multiplier_latency_at_accuracy_s"]
            rows.append((f"`{mod['model']}`", p["label"], f"{1 / p['predicted_ratio']:.2f}x / {p['speedup']:.2f}x",
                         _us(p["latency_s"]), f"{p['accuracy']:.2%}", _us(lat) if lat is not None else "never",
                         _ratio(p), f"{acc:.2%}" if acc is not None else "below its fastest point"))
        for b in mod["search"]["unreached"]:
            rows.append((f"`{mod['model']}`", f"{b * 100:g}%", "not reached", "", "", "", "", ""))
    lines += [md_table(["model", "hwcc budget", "speed-up predicted / measured", "hwcc latency", "hwcc accuracy",
                        "multiplier latency at that accuracy", "hwcc speed-up at equal accuracy",
                        "multiplier accuracy at hwcc's latency"], rows, "llrlllrr"), ""]
    lines += _findings(models)
    lines += ["", *plots]
    return "\n".join(lines)


def _ratio(p: dict[str, Any]) -> str:
    return (p["bound"] + " " if p["bound"] else "") + f"{p['speedup_at_equal_accuracy']:.2f}x"


def _findings(models: list[dict[str, Any]]) -> list[str]:
    out = []
    near = [(p["speedup_at_equal_accuracy"], mod["model"], p) for mod in models for p in mod["hwcc"]
            if p["accuracy"] >= mod["accuracy0"] - FLOOR_DROP - 1e-12 and p["bound"] != "at most"]
    if near:
        sp, name, p = max(near, key=lambda b: b[0])
        verdict = ("reaches" if sp >= PAPER_SPEEDUP else "falls short of") + f" the paper's {PAPER_SPEEDUP}x"
        out.append(f"- Largest hwcc speed-up over the multiplier at equal or higher accuracy, among hwcc points "
                   f"within {FLOOR_DROP:.0%} of the input model's accuracy: **{_ratio(p)}** (`{name}`, budget "
                   f"{p['label']}, {p['accuracy']:.2%}); this {verdict}. A ratio below 1 means the width "
                   "multiplier is faster at that accuracy.")
    else:
        out.append(f"- No hwcc point stays within {FLOOR_DROP:.0%} of its input model's accuracy, so there is no "
                   f"speed-up at equal accuracy to set against the paper's {PAPER_SPEEDUP}x.")
    for mod in models:
        info = mod["search"]
        pts = ", ".join(f"{p['label']}: {_ratio(p)} at {p['accuracy']:.2%}" for p in mod["hwcc"]) or "none"
        unreached = (f"; budget(s) {', '.join(f'{b * 100:g}%' for b in info['unreached'])} not reached"
                     if info["unreached"] else "")
        low = min(info["history"], key=lambda h: h["search_accuracy"], default=None)
        fell = (f" Its accuracy after short-term fine-tuning fell to {low['search_accuracy']:.2%} at iteration "
                f"{low['iteration']} ({low['changed']}); without an accuracy floor (`max_accuracy_drop`) the search "
                "goes on from there." if low and low["search_accuracy"] < mod["accuracy0"] - 0.1 else "")
        out.append(f"- `{mod['model']}` (input {mod['accuracy0']:.2%}): hwcc against the multiplier at equal accuracy "
                   f"{pts}{unreached}. Search: {info['iterations']} iterations, {info['search_steps']} proposal "
                   f"fine-tune steps, {info['search_s']:.0f} s; stopped: {info['stop']}.{fell}")
    pairs = [(1 / p["predicted_ratio"], p["speedup"]) for mod in models for p in mod["hwcc"]]
    if pairs:
        over = float(np.median([a / b for a, b in pairs]))
        out.append(f"- hwcc's search worked with the `cpu` target's predicted latencies: for its points the "
                   f"predicted speed-up is {over:.2f}x the measured one (median over {len(pairs)} points), "
                   + ("so the search believed its changes saved more than they do here." if over > 1.1 else
                      "so the search believed its changes saved less than they do here." if over < 0.9 else
                      "so prediction and measurement agree within 10 %."))
    out.append("- Noise: the interquartile range of a speed-up's per-round values, relative to it, is "
               + "; ".join(f"`{m['model']}` {m['spread']['median']:.1%} for the median point, at most "
                           f"{m['spread']['max']:.1%}" for m in models)
               + ". Speed-ups that differ by less than that are not different; and since the other tenants of "
                 "this machine change how much larger models suffer (the shared caches), speed-ups move by more "
                 "than that from one run of this section to the next.")
    out.append("- Caveats: the search scores its proposals on the same test split the tables report (the zoo's "
               "digits have no separate validation split), which favours hwcc slightly; one test image is 0.28 "
               "points, so accuracy differences of a point or less are within noise; the multiplier is fine-tuned "
               "from the input's pruned weights, not trained from scratch at its width as MobileNet's multipliers "
               "are (the zoo's recipe is 900-1350 Adam steps per network, 3-4.5x this section's whole fine-tuning "
               "budget per point, for each of the widths: not cheap on this machine); hwcc's search prices "
               "with the `cpu` target's lookup table, which measures the kernels it lacks as it goes and keeps "
               "its entries at the speed of the slower machine phase it has seen, so the search's path, and its "
               "points, can change from one run to the next as the table fills; at 8x8 inputs much of the "
               "latency is per-kernel and per-inference overhead that no pruning removes; and onnxruntime's kernels "
               "are much slower at some channel counts (not multiples of 8) than at nearby ones, which is why some "
               "multiplier points are slower than wider ones.")
    return out


def _plot(mod: dict[str, Any], out: Path) -> str:
    from hwcc.report.svg import BLUE, GREEN, GREY, ORANGE, Chart, percent_labels, si_labels

    chart = Chart(f"{mod['model']}: test accuracy against measured CPU latency", "measured latency (onnxruntime, "
                  "batch 1)", "test accuracy", lambda t: si_labels(t, "s"), percent_labels)
    on = {id(p): {p["method"], *p.get("also", ())} for p in mod["multiplier"]}   # the curves a point lies on
    methods = sorted(set().union(*on.values()))
    series = [([mod["original"]] + [p for p in mod["multiplier"] if m in on[id(p)]], c, m)
              for m, c in zip(methods, (ORANGE, GREEN))]
    series.append(([mod["original"]] + mod["hwcc"], BLUE, "hwcc"))
    for pts, color, label in series:
        pts = sorted(pts, key=lambda p: p["latency_s"])
        xs, ys = [p["latency_s"] for p in pts], [p["accuracy"] for p in pts]
        chart.line(xs, ys, color, label)
        chart.points(xs, ys, color, [f"{p['method']} {p['label']}: {_us(p['latency_s'])}, {p['accuracy']:.2%}"
                                     for p in pts], ["" if p is mod["original"] else p["label"] for p in pts])
    chart.vline(mod["original"]["latency_s"], GREY, "input")
    name = f"width_{mod['model']}.svg"
    return save_svg(out, name, chart.render(), f"{mod['model']}: accuracy against measured latency, hwcc and "
                                               "width multiplier")
