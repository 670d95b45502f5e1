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

This module holds the settings and the pure pieces; the points are made and measured in
:mod:`bench._width_points`, and the page is written by :mod:`bench._width_report`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import one_torch_thread

TITLE = "hwcc against a uniform width multiplier at equal measured CPU latency"
ORDER = 20

SEED = 0
# NetAdapt (Yang et al., ECCV 2018): up to 1.7x faster than width multipliers, equal accuracy.
PAPER_SPEEDUP = 1.7
FLOOR_DROP = 0.01  # the headline counts hwcc points within a point of the input's accuracy
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


QUICK = Settings(
    models=("lenet5-digits",),
    budgets=(0.7,),
    alphas=(1.0, 0.75, 0.5),
    round_to=(1,),
    max_iterations=2,
    short_term_steps=5,
    total_steps=30,
    rounds=8,
    runs=30,
)
FULL = Settings(
    models=("lenet5-digits", "mobilenet-digits", "resnet-digits"),
    budgets=(0.75, 0.5, 0.35),
    alphas=(1.0, 0.75, 0.5, 0.35, 0.25),
    round_to=(1, 8),
    max_iterations=10,
    short_term_steps=30,
    total_steps=300,
    rounds=30,
    runs=50,
)


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


def speedup_at_accuracy(
    curve: Sequence[tuple[float, float]], latency: float, accuracy: float
) -> tuple[float, str]:
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


def by_round(
    rounds: Sequence[Sequence[float]], reference: Sequence[int] | None = None
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


def measure(
    models: Sequence[bytes],
    threads: int,
    rounds: int,
    runs: int,
    reference: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Every model timed ``runs`` times per round, round-robin, ``rounds`` rounds; see
    :func:`by_round`."""
    from hwcc.targets.cpu.target import measure_models  # hwcc only when the section runs

    table = [
        measure_models(list(models), threads, runs=runs, rounds=1, warmup=3) for _ in range(rounds)
    ]
    latency, speedup, spread = by_round(table, reference)
    return {"latency_s": latency, "speedup": speedup, "spread": spread, "rounds_s": table}


def first_meeting(points: Sequence[Mapping[str, Any]], limit: float) -> Mapping[str, Any] | None:
    """The first point (in search order) whose ``predicted_s`` is at or below ``limit``."""
    return next((p for p in points if p["predicted_s"] <= limit * (1 + 1e-12)), None)


# ---------------------------------------------------------------------- the section
def run(quick: bool, out: Path) -> dict[str, Any]:
    # The points and the page import hwcc (and torch): when the section runs, not with its pure
    # pieces.
    from bench._width_points import model
    from bench._width_report import markdown, plot
    from hwcc.targets.base import load_target  # hwcc only when the section runs

    s = QUICK if quick else FULL
    target = load_target("cpu")
    t0 = time.monotonic()
    with one_torch_thread():
        models = [model(name, s, target) for name in s.models]
    plots = [plot(mod, out) for mod in models]
    data = {
        "settings": dataclasses.asdict(s),
        "models": models,
        "paper_speedup": PAPER_SPEEDUP,
        "threads": target.threads,
        "seconds": time.monotonic() - t0,
    }
    return {
        "title": TITLE,
        "what": _what(s, target),
        "markdown": markdown(models, plots),
        "data": data,
    }


def _what(s: Settings, target) -> str:
    budgets = ", ".join(f"{b * 100:g} %" for b in s.budgets)
    roundings = " and ".join(
        "⌈α·C⌉" if r == 1 else f"α·C rounded up to a multiple of {r}" for r in s.round_to
    )
    models = ", ".join(f"`{m}`" for m in s.models)
    alphas = ", ".join(f"{a:g}" for a in s.alphas)
    return (
        f"Digits models {models}, BatchNormalization folded first (as `hwcc compile` does), seed "
        f"{SEED}. hwcc: one `hwcc.compile(model, 'cpu', '{min(s.budgets) * 100:g}%', "
        f"data='zoo:digits', seed={SEED}, max_iterations={s.max_iterations}, "
        f"short_term_steps={s.short_term_steps}, long_term_steps=0)` per model with the default "
        f"passes ({', '.join(DEFAULT_PASSES)}), no accuracy floor; for each budget ({budgets} of "
        "the predicted latency) the first iteration's model predicted within it is a point. "
        "Width multiplier: `prune_channels` with `ratio = 1 - α` (L2-norm filter choice, every "
        f"prunable group keeps {roundings} channels), α in {alphas}, fine-tuned from the pruned "
        f"weights, not retrained from scratch. Every point of both methods has {s.total_steps} "
        "SGD steps of fine-tuning in all (batch 32, lr 0.01, momentum 0.9, digits train split, "
        "one torch thread). Accuracy: digits test split (359 images, one image = 0.28 points) in "
        "onnxruntime. Latency: all points of one model (the input, the multiplier's, hwcc's) "
        f"timed together in onnxruntime ({target.threads} thread, batch 1, `ORT_ENABLE_ALL`), "
        f"round-robin: {s.rounds} rounds, each timing every model {s.runs} times in turn "
        "(`hwcc.targets.cpu.target.measure_models`, one round per call); a speed-up is the "
        "median over rounds of the input's latency over the point's within the round, and a "
        "latency is the input's median latency over that speed-up. This shared machine switches "
        "between two speeds about 1.8x apart, so absolute latencies are only indicative; ratios "
        "within a round are what is compared."
    )
