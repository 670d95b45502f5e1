"""A one-shot start for the NetAdapt loop: every unit pruned at once, by its sensitivity.

NetAdapt changes one unit per iteration. On a model of 50 layers where no single layer
holds a tenth of the latency, each iteration can only ask for a small step, and reaching
a 70 % budget takes dozens of iterations of fine-tuned proposals: hours on two cores
(smart-turn's encoder, 33.8 ms to a 23.7 ms budget: 1.5 % per iteration, 3 minutes each).
Tools that allocate a whole budget at once (AMC, HALP, AIMET's channel pruning, MCT)
start from each layer's sensitivity instead. This module does that, then hands the
result to the loop, which refines it with NetAdapt's single-unit steps.

1. **Sensitivity.** For every channel group (``prune_channels`` units, whose removals
   add up across groups) and a few fractions of its steps (an eighth to a half of its
   channels, capped by ``max_step_fraction``), the group is pruned alone and the result
   priced and evaluated on the held-out set, without fine-tuning: the resource saved,
   the accuracy lost and the output distortion (``Σ (y − y₀)² / Σ y₀²`` against the
   input model, when the caller gives it: accuracy on a few held-out samples moves in
   coarse steps, 7.7 % per decision on 13, and cannot rank layers).
2. **Allocation** by bisection on a common sensitivity level ``λ``: every unit takes its
   largest level whose distortion is at most ``λ`` (without a distortion: whose accuracy
   lost is at most ``λ`` and at most the floor's drop), and the smallest ``λ`` whose
   *combined* model (all those steps applied together, priced as a whole) meets the
   target is chosen. Savings are not assumed to add: each candidate combination is
   priced.
3. **Acceptance.** The combination is fine-tuned (twice the short-term steps: it is one
   proposal, if a large one; a fine-tune that lowers accuracy is not kept) and evaluated.
   It is kept when it stays above the accuracy floor; otherwise the target is moved back
   towards the current model (half, then a quarter of the way to the budget) and the
   allocation is tried again. If none holds, the loop starts from the input model as
   before and says so.

The first target is the budget itself: if the combination meets it with accuracy above
the floor, the loop has nothing left to do but the long-term fine-tune. The step is
recorded as iteration 1 in the history, with each unit's setting, so that a resumed run
(which restarts after the last completed iteration) does not repeat it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwcc.ir import Graph
from hwcc.search.config import SearchConfig
from hwcc.search.space import Step, Unit, apply_step, shown, units
from hwcc.search.state import METRICS, SearchState

if TYPE_CHECKING:
    from hwcc.search.loop import Hooks

__all__ = ["LEVELS", "one_shot"]

LEVELS = (0.125, 0.25, 0.375, 0.5)
"""Fractions of a unit's steps measured by the sensitivity pass (capped by
``max_step_fraction``)."""

_PASS = "prune_channels"


@dataclass(frozen=True)
class Level:
    """One unit pruned alone by one step: what it saves and what it loses."""

    unit: Unit
    step: Step
    saved: float  # resource removed, in the metric's units
    lost: float  # accuracy lost, without fine-tuning
    rank: float  # what the allocation levels on: the output distortion, or ``lost``


def one_shot(graph: Graph, state: SearchState, config: SearchConfig, hooks: Hooks) -> Graph:
    """Start the search with every channel group pruned by its sensitivity (module doc).

    Returns the graph the loop continues from; ``state`` records the step as an
    iteration when one is kept, and a warning when none could be.
    """
    over = state.unmet()
    if not over or state.accuracy is None or _PASS not in config.passes:
        return graph
    metric = max(over, key=over.get)
    hooks.event("one_shot", {"stage": "sensitivity", "state": state})
    # one measurement of the input for a data-driven criterion: the allocation applies
    # its steps one after another, each choosing channels by the input's activations
    measured = (config.pass_knobs(), hooks.importance(graph) if hooks.importance else None)
    levels = _sensitivity(graph, state, config, hooks, metric, measured)
    if not levels:
        return graph
    floor = state.floor(config.max_accuracy_drop)
    # without a distortion to rank by, a level that alone loses more than the floor allows
    # is out; with one, nothing is excluded before fine-tuning (a pretrained recogniser
    # loses more than 10 points to an eighth of almost any layer, and recovers most of it)
    allowed = config.max_accuracy_drop if config.max_accuracy_drop is not None else math.inf
    if hooks.distortion is not None:
        allowed = math.inf
    now = state.current[metric]
    for share in (1.0, 0.5, 0.25):
        target = now - share * (now - state.limits[metric])
        chosen = _allocate(graph, levels, hooks, metric, target, allowed, measured)
        if chosen is None:
            continue
        combined, steps = chosen
        hooks.event("one_shot", {"stage": "fine-tune", "state": state, "units": len(steps)})
        untuned = hooks.accuracy(combined)
        tuned = hooks.finetune(combined, 2 * config.short_term_steps, config.seed)
        after = hooks.accuracy(tuned)
        kept = after is None or untuned is None or after >= untuned
        combined, accuracy = (tuned, after) if kept else (combined, untuned)
        tried = {"share": share, "groups": len(steps), "untuned": untuned, "tuned": after}
        hooks.event("one_shot", {"stage": "tried", "state": state, **tried})
        if floor is not None and accuracy is not None and accuracy < floor:
            state.rejected.append(
                {
                    "iteration": 1,
                    "layer": f"one-shot ({len(steps)} groups)",
                    "pass": _PASS,
                    "reason": f"took accuracy to {untuned:.2%}, {after:.2%} after fine-tuning, "
                    f"below the floor {floor:.2%}, at {share:.0%} of the way to the budget",
                }
            )
            continue
        return _keep(combined, steps, accuracy, state, hooks, metric, target)
    state.warnings.append(
        "the one-shot start found no allocation above the accuracy floor; the search "
        "started from the input model"
    )
    return graph


def _sensitivity(
    graph: Graph,
    state: SearchState,
    config: SearchConfig,
    hooks: Hooks,
    metric: str,
    measured: tuple[dict, Any],
) -> list[list[Level]]:
    """Per unit, its levels that save something, smallest first."""
    out = []
    now, acc = state.current[metric], state.accuracy
    todo = units(graph, [_PASS])
    for j, unit in enumerate(todo):
        hooks.event("one_shot", {"stage": "sensitivity", "done": j, "total": len(todo)})
        steps = unit.steps[: max(1, math.ceil(len(unit.steps) * config.max_step_fraction))]
        picks = sorted({max(0, round(f * len(unit.steps)) - 1) for f in LEVELS})
        mine = []
        for i in (i for i in picks if i < len(steps)):
            g = apply_step(graph, unit, steps[i], *measured)
            if isinstance(g, str):
                continue
            saved = now - hooks.price(g)[metric]
            a = hooks.accuracy(g)
            if saved > 0 and a is not None:
                lost = max(0.0, acc - a)
                rank = hooks.distortion(g) if hooks.distortion is not None else lost
                mine.append(Level(unit, steps[i], saved, lost, rank))
        if mine:
            out.append(mine)
    return out


def _allocate(
    graph: Graph,
    levels: list[list[Level]],
    hooks: Hooks,
    metric: str,
    target: float,
    allowed: float,
    measured: tuple[dict, Any],
) -> tuple[Graph, list[Level]] | None:
    """The combination at the smallest sensitivity level whose price meets ``target``
    (or the largest allowed one, when none does); None if no unit has a level."""
    lams = sorted({lv.rank for mine in levels for lv in mine if lv.lost <= allowed})
    if not lams:
        return None
    cache: dict[float, tuple[Graph, list[Level], float] | None] = {}

    def at(lam: float) -> tuple[Graph, list[Level], float] | None:
        if lam not in cache:
            steps = [
                max(
                    (lv for lv in mine if lv.rank <= lam and lv.lost <= allowed),
                    key=lambda lv: lv.saved,
                    default=None,
                )
                for mine in levels
            ]
            steps = [lv for lv in steps if lv is not None]
            g = graph
            for lv in steps:
                applied = apply_step(g, lv.unit, lv.step, *measured)
                g = g if isinstance(applied, str) else applied
            cache[lam] = (g, steps, hooks.price(g)[metric]) if steps else None
        return cache[lam]

    lo, hi = 0, len(lams) - 1
    top = at(lams[hi])
    if top is None:
        return None
    if top[2] > target:  # even every allowed level misses: take them all, the loop goes on
        return top[0], top[1]
    while lo < hi:
        mid = (lo + hi) // 2
        r = at(lams[mid])
        if r is not None and r[2] <= target:
            hi = mid
        else:
            lo = mid + 1
    g, steps, _ = at(lams[hi])  # type: ignore[misc]
    return g, steps


def _keep(
    graph: Graph,
    steps: list[Level],
    accuracy: float | None,
    state: SearchState,
    hooks: Hooks,
    metric: str,
    target: float,
) -> Graph:
    before = dict(state.current)
    metrics = hooks.price(graph)
    settings: dict[str, Any] = {lv.unit.id: shown(lv.step) for lv in steps}
    state.history.append(
        {
            "iteration": state.iteration + 1,
            "layer": f"one-shot ({len(steps)} groups)",
            "pass": _PASS,
            "settings": settings,
            "metric": metric,
            "target": target,
            **{f"delta_{m}": metrics[m] - before[m] for m in METRICS},
            "delta_accuracy": None if accuracy is None else accuracy - state.accuracy,
            "metrics": {**metrics, "accuracy": accuracy},
            "sensitivity": [
                {"layer": lv.unit.id, "saved": lv.saved, "lost": lv.lost, "rank": lv.rank}
                for lv in steps
            ],
        }
    )
    state.current = dict(metrics)
    state.accuracy = accuracy
    state.iteration += 1
    hooks.checkpoint(graph, state)
    from hwcc.search.loop import Proposal  # the loop imports this module

    unit = Unit(
        state.history[-1]["layer"],
        _PASS,
        tuple(n for lv in steps for n in lv.unit.layers),
        (),
    )
    picked = Proposal(unit, Step({}, {"groups": len(steps)}), graph, metrics, accuracy)
    hooks.event("picked", {"proposal": picked, "state": state})
    return graph
