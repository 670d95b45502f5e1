"""The NetAdapt loop (Yang et al., ECCV 2018), generic over graph, target, passes and budgets.

With ``R`` the metric a budget limits (latency, energy or size) as the target prices the
model, ``R0`` its value for the input model and ``L`` the budget's limit, iteration ``i``
asks for

    target_i = max(L, R_i − ΔR_i),      ΔR_i = r0 · R0 · d**i

(``r0`` the initial reduction, ``d`` the decay). Such a schedule can remove at most
``r0 · R0 · (1 − d**n) / (1 − d)`` in ``n`` iterations; when that is short of ``R0 − L``
the search warns and raises ``r0`` so that the schedule reaches the budget in 90 % of
the iterations allowed (:class:`hwcc.search.state.Schedule`).

For every unit (a layer or coupled group, for each pass; :mod:`hwcc.search.space`) the
smallest step whose priced result meets ``target_i`` is found in the target's tables,
among the first ``max_step_fraction`` of the unit's steps (half by default: one
iteration cannot take a layer from 32 channels to 7). Each proposal is evaluated on the
held-out set as it is; the ``finetune_top`` most promising (least accuracy lost per
resource removed) get a short-term fine-tune and are evaluated again (NetAdapt
fine-tunes every proposal; ranking first spends the fine-tuning where it can win, and
is what makes a 50-layer model affordable on two cores). The proposal kept is the
fine-tuned one losing the least accuracy per unit of resource removed,

    score = (a_i − a) / ((R_i − R) / R0)         (smallest wins; NetAdapt's reference code),

where ``a_i`` is the current accuracy. With several budgets, each iteration works on the
one exceeded most (largest ``R / L``); with an energy budget, units are visited
most-energy-first (energy-aware pruning, Yang, Chen, Sze 2017), which matters when
``max_units`` caps the proposals per iteration. If no unit can meet ``target_i``, or
every proposal would take accuracy below the floor, the step is halved (up to three
times); the halved step's proposals are then combined up to the full step where that
loses no accuracy or no more per resource than the worst of them alone, and where no unit meets
even the smallest step the units that come nearest are combined the same way
(:mod:`hwcc.search.merge`). If still none is above the floor, the current network is
fine-tuned for the long-term steps once (kept if held-out accuracy rose: the short-term
fine-tunes of several steps leave accuracy a longer one wins back) and the iteration is
tried again, before the search gives up.

Where the target runs int8 MatMuls, the loop first tries them (:mod:`hwcc.search.int8_start`).
With ``one_shot`` the loop starts from every channel group pruned at once by its
measured sensitivity (:mod:`hwcc.search.oneshot`) and refines from there.

The loop stops when every budget is met, when the best proposal would take accuracy
below the floor (``max_accuracy_drop``), or after ``max_iterations``. It always keeps
the best network found: an unmet budget still yields a model and an honest message.
The state (:class:`hwcc.search.state.SearchState`) is checkpointed after every
iteration, so a killed run resumes where it stopped; every random choice is seeded from
``(seed, iteration, unit)``, so a resumed run ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.search.config import FINETUNE_TOP, SearchConfig
from hwcc.search.int8_start import PASS as INT8_PASS
from hwcc.search.int8_start import int8_start
from hwcc.search.merge import Round, from_near_misses, together
from hwcc.search.oneshot import one_shot
from hwcc.search.space import Step, Unit, apply_step, shown, smallest_meeting, units
from hwcc.search.state import METRICS, SearchState

__all__ = ["Hooks", "Proposal", "run_loop"]


@dataclass
class Proposal:
    """One unit's best step this iteration, fine-tuned and evaluated."""

    unit: Unit
    step: Step
    graph: Graph
    metrics: dict[str, float]
    accuracy: float | None
    score: float = math.inf
    untuned: float | None = None  # accuracy before the short-term fine-tune, once tuned

    def record(self, iteration: int, picked: bool) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "layer": self.unit.id,
            "pass": self.unit.pass_name,
            "settings": dict(self.step.shown),
            **self.metrics,
            "accuracy": self.accuracy,
            "accuracy_before_finetune": self.untuned if self.untuned is not None else None,
            "finetuned": self.untuned is not None,
            "score": _finite(self.score),
            "picked": picked,
        }


@dataclass
class Hooks:
    """What the loop needs from outside: pricing, fine-tuning, evaluation, saving.

    Attributes:
        price: graph -> metrics (``latency_s``, ``energy_j``, ``size_bytes``) as the target
            prices it.
        layer_energy: graph -> node name -> energy, for most-energy-first ordering.
        finetune: ``(graph, steps, seed) -> graph``.
        accuracy: graph -> accuracy on the held-out set (None when not measured).
        checkpoint: ``(graph, state) -> None``, called after every iteration.
        event: ``(kind, info) -> None`` for progress display (see :mod:`hwcc.search.run`).
        distortion: graph -> how far its outputs are from the input model's (a continuous
            measure, for ranking sensitivities; None: rank by accuracy).
        granularity: the channel multiples the target runs fastest (see
            :func:`~hwcc.search.space.smallest_meeting`).
        importance: graph -> what a pass's data-driven criterion measures on for it
            (``SearchConfig.criterion = "activation"``); None: the criterion needs nothing.
        int8: the target runs dynamic int8 MatMuls (the int8 start may fire).
    """

    price: Callable[[Graph], dict[str, float]]
    layer_energy: Callable[[Graph], dict[str, float]]
    finetune: Callable[[Graph, int, int], Graph]
    accuracy: Callable[[Graph], float | None]
    checkpoint: Callable[[Graph, SearchState], None] = lambda g, s: None
    event: Callable[[str, dict[str, Any]], None] = lambda k, i: None
    distortion: Callable[[Graph], float] | None = None
    granularity: tuple[int, ...] = ()
    importance: Callable[[Graph], Any] | None = None
    int8: bool = False


def run_loop(graph: Graph, state: SearchState, config: SearchConfig, hooks: Hooks) -> Graph:
    """Iterate until every limit in ``state`` is met, the accuracy floor binds, or the
    iterations run out; ``state`` is updated and checkpointed after every iteration.

    Returns:
        The current (best) graph; ``state.stop`` says why the loop ended.
    """
    if config.criterion == "activation" and hooks.importance is None:
        raise HwccError(
            "the search's criterion is 'activation' and Hooks.importance is None: nothing "
            "measures the activations it ranks channels by",
            "give Hooks.importance (graph -> activation_means(graph, data), as hwcc.compile "
            "does), or SearchConfig(criterion='l2')",
        )
    sched = state.schedule
    if state.iteration == 0:
        graph = int8_start(graph, state, config, hooks)
    if config.one_shot and all(h["pass"] == INT8_PASS for h in state.history):
        graph = one_shot(graph, state, config, hooks)
    while True:
        over = state.unmet()
        if not over:
            state.stop = "every budget met"
            return graph
        i = state.iteration
        if i >= config.max_iterations:
            state.stop = f"stopped after {i} iterations (--max-iterations) with budgets unmet"
            return graph
        metric = max(over, key=over.get)
        hooks.event("iteration", {"iteration": i + 1, "metric": metric, "state": state})
        picked, below, ranked, near = None, None, [], []
        floor = state.floor(config.max_accuracy_drop)
        priced: dict[tuple[str, str, str], float | str] = {}  # this graph's steps, priced
        data = hooks.importance(graph) if hooks.importance else None
        for halving in range(4):  # a smaller step when no unit meets it, or none above the floor
            step = sched.step(state.original[metric], i) / 2**halving
            target = max(state.limits[metric], state.current[metric] - step)
            picked, ranked, near = _iterate(
                graph, state, config, hooks, metric, target, i, priced, data
            )
            if picked is not None and _below(picked, floor):
                below, picked = picked, None
                continue
            if picked is not None:
                break
        if picked is None and below is not None:
            picked = below
        full = max(state.limits[metric], state.current[metric] - step * 2**halving)
        rnd = Round(state, config, hooks, metric, full, data)
        if picked is not None and halving and not _below(picked, floor):
            picked = together(picked, ranked, rnd) or picked
        elif picked is None and near:  # no unit meets even the smallest step alone
            picked = from_near_misses(graph, near, rnd)
        taken = picked is not None and not _below(picked, floor)
        state.mark_picked(i + 1, (picked.unit.id, dict(picked.step.shown)) if taken else None)
        if picked is None:
            state.stop = (
                f"no change to any layer brings {metric} down from "
                f"{state.current[metric]:.4g} (see the rejected proposals)"
            )
            return graph
        if _below(picked, floor):
            recovered = _recover(graph, state, config, hooks)
            if recovered is not None:
                graph = recovered
                continue  # the same iteration again, from the recovered network
            state.stop = (
                f"the best proposal ({picked.unit.id}) would take accuracy to "
                f"{picked.accuracy:.2%}, below the floor {floor:.2%} (--max-accuracy-drop)"
            )
            return graph
        before = dict(state.current)
        graph = picked.graph
        state.history.append(
            {
                "iteration": i + 1,
                "layer": picked.unit.id,
                "pass": picked.unit.pass_name,
                "settings": dict(picked.step.shown),
                "metric": metric,
                "target": target,
                **{f"delta_{m}": picked.metrics[m] - before[m] for m in METRICS},
                "delta_accuracy": _delta(picked.accuracy, state.accuracy),
                "metrics": {**picked.metrics, "accuracy": picked.accuracy},
            }
        )
        state.current = dict(picked.metrics)
        state.accuracy = picked.accuracy
        state.iteration = i + 1
        hooks.checkpoint(graph, state)
        hooks.event("picked", {"proposal": picked, "state": state})


def _recover(graph: Graph, state: SearchState, config: SearchConfig, hooks: Hooks) -> Graph | None:
    """Once per iteration count, before the floor stops the search: fine-tune the current
    network for the long-term steps and keep it if held-out accuracy rose (the short-term
    fine-tunes of several pruned steps leave accuracy the network can win back). The
    recovered network, or None (already tried here, nothing to measure, or no gain)."""
    i = state.iteration
    if (
        not config.long_term_steps
        or state.accuracy is None
        or any(r["after_iteration"] == i for r in state.recoveries)
    ):
        return None
    hooks.event("recovery", {"steps": config.long_term_steps, "state": state})
    tuned = hooks.finetune(graph, config.long_term_steps, _seed(config.seed, i, 1 << 20))
    after = hooks.accuracy(tuned)
    kept = after is not None and after > state.accuracy
    state.recoveries.append(
        {
            "after_iteration": i,
            "steps": config.long_term_steps,
            "accuracy_before": state.accuracy,
            "accuracy_after": after,
            "kept": kept,
        }
    )
    if not kept:
        return None
    state.accuracy = after
    hooks.checkpoint(tuned, state)
    return tuned


def _iterate(
    graph: Graph,
    state: SearchState,
    config: SearchConfig,
    hooks: Hooks,
    metric: str,
    target: float,
    i: int,
    priced: dict[tuple[str, str, str], float | str],
    data: Any,
) -> tuple[Proposal | None, list[Proposal], list[tuple[Unit, Step, float]]]:
    """Propose for every unit, fine-tune, evaluate; the best proposal (or None), every
    proposal, best first by the pick rule, and the near misses: each unit that missed
    ``target`` but whose largest step lowers the metric, with that step and its price.
    ``data``: what the passes measure on.

    ``priced`` holds the price (or the reason it cannot be applied) of every step of
    ``graph`` tried so far, kept across the halvings of one iteration: a halved step
    asks again about the same changes to the same graph (on a detector of 233 units,
    three halvings repriced about 700 of them an iteration)."""
    todo = units(graph, config.passes)
    if metric == "energy_j":  # most energy first
        energy = hooks.layer_energy(graph)
        todo.sort(key=lambda u: -sum(energy.get(n, 0.0) for n in u.layers))
    if config.max_units:
        todo = todo[: config.max_units]
    r_now = state.current[metric]
    found: list[Proposal] = []
    near: list[tuple[Unit, Step, float]] = []
    options = config.pass_knobs()
    for j, unit in enumerate(todo):

        def at(step: Step, unit: Unit = unit) -> tuple[Graph | None, float] | str:
            key = (unit.pass_name, unit.id, repr(step.knobs))
            if key in priced:  # the graph is built again only if this step is chosen
                known = priced[key]
                return known if isinstance(known, str) else (None, known)
            g = apply_step(graph, unit, step, options, data)
            priced[key] = g if isinstance(g, str) else hooks.price(g)[metric]
            return g if isinstance(g, str) else (g, priced[key])

        steps = capped(unit.steps, config)
        got = smallest_meeting(steps, at, target, metric, shown, hooks.granularity)
        if isinstance(got, str):
            state.rejected.append(
                {"iteration": i + 1, "layer": unit.id, "pass": unit.pass_name, "reason": got}
            )
            largest = priced.get((unit.pass_name, unit.id, repr(steps[-1].knobs)))
            if isinstance(largest, float) and largest < r_now:
                near.append((unit, steps[-1], largest))
            continue
        chosen, changed, _ = got
        found.append(propose(graph, unit, chosen, changed, state, hooks, metric, data, options))
    if not found:
        return None, [], near
    # Fine-tune the most promising proposals (by their accuracy before fine-tuning), and
    # keep the one that loses the least accuracy per resource removed after it.
    ranked = sorted(found, key=lambda p: (p.score, p.metrics[metric]))
    n = FINETUNE_TOP if config.finetune_top is None else config.finetune_top
    top = ranked[:n] if n else ranked
    for k, p in enumerate(top):
        tune(p, config, hooks, _seed(config.seed, i, todo.index(p.unit)))
        p.score = _score(p, state, metric, r_now)
        hooks.event("proposal", {"proposal": p, "done": k + 1, "total": len(top)})
    # Smallest loss per resource; ties to the larger saving, then the earlier unit.
    best = min(top, key=lambda p: (p.score, p.metrics[metric]))
    state.proposals.extend(p.record(i + 1, p is best) for p in ranked)
    return best, sorted(ranked, key=lambda p: (p.score, p.metrics[metric])), near


def propose(
    graph: Graph,
    unit: Unit,
    step: Step,
    changed: Graph | None,
    state: SearchState,
    hooks: Hooks,
    metric: str,
    data: Any,
    options: dict[str, Any],
) -> Proposal:
    """``step`` of ``unit`` as a proposal, priced, evaluated and scored; ``changed`` is
    the graph it gives when already built (None: built here)."""
    if changed is None:
        changed = apply_step(graph, unit, step, options, data)
        if isinstance(changed, str):  # a pass is deterministic: this is a bug
            raise RuntimeError(f"{unit.id}: {shown(step)} applied once, refused now")
    # Fine-tuning changes values, not shapes or the zero pattern (masks keep every zero),
    # so the proposal prices as the change it came from: a cache hit, not a new pricing.
    p = Proposal(unit, step, changed, hooks.price(changed), hooks.accuracy(changed))
    p.score = _score(p, state, metric, state.current[metric])
    return p


def tune(p: Proposal, config: SearchConfig, hooks: Hooks, seed: int) -> None:
    """Fine-tune ``p`` for the short-term steps, in place; a fine-tune that lowers held-out
    accuracy is not kept (it drifts on some pretrained models: ddddocr's recogniser fell
    from 100 % to 79 % agreement)."""
    p.untuned = p.accuracy
    tuned = hooks.finetune(p.graph, config.short_term_steps, seed)
    after = hooks.accuracy(tuned)
    if after is None or p.untuned is None or after >= p.untuned:
        p.graph, p.accuracy = tuned, after


def capped(steps: tuple[Step, ...], config: SearchConfig) -> tuple[Step, ...]:
    """The first ``max_step_fraction`` of a unit's steps (smallest first): one iteration
    cannot take a layer from 32 channels to 7, whatever the schedule asks."""
    return steps[: max(1, math.ceil(len(steps) * config.max_step_fraction))]


def _score(p: Proposal, state: SearchState, metric: str, r_now: float) -> float:
    removed = (r_now - p.metrics[metric]) / state.original[metric]
    loss = 0.0 if p.accuracy is None or state.accuracy is None else state.accuracy - p.accuracy
    return loss / removed if removed > 0 else math.inf


def _below(p: Proposal, floor: float | None) -> bool:
    return floor is not None and p.accuracy is not None and p.accuracy < floor


def _seed(seed: int, iteration: int, unit: int) -> int:
    return int(np.random.SeedSequence([seed, iteration, unit]).generate_state(1)[0])


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
