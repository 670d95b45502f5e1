"""What the search can change, read from the passes' own declarations.

Every searchable pass declares its units on a graph and each unit's steps, smallest change
first (:meth:`hwcc.ir.transform.Pass.units`, :mod:`hwcc.ir.search_space`). The search
collects them (:func:`units`), applies a step by running its pass through the pass manager
with the step's knobs (:func:`apply_step`: shapes inferred, IR linted, the pass's contract
checked), and picks per unit the smallest step whose priced result meets the iteration's
target (:func:`smallest_meeting`), minding the channel counts the hardware runs fastest.
Nothing here knows a pass by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.search_space import Step, Unit
from hwcc.ir.transform import PassContext, get_pass, search_passes
from hwcc.search.budget import format_metric

__all__ = ["Step", "Unit", "apply_step", "smallest_meeting", "units"]

T = TypeVar("T")


def units(graph: Graph, passes: Sequence[str]) -> list[Unit]:
    """Every unit of ``graph`` for the given passes, in graph order per pass.

    Raises:
        HwccError: a pass the search cannot drive.
    """
    out: list[Unit] = []
    for name in passes:
        p = get_pass(name)
        if not p.searchable:
            raise HwccError(
                f"the search cannot drive pass {name!r}",
                f"passes it can drive: {', '.join(search_passes())}",
            )
        out.extend(p.units(graph))
    return out


def apply_step(
    graph: Graph,
    unit: Unit,
    step: Step,
    options: Mapping[str, Any] | None = None,
    data: Any = None,
) -> Graph | str:
    """``graph`` with ``step`` of ``unit`` applied (a new graph), or the pass's reason for
    not changing anything. Unverified: the search prices and evaluates every proposal.
    ``options``: knobs for every pass that declares them (``criterion``), under the step's
    own; ``data``: what the pass may measure on (:class:`~hwcc.ir.transform.PassContext`)."""
    p = get_pass(unit.pass_name)  # looked up once: the search applies thousands of steps
    knobs = {k.name: options[k.name] for k in p.knobs if k.name in (options or {})}
    ctx = PassContext(knobs={unit.pass_name: {**knobs, **step.knobs}}, data=data, verify=False)
    res = PassManager([p], ctx).run(graph)
    if res.modified:
        return res.graph
    return res.details["results"][0][1].reason or f"{unit.pass_name} changed nothing"


def smallest_meeting(
    steps: Sequence[T],
    at: Callable[[T], tuple[Any, float] | str],
    target: float,
    metric: str | None = None,
    show: Callable[[T], Any] = lambda s: s,
    granularity: Sequence[int] = (),
) -> tuple[T, Any, float] | str:
    """The smallest of ``steps`` whose result prices at or below ``target``.

    Prices fall as the change grows, but in steps: hardware runs channel counts that fill
    its lanes, tiles or PEs fastest (a convolution of 33 channels can take twice the time of
    one of 32 on this CPU), so a count just past a multiple can cost more than the multiple
    with more channels. Binary searches, each the largest of its steps tried first, the
    smallest step of any wins:

    * for each of the target's ``granularity`` (:meth:`Target.channel_granularity`),
      coarsest first, one over the steps that leave a multiple of it (``Step.count``), on
      which the price does fall monotonically: the counts on the fast side of each step;
    * last, one over all the steps (if even the largest misses and no aligned step meets,
      the unit cannot help this iteration).

    Each search after the first only looks below the smallest step found so far, so the
    finer searches probe a few counts between two multiples rather than the whole range:
    on the CPU a probe at an unaligned count prices kernels that exist at no aligned one
    (a plain convolution for the NCHWc one), each measured for the table before it can
    be looked up.

    Args:
        steps: the steps, smallest change first.
        at: ``step -> (result, price)``, or the reason the step cannot be applied.
        target: the price to meet.
        metric: what the price is (``latency_s``...), to write the reason in its units.
        show: how a reason names a step.
        granularity: channel multiples the target runs fastest (empty: one search).

    Returns:
        ``(step, result, price)``, or the reason no step meets the target.
    """
    if not steps:
        return "nothing to change"
    tried: dict[int, tuple[Any, float] | str] = {}

    def attempt(i: int) -> tuple[Any, float] | str:
        if i not in tried:
            tried[i] = at(steps[i])
        return tried[i]

    def meets(i: int) -> bool:
        r = attempt(i)
        return not isinstance(r, str) and r[1] <= target

    best: int | None = None
    for g in [*sorted({g for g in granularity if g > 1}, reverse=True), 1]:
        family = [i for i, s in enumerate(steps) if g == 1 or _leaves_multiple(s, g)]
        i = _first([i for i in family if best is None or i < best], meets)
        best = i if i is not None else best
    if best is None:
        last = attempt(len(steps) - 1)
        if isinstance(last, str):
            return last
        return (
            f"even the largest change ({show(steps[-1])}) prices at "
            f"{format_metric(metric, last[1])} > target {format_metric(metric, target)}"
        )
    result, value = attempt(best)  # type: ignore[misc]
    return steps[best], result, value


def _first(indices: list[int], meets: Callable[[int], bool]) -> int | None:
    """The first of ``indices`` that meets, by binary search (its last is tried first)."""
    if not indices or not meets(indices[-1]):
        return None
    lo, hi = 0, len(indices) - 1  # indices[hi] meets
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(indices[mid]):
            hi = mid
        else:
            lo = mid + 1
    return indices[hi]


def _leaves_multiple(step: Any, g: int) -> bool:
    count = getattr(step, "count", None)
    return count is not None and count % g == 0


def shown(step: Step) -> str:
    """A step as a reason shows it: ``k=3, channels=32->29``."""
    return ", ".join(f"{k}={v}" for k, v in step.shown.items())
