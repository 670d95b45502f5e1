"""Several units in one iteration, when no single unit can take the schedule's step.

On a large network one unit is a small share of the whole: on ddddocr's detector (215
kernels) the largest change one channel group may make in an iteration (half its
channels, :func:`hwcc.search.loop.capped`) removes 1 to 6 % of the latency, so the
schedule's first steps (10 % of ``R0``) are halved two or three times and the search
takes one small unit per iteration: 16 iterations of 1.5 minutes to 0.71x.

When the step had to be halved, the proposals of the halved step are combined instead:
the best proposal first, then the others in the order the loop ranks them (least
accuracy lost per resource removed), each applied on top of the ones before, until the
combination meets the schedule's full step or the proposals run out. The combination is
fine-tuned once and kept if its accuracy stays above the floor and it loses no more per
resource removed than the worst of its members did alone: a sequence of single-unit
iterations would have taken those members one by one at those rates, and the
combination saves the iterations between. A combination that loses nothing against the
iteration's starting accuracy is kept whatever its members gained alone: a member's gain
is its short-term fine-tune recovering what earlier iterations lost, which does not add
up over the members (on ddddocr's detector three units gained 0.24 to 0.28 points each
alone and 0.41 together, for three times the latency removed, and the combination was
refused for gaining less per millisecond). Otherwise the best single proposal is kept,
as before.

When no unit meets even the smallest step (an eighth of the schedule's), the units whose
largest step lowers the metric most are evaluated as proposals, as many as together
would take the full step (at most eight), and combined the same way; if the combination
is not kept the search stops as before. On ddddocr's detector for Eyeriss at 0.53x
energy, every one of 67 channel groups saved 1 to 2 % of the energy alone, short of the
smallest step, and the search stopped there with the budget unmet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwcc.ir import Graph
from hwcc.search.space import Step, Unit, apply_step

if TYPE_CHECKING:
    from hwcc.search.config import SearchConfig
    from hwcc.search.loop import Hooks, Proposal
    from hwcc.search.state import SearchState

__all__ = ["Round", "combined", "from_near_misses", "together"]

MOST_NEAR = 8  # near misses evaluated, at most: the smallest step tried is an eighth


@dataclass(frozen=True)
class Round:
    """The iteration a combination is made in: the search's state, options and hooks,
    the metric it lowers, the schedule's full step as a target, and ``data``, what the
    passes measure on (the iteration's network's)."""

    state: SearchState
    config: SearchConfig
    hooks: Hooks
    metric: str
    full_target: float
    data: Any


def combined(
    best: Proposal,
    ranked: list[Proposal],
    full_target: float,
    metric: str,
    options: dict[str, Any],
    data: Any,
    price,
) -> tuple[Graph, list[Proposal], dict[str, float]] | None:
    """The best proposal's graph with the next proposals of ``ranked`` applied on top, up
    to the first that meets ``full_target``; with its members, or None when fewer than
    two members apply; with the combination's metrics (priced once, here). ``data``: what
    the passes measure on (the iteration's network's);
    ``price``: graph -> metrics."""
    members, g, ids, metrics = [best], best.graph, {best.unit.id}, best.metrics
    now = metrics[metric]
    for p in ranked:
        if now <= full_target:
            break
        if p.unit.id in ids or math.isinf(p.score):
            continue
        nxt = apply_step(g, p.unit, p.step, options, data)
        if isinstance(nxt, str):  # the units conflict (a layer already changed): skip it
            continue
        g, metrics = nxt, price(nxt)
        now = metrics[metric]
        members.append(p)
        ids.add(p.unit.id)
    return (g, members, metrics) if len(members) > 1 else None


def as_unit(members: list[Proposal]) -> tuple[Unit, Step]:
    """The combination as one unit and step, as the history and the report show it."""
    passes = "+".join(dict.fromkeys(m.unit.pass_name for m in members))
    layers = tuple(dict.fromkeys(n for m in members for n in m.unit.layers))
    name = f"{len(members)} units: " + ", ".join(m.unit.id for m in members)
    unit = Unit(name, passes, layers, ())
    return unit, Step({}, {m.unit.id: dict(m.step.shown) for m in members})


def from_near_misses(
    graph: Graph, near: list[tuple[Unit, Step, float]], rnd: Round
) -> Proposal | None:
    """The largest steps of the units that lower the metric most (``near``: unit, its
    largest step, that step's price on ``graph``), evaluated and combined up to the full
    step; None when fewer than two apply or the combination is not kept."""
    from hwcc.search.loop import propose  # the loop imports this module

    state, metric = rnd.state, rnd.metric
    r_now, options = state.current[metric], rnd.config.pass_knobs()
    found: list[Proposal] = []
    saved = 0.0
    for unit, step, price in sorted(near, key=lambda n: n[2])[:MOST_NEAR]:
        if saved >= r_now - rnd.full_target:
            break
        found.append(propose(graph, unit, step, None, state, rnd.hooks, metric, rnd.data, options))
        saved += r_now - price
    if len(found) < 2:
        return None
    ranked = sorted(found, key=lambda p: (p.score, p.metrics[metric]))
    state.proposals.extend(p.record(state.iteration + 1, False) for p in ranked)
    return together(ranked[0], ranked, rnd)


def together(best: Proposal, ranked: list[Proposal], rnd: Round) -> Proposal | None:
    """``best`` and the next proposals of ``ranked`` together, up to the full step,
    fine-tuned, if that loses no accuracy or no more per resource than its worst member
    alone; else None."""
    from hwcc.search.loop import Proposal, _below, _score, _seed, tune

    state, config, hooks, metric = rnd.state, rnd.config, rnd.hooks, rnd.metric
    floor = state.floor(config.max_accuracy_drop)
    members = [p for p in ranked if p is not best and not _below(p, floor)]
    got = combined(
        best, members, rnd.full_target, metric, config.pass_knobs(), rnd.data, hooks.price
    )
    if got is None:
        return None
    g, members, metrics = got
    unit, step = as_unit(members)
    p = Proposal(unit, step, g, metrics, hooks.accuracy(g))
    tune(p, config, hooks, _seed(config.seed, state.iteration, 1 << 19))
    p.score = _score(p, state, metric, state.current[metric])
    kept = p.score <= max(0.0, *(m.score for m in members)) and not _below(p, floor)
    state.proposals.append(p.record(state.iteration + 1, kept))
    hooks.event("proposal", {"proposal": p, "done": 1, "total": 1})
    return p if kept else None
