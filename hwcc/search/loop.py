"""The NetAdapt loop (Yang et al., ECCV 2018), generic over graph, target, passes and budgets.

With ``R`` the metric a budget limits (latency, energy or size) as the target prices the
model, ``R0`` its value for the input model and ``L`` the budget's limit, iteration ``i``
asks for

    target_i = max(L, R_i − ΔR_i),      ΔR_i = r0 · R0 · d**i

(``r0`` the initial reduction, ``d`` the decay). Such a schedule can remove at most
``r0 · R0 · (1 − d**n) / (1 − d)`` in ``n`` iterations; when that is short of ``R0 − L``
the search warns and raises ``r0`` so that the schedule reaches the budget in 90 % of
the iterations allowed.

For every unit (a layer or coupled group, for each pass; :mod:`hwcc.search.space`) the
smallest amount whose priced result meets ``target_i`` is found in the target's tables,
the proposal gets a short-term fine-tune (:mod:`hwcc.train.finetune`) and is evaluated on the
held-out set (:mod:`hwcc.data.evaluate`). The proposal kept is the one losing the least
accuracy per unit of resource removed,

    score = (a_i − a) / ((R_i − R) / R0)         (smallest wins; NetAdapt's reference code),

where ``a_i`` is the current accuracy. With several budgets, each iteration works on the
one exceeded most (largest ``R / L``); with an energy budget, units are visited
most-energy-first (energy-aware pruning, Yang, Chen, Sze 2017), which matters when
``max_units`` caps the proposals per iteration. If no unit can meet ``target_i``, the
step is halved (up to three times) before the search gives up.

The loop stops when every budget is met, when the best proposal would take accuracy
below the floor (``max_accuracy_drop``), or after ``max_iterations``. It always keeps
the best network found: an unmet budget still yields a model and an honest message.
The search state is a plain dict written after every iteration (the graph as ONNX beside
it), so a killed run resumes where it stopped; every random choice is seeded from
``(seed, iteration, unit)``, so a resumed run ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc.search.space import Unit, smallest_meeting, units
from hwcc.ir import Graph

__all__ = ["SearchConfig", "Schedule", "Proposal", "run_loop", "METRICS"]

METRICS = ("latency_s", "energy_j", "size_bytes")
DEFAULT_PASSES = ("prune_channels", "prune_weights", "low_rank")


@dataclass(frozen=True)
class SearchConfig:
    """Options of the search; every one is recorded in the artifact.

    Attributes:
        passes: the passes that propose changes (see :data:`hwcc.search.space.PROPOSERS`).
        initial_reduction: ``r0``, the first step as a fraction of ``R0``.
        decay: ``d``, each step is ``d`` times the previous one.
        max_iterations: the most iterations.
        max_units: propose for at most this many units per iteration (0: all).
        short_term_steps: fine-tune steps for each proposal.
        long_term_steps: fine-tune steps after the loop.
        lr: fine-tune learning rate (None: the fine-tuner's default for the optimizer).
        optimizer: ``adam`` (default: it recovered heavily pruned proposals where SGD at
            0.01 diverged, e.g. resnet-digits' stem halved: 77 % against 10 % after 30 steps)
            or ``sgd``.
        batch_size: fine-tune batch size.
        max_accuracy_drop: stop before accuracy falls more than this below the input
            model's (a fraction, 0.01 = one point); None: no floor.
        seed: seeds every random choice.
    """

    passes: tuple[str, ...] = DEFAULT_PASSES
    initial_reduction: float = 0.1
    decay: float = 0.96
    max_iterations: int = 40
    max_units: int = 0
    short_term_steps: int = 30
    long_term_steps: int = 200
    lr: float | None = None
    optimizer: str = "adam"
    batch_size: int = 32
    max_accuracy_drop: float | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class Schedule:
    """``ΔR_i = r0 · R0 · d**i`` and whether it was adapted."""

    r0: float
    decay: float
    warning: str | None = None

    @classmethod
    def fit(cls, r0: float, decay: float, needed: float, iterations: int) -> Schedule:
        """The schedule, with ``r0`` raised if it cannot remove ``needed`` (a fraction of R0)."""
        reach = r0 * (1 - decay ** iterations) / (1 - decay) if decay < 1 else r0 * iterations
        if needed <= reach:
            return cls(r0, decay)
        new = needed / (0.9 * reach / r0)
        new = min(new, needed)
        return cls(new, decay, f"the schedule (initial reduction {r0:g}, decay {decay:g}) removes at most "
                               f"{reach:.0%} of the input's cost in {iterations} iterations, the budget needs "
                               f"{needed:.0%}: initial reduction raised to {new:.3g}")

    def step(self, r_original: float, i: int) -> float:
        return self.r0 * r_original * self.decay ** i

    def iterations_for(self, needed: float, most: int = 1000) -> int:
        """Iterations until the steps add up to ``needed`` (a fraction of R0), at most ``most``."""
        total, i = 0.0, 0
        while total < needed and i < most:
            total += self.r0 * self.decay ** i
            i += 1
        return max(1, i)


def needed_reduction(original: Mapping[str, float], limits: Mapping[str, float]) -> float:
    """The largest share of its input value that a budgeted metric must lose."""
    return max(((original[m] - lim) / original[m] for m, lim in limits.items() if original[m] > 0), default=0.0)


@dataclass
class Proposal:
    """One unit's best amount this iteration, fine-tuned and evaluated."""

    unit: Unit
    amount: Any
    graph: Graph
    metrics: dict[str, float]
    accuracy: float | None
    score: float = math.inf

    def record(self, iteration: int, picked: bool) -> dict[str, Any]:
        return {"iteration": iteration, "layer": self.unit.id, "pass": self.unit.pass_name,
                "settings": self.unit.settings(self.amount), **self.metrics,
                "accuracy": self.accuracy, "score": _finite(self.score), "picked": picked}


@dataclass
class Hooks:
    """What the loop needs from outside: pricing, fine-tuning, evaluation, saving.

    Attributes:
        price: graph -> metrics (``latency_s``, ``energy_j``, ``size_bytes``) as the target prices it.
        layer_energy: graph -> node name -> energy, for most-energy-first ordering.
        finetune: ``(graph, steps, seed) -> graph``.
        accuracy: graph -> accuracy on the held-out set (None when not measured).
        checkpoint: ``(graph, state) -> None``, called after every iteration.
        event: ``(kind, info) -> None`` for progress display.
    """

    price: Callable[[Graph], dict[str, float]]
    layer_energy: Callable[[Graph], dict[str, float]]
    finetune: Callable[[Graph, int, int], Graph]
    accuracy: Callable[[Graph], float | None]
    checkpoint: Callable[[Graph, dict[str, Any]], None] = lambda g, s: None
    event: Callable[[str, dict[str, Any]], None] = lambda k, i: None


def new_state(graph: Graph, limits: Mapping[str, float], original: Mapping[str, float],
              accuracy: float | None, config: SearchConfig) -> dict[str, Any]:
    """The search state before the first iteration (plain JSON values)."""
    needed = needed_reduction(original, limits)
    sched = Schedule.fit(config.initial_reduction, config.decay, max(0.0, needed), config.max_iterations)
    return {"iteration": 0, "limits": dict(limits), "original": dict(original), "current": dict(original),
            "accuracy0": accuracy, "accuracy": accuracy, "schedule": {"r0": sched.r0, "decay": sched.decay},
            "warnings": [sched.warning] if sched.warning else [], "history": [], "proposals": [],
            "rejected": [], "stop": None}


def unmet(state: Mapping[str, Any]) -> dict[str, float]:
    """Metric -> how far over its limit (``R / L``) for each budget not met yet."""
    return {m: state["current"][m] / lim for m, lim in state["limits"].items() if state["current"][m] > lim}


def run_loop(graph: Graph, state: dict[str, Any], config: SearchConfig, hooks: Hooks) -> tuple[Graph, dict[str, Any]]:
    """Iterate until every limit in ``state`` is met, the accuracy floor binds, or the
    iterations run out; ``state`` is updated in place and checkpointed after every iteration.

    Returns:
        The current (best) graph and the state; ``state["stop"]`` says why the loop ended.
    """
    sched = Schedule(state["schedule"]["r0"], state["schedule"]["decay"])
    while True:
        over = unmet(state)
        if not over:
            state["stop"] = "every budget met"
            return graph, state
        i = state["iteration"]
        if i >= config.max_iterations:
            state["stop"] = f"stopped after {i} iterations (--max-iterations) with budgets unmet"
            return graph, state
        metric = max(over, key=over.get)
        hooks.event("iteration", {"iteration": i + 1, "metric": metric, "state": state})
        picked = None
        for halving in range(4):
            step = sched.step(state["original"][metric], i) / 2 ** halving
            target = max(state["limits"][metric], state["current"][metric] - step)
            picked = _iterate(graph, state, config, hooks, metric, target, i)
            if picked is not None:
                break
        if picked is None:
            state["stop"] = (f"no change to any layer brings {metric} down from "
                             f"{state['current'][metric]:.4g} (see the rejected proposals)")
            return graph, state
        floor = _floor(state, config)
        if floor is not None and picked.accuracy is not None and picked.accuracy < floor:
            state["stop"] = (f"the best proposal ({picked.unit.id}) would take accuracy to {picked.accuracy:.2%}, "
                             f"below the floor {floor:.2%} (--max-accuracy-drop)")
            return graph, state
        before = dict(state["current"])
        graph = picked.graph
        state["history"].append({
            "iteration": i + 1, "layer": picked.unit.id, "pass": picked.unit.pass_name,
            "settings": picked.unit.settings(picked.amount), "metric": metric, "target": target,
            **{f"delta_{m}": picked.metrics[m] - before[m] for m in METRICS},
            "delta_accuracy": _delta(picked.accuracy, state["accuracy"]),
            "metrics": {**picked.metrics, "accuracy": picked.accuracy}})
        state["current"] = dict(picked.metrics)
        state["accuracy"] = picked.accuracy
        state["iteration"] = i + 1
        hooks.checkpoint(graph, state)
        hooks.event("picked", {"proposal": picked, "state": state})


def _iterate(graph: Graph, state: dict[str, Any], config: SearchConfig, hooks: Hooks, metric: str,
             target: float, i: int) -> Proposal | None:
    """Propose for every unit, fine-tune, evaluate; the best proposal or None."""
    todo = units(graph, config.passes)
    if metric == "energy_j":  # most energy first
        energy = hooks.layer_energy(graph)
        todo.sort(key=lambda u: -sum(energy.get(n, 0.0) for n in u.layers))
    if config.max_units:
        todo = todo[:config.max_units]
    r_now = state["current"][metric]
    found: list[Proposal] = []
    for j, unit in enumerate(todo):
        got = smallest_meeting(unit, graph, lambda g: hooks.price(g)[metric], target, metric)
        if isinstance(got, str):
            state["rejected"].append({"iteration": i + 1, "layer": unit.id, "pass": unit.pass_name, "reason": got})
            continue
        amount, changed, _ = got
        tuned = hooks.finetune(changed, config.short_term_steps, _seed(config.seed, i, j))
        # Fine-tuning changes values, not shapes or the zero pattern (masks keep every zero),
        # so the proposal prices as the change it came from: a cache hit, not a new pricing.
        p = Proposal(unit, amount, tuned, hooks.price(changed), hooks.accuracy(tuned))
        removed = (r_now - p.metrics[metric]) / state["original"][metric]
        loss = 0.0 if p.accuracy is None or state["accuracy"] is None else state["accuracy"] - p.accuracy
        p.score = loss / removed if removed > 0 else math.inf
        found.append(p)
        hooks.event("proposal", {"proposal": p, "done": j + 1, "total": len(todo)})
    if not found:
        return None
    # Smallest loss per resource; ties to the larger saving, then the earlier unit.
    best = min(found, key=lambda p: (p.score, p.metrics[metric]))
    state["proposals"].extend(p.record(i + 1, p is best) for p in found)
    return best


def _floor(state: Mapping[str, Any], config: SearchConfig) -> float | None:
    if config.max_accuracy_drop is None or state["accuracy0"] is None:
        return None
    return state["accuracy0"] - config.max_accuracy_drop


def _seed(seed: int, iteration: int, unit: int) -> int:
    return int(np.random.SeedSequence([seed, iteration, unit]).generate_state(1)[0])


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def tighten(state: dict[str, Any], metric: str, suggested: float) -> float:
    """Lower the search's limit on ``metric`` to 98 % of ``suggested`` (the predicted value at
    which the measurement would have met the user's budget) so the loop goes on; the
    user's limits are kept in ``state["user_limits"]``. Returns the new limit."""
    state.setdefault("user_limits", dict(state["limits"]))
    new = min(state["limits"][metric], suggested) * 0.98
    state["limits"][metric] = new
    return new
