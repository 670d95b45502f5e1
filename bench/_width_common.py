"""width's constants, settings type and pure pieces, shared with its points and its page.

Imported by :mod:`bench.width`, :mod:`bench._width_points` and :mod:`bench._width_report`
(never the reverse); hwcc only inside :func:`measure`, so the tests import the pure pieces
(curve reading, round-robin timing) without running anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SEED = 0
# NetAdapt (Yang et al., ECCV 2018): up to 1.7x faster than width multipliers, equal accuracy.
PAPER_SPEEDUP = 1.7
FLOOR_DROP = 0.01  # the headline counts hwcc points within a point of the input's accuracy
DEFAULT_PASSES = ("prune_channels", "prune_weights", "low_rank")
# Restricts the section to some of its models (comma-separated); the others are carried over.
MODELS_ENV = "HWCC_BENCH_WIDTH_MODELS"
# A bundled data set's test split: its size, so a table can say what one sample is worth.
TEST_SAMPLES = {"zoo:digits": 359, "zoo:glyphs": 1000}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much is run.

    Attributes:
        models: trained zoo models, each run on its own bundled data set (:func:`data_of`).
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
        peer_ratios: Torch-Pruning's ``pruning_ratio`` for its points (:mod:`bench.peers`),
            each with its magnitude and its global pruning; none without Torch-Pruning.
        optimizer: the fine-tuning's optimizer for every point (:func:`hwcc.train.finetune`).
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
    peer_ratios: tuple[float, ...] = ()
    optimizer: str = "sgd"


# ---------------------------------------------------------------------- pure pieces
def data_of(model: str) -> str:
    """The bundled data set a trained zoo model was trained on: ``zoo:glyphs`` for the
    ``-glyphs`` models, ``zoo:digits`` for the others."""
    return "zoo:glyphs" if model.endswith("-glyphs") else "zoo:digits"


def chosen_models(
    models: Sequence[str], wanted: str | None, env: str = MODELS_ENV
) -> tuple[str, ...]:
    """The models of ``models`` named in ``wanted`` (comma-separated, the value of the
    environment variable ``env``), in ``models``' order; all of them when ``wanted`` is
    empty or None.

    Raises:
        ValueError: ``wanted`` names a model the settings do not run.
    """
    names = [n.strip() for n in (wanted or "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(models))
    if unknown:
        raise ValueError(f"{env} names {', '.join(unknown)}; models: {', '.join(models)}")
    return tuple(m for m in models if not names or m in names)


def merge_models(
    earlier: Sequence[Mapping[str, Any]], ran: Sequence[Mapping[str, Any]], order: Sequence[str]
) -> list[Mapping[str, Any]]:
    """Each model's result from ``ran``, else from ``earlier`` (a previous run's), in ``order``;
    a model in neither is left out."""
    by_name = {m["model"]: m for m in earlier}
    by_name.update({m["model"]: m for m in ran})
    return [by_name[n] for n in order if n in by_name]


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


def time_points(
    points: Sequence[dict[str, Any]], threads: int, rounds: int, runs: int
) -> dict[str, Any]:
    """:func:`measure` each point's ``graph`` together, write its ``latency_s``,
    ``speedup``, ``spread`` and ``rounds_s`` into it, and drop the graph; the measurement."""
    from hwcc.ir.onnx_io import to_proto  # hwcc only when the section runs

    got = measure([to_proto(p["graph"]).SerializeToString() for p in points], threads, rounds, runs)
    for i, p in enumerate(points):
        p.update(
            latency_s=got["latency_s"][i],
            speedup=got["speedup"][i],
            spread=got["spread"][i],
            rounds_s=[r[i] for r in got["rounds_s"]],
        )
        del p["graph"]
    return got


def first_meeting(points: Sequence[Mapping[str, Any]], limit: float) -> Mapping[str, Any] | None:
    """The first point (in search order) whose ``predicted_s`` is at or below ``limit``."""
    return next((p for p in points if p["predicted_s"] <= limit * (1 + 1e-12)), None)
