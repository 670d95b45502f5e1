"""A whole search: the NetAdapt loop, the long-term fine-tune, and, where the target's
device is this machine, the measurement that checks the prediction.

On a measured target (:attr:`hwcc.targets.base.Target.measures`) the final model is timed
beside the input model (:meth:`~hwcc.targets.base.Target.measure_latency`), ``REPEATS``
times independently, and the least favourable repeat (the largest final / input ratio)
is the one that counts: two measurements of the same pair differ by 1 to 2 % on a
shared machine, and a model measured at 0.70x once was measured at 0.71x the next time.
A relative latency budget is held against the measured input (``50%`` of its measured
latency), an absolute one as it is. If the measurement misses a latency budget that the
prediction met, the search's limit is tightened by the ratio, less the spread of the
check's repeats (:func:`_go_back`, :meth:`SearchState.tighten`), and the loop goes on, at
most ``honesty_rounds`` times. The latency comes from the
structure, not the weights, so the loop's result is timed before the long-term fine-tune
too, as many times as after it: a miss there goes back to work without paying for the
fine-tune. (Timed once, ddddocr's detector passed at iteration 13 and then missed at
0.73x, least favourable of three, after a 629-step fine-tune of the same structure.)
A miss after the long-term fine-tune is a miss of the structure, not of the weights: the
loop goes on from the fine-tuned weights, and the next long-term fine-tune runs the share
of ``long_term_steps`` that the latency removed since the last one is of all the latency
removed (at least the short-term steps): ddddocr's detector missed by 0.16 % after one,
the loop took one more unit (1.1 of 28.6 ms removed), and the second long-term
fine-tune, all 629 steps again, was 2.3 of its 15.7 minutes.

Progress is reported as ``event(kind, info)``: ``iteration``, ``proposal``, ``picked``
(from the loop), ``warning``, ``long_term``; ``info["state"]`` is the live state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hwcc.ir import Graph
from hwcc.search.budget import Budget
from hwcc.search.config import SearchConfig
from hwcc.search.loop import Hooks, run_loop
from hwcc.search.state import SearchState

__all__ = [
    "REPEATS",
    "Finish",
    "Measured",
    "Outcome",
    "long_term_seed",
    "long_term_steps_now",
    "search",
]

REPEATS = 3
"""Independent side-by-side measurements of the final model; the least favourable counts."""
MOST_AIM = 0.1
"""The most a measured miss lowers the search's aim by, beyond the miss itself."""


@dataclass
class Finish:
    """How a search ends, from outside: the long-term fine-tune and the legal form.

    Attributes:
        finetune: ``(graph, steps, seed) -> graph``, the long-term fine-tune.
        legalize: the graph in the target's legal form.
        price: the final graph's metrics, priced as it is.
    """

    finetune: Callable[[Graph, int, int], Graph]
    legalize: Callable[[Graph], Graph]
    price: Callable[[Graph], dict[str, float]]


def long_term_seed(seed: int, rounds: int) -> int:
    """The seed of the long-term fine-tune after ``rounds`` earlier measurement rounds."""
    return seed + 1_000_003 * (rounds + 1)


def _tuned_if_better(
    graph: Graph,
    before: float | None,
    finetune: Callable[[Graph, int], Graph],
    accuracy: Callable[[Graph], float | None],
    seed: int,
) -> tuple[Graph, float | None]:
    """The long-term fine-tune of ``graph`` (whose held-out accuracy, already measured, is
    ``before``) and its accuracy, unless it leaves that accuracy lower (a fine-tune can
    drift: a distilled sequence model lost 94 points in 200 steps); then ``graph`` as it
    was and ``before``."""
    tuned = finetune(graph, seed)
    if tuned is graph:
        return graph, before
    after = accuracy(tuned)
    if before is not None and after is not None and after < before:
        return graph, before
    return tuned, after


def long_term_steps_now(state: SearchState, config: SearchConfig) -> int:
    """The steps of the next long-term fine-tune: all of ``config.long_term_steps``, or,
    once the loop has gone on from an earlier one's weights (a miss measured after it),
    the share of them that the latency removed since is of all the latency removed, at
    least ``config.short_term_steps``."""
    full = config.long_term_steps or 0
    last = next((r for r in reversed(state.rounds) if r["long_term"] == "after"), None)
    if last is None or not full:
        return full
    now, start = state.current["latency_s"], state.original["latency_s"]
    share = max(0.0, last["predicted_s"] - now) / max(start - now, 1e-30)
    return min(full, max(config.short_term_steps, math.ceil(full * share)))


@dataclass(frozen=True)
class Measured:
    """The input and final models timed side by side on the device.

    Attributes:
        original_latency_s: the input model's measured latency.
        final_latency_s: the final model's.
        limits_s: each latency budget's limit against the measurement.
        budget_met: every latency budget met as measured.
        ratios: final / input latency of every repeat, in the order measured (the two
            latencies above are the repeat with the largest).
    """

    original_latency_s: float
    final_latency_s: float
    limits_s: tuple[float, ...]
    budget_met: bool
    ratios: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "original_latency_s": self.original_latency_s,
            "final_latency_s": self.final_latency_s,
        }
        if self.limits_s:
            out["limits_s"] = list(self.limits_s)
        out["budget_met"] = self.budget_met
        if self.ratios:
            out["ratios"] = list(self.ratios)
        return out


@dataclass(frozen=True)
class Outcome:
    """What a search returns: the best model, in the target's legal form, and its numbers."""

    graph: Graph
    metrics: dict[str, float]
    measured: Measured | None


def search(
    graph: Graph,
    state: SearchState,
    config: SearchConfig,
    hooks: Hooks,
    finish: Finish,
    *,
    target: Any,
    source: Graph,
    budgets: Sequence[Budget],
    honesty_rounds: int = 3,
) -> Outcome:
    """Run the loop from ``state`` to its end, fine-tune and legalize the result; on a
    measured target, check it on the device and go back to work while the measurement
    misses what the prediction met. ``budgets`` are resolved (metric and limit set)."""
    while True:
        graph = run_loop(graph, state, config, hooks)
        if target.measures and _may_go_back(state, honesty_rounds):
            # the structure decides the latency, not the weights: time it before paying for
            # the long-term fine-tune, as the final check will (a miss here would miss there),
            # less the spread of its repeats: the final check times the same structure
            # again, and one within the noise of the limit would pass here and miss there
            legal = finish.legalize(graph)
            _, miss = _measure(target, source, legal, budgets, margin=True)
            if miss is not None:
                _go_back(graph, state, hooks, miss, finish.price(legal)["latency_s"], "before")
                continue
        steps = long_term_steps_now(state, config)
        hooks.event("long_term", {"steps": steps})
        seed = long_term_seed(config.seed, len(state.rounds))
        tuned, accuracy = _tuned_if_better(
            graph, state.accuracy, lambda g, s: finish.finetune(g, steps, s), hooks.accuracy, seed
        )
        final = finish.legalize(tuned)
        metrics = finish.price(final)
        measured, miss = (
            _measure(target, source, final, budgets) if target.measures else (None, None)
        )
        if miss is None or not _may_go_back(state, honesty_rounds):
            return Outcome(final, metrics, measured)
        graph, state.accuracy = tuned, accuracy  # the structure missed: keep the weights
        _go_back(graph, state, hooks, miss, metrics["latency_s"], "after")


def _may_go_back(state: SearchState, honesty_rounds: int) -> bool:
    """Whether a missed measurement may still send the search back to work: every budget
    met as predicted, and rounds left."""
    return not state.unmet() and len(state.rounds) < honesty_rounds


def _go_back(
    graph: Graph,
    state: SearchState,
    hooks: Hooks,
    miss: tuple[float, float, float],
    predicted: float,
    long_term: str,
) -> None:
    """Tighten the search's latency limit by the measured miss ``(measured, limit, spread)``,
    record the round (``long_term``: whether it was measured ``"before"`` or ``"after"`` the
    long-term fine-tune), warn, and checkpoint ``graph`` for the loop to go on from.

    The new limit is the prediction scaled to the measured limit, less the relative spread
    of the check's repeats (and the 2 % :meth:`SearchState.tighten` takes): a structure
    aimed at the limit itself lands within the noise of it, and the next check misses
    again (ddddocr's detector: three rounds in a row, 50.4, 49.0 and 49.0 ms measured
    against 48.9, 48.7 and 46.5 ms, an iteration each). At most :data:`MOST_AIM` is taken
    off: a spread larger than that is a disturbed measurement, not the noise of a limit,
    and aiming below it by that much would prune for nothing."""
    got, limit, spread = miss
    new = state.tighten("latency_s", predicted * limit / got * (1 - min(spread, MOST_AIM)))
    state.rounds.append(
        {
            "after_iteration": state.iteration,
            "long_term": long_term,
            "measured_s": got,
            "measured_limit_s": limit,
            "measured_spread": spread,
            "predicted_s": predicted,
            "new_search_limit_s": new,
        }
    )
    hooks.event(
        "warning",
        {
            "message": (
                f"measured {got * 1e6:.1f} us misses the latency budget "
                f"({limit * 1e6:.1f} us) that the prediction ({predicted * 1e6:.1f} us) met; "
                f"the search goes on with a predicted limit of {new * 1e6:.1f} us"
            )
        },
    )
    hooks.checkpoint(graph, state)


def _measure(
    target: Any,
    source: Graph,
    final: Graph,
    budgets: Sequence[Budget],
    repeats: int = REPEATS,
    margin: bool = False,
) -> tuple[Measured, tuple[float, float, float] | None]:
    """The two models timed ``repeats`` times, and the first latency budget the least
    favourable repeat misses (``(measured, limit, spread)``, the spread of the repeats
    relative to the least favourable) or None: for a relative budget the repeat of the
    largest ratio, for an absolute one the slowest final model. With
    ``margin`` each limit is lowered by the spread of the repeats (largest less smallest
    ratio, or final time; at most half the limit): ddddocr's detector passed the check
    before its long-term fine-tune and missed the one after it, on the same structure,
    at 0.701x, and the second long-term fine-tune that miss cost took 2.5 minutes."""
    pairs = [target.measure_latency([source, final]) for _ in range(repeats)]
    ratios = tuple(t1 / t0 for t0, t1 in pairs)
    t0, t1 = pairs[ratios.index(max(ratios))]
    spread = (max(ratios) - min(ratios), max(p[1] for p in pairs) - min(p[1] for p in pairs))
    limits, miss = [], None
    for b in budgets:
        if b.metric != "latency_s":
            continue
        # relative: against the input measured beside it
        if b.is_relative:
            got, limit = t1, t0 * (b.fraction - margin * min(spread[0], b.fraction / 2))
            relative = spread[0] / max(ratios)
        else:
            got, limit = max(p[1] for p in pairs), b.limit - margin * min(spread[1], b.limit / 2)
            relative = spread[1] / got
        limits.append(limit)
        if got > limit and miss is None:
            miss = (got, limit, relative)
    return Measured(t0, t1, tuple(limits), miss is None, ratios), miss
