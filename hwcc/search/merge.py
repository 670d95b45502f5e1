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
combination saves the iterations between. Otherwise the best single proposal is kept,
as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwcc.ir import Graph
from hwcc.search.space import Step, Unit, apply_step

if TYPE_CHECKING:
    from hwcc.search.loop import Proposal

__all__ = ["combined"]


def combined(
    best: Proposal,
    ranked: list[Proposal],
    full_target: float,
    metric: str,
    options: dict[str, Any],
    data: Any,
    price,
) -> tuple[Graph, list[Proposal]] | None:
    """The best proposal's graph with the next proposals of ``ranked`` applied on top, up
    to the first that meets ``full_target``; with its members, or None when fewer than
    two members apply. ``data``: what the passes measure on (the iteration's network's);
    ``price``: graph -> metrics."""
    members, g, ids, now = [best], best.graph, {best.unit.id}, best.metrics[metric]
    for p in ranked:
        if now <= full_target:
            break
        if p.unit.id in ids or p.score == float("inf"):
            continue
        nxt = apply_step(g, p.unit, p.step, options, data)
        if isinstance(nxt, str):  # the units conflict (a layer already changed): skip it
            continue
        g, now = nxt, price(nxt)[metric]
        members.append(p)
        ids.add(p.unit.id)
    return (g, members) if len(members) > 1 else None


def as_unit(members: list[Proposal]) -> tuple[Unit, Step]:
    """The combination as one unit and step, as the history and the report show it."""
    passes = "+".join(dict.fromkeys(m.unit.pass_name for m in members))
    layers = tuple(dict.fromkeys(n for m in members for n in m.unit.layers))
    name = f"{len(members)} units: " + ", ".join(m.unit.id for m in members)
    unit = Unit(name, passes, layers, ())
    return unit, Step({}, {m.unit.id: dict(m.step.shown) for m in members})
