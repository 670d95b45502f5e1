"""Channel alignment: prune a channel group down to a multiple of the hardware's width.

Kernels run fastest at channel counts that fill the machine's lanes: onnxruntime's x86
kernels block channels by 8 (NCHWc), so a convolution of 33 channels can take twice the
time of one of 32. Where ``prune_channels`` may settle on any count, this pass only
offers counts on the fast side of those steps: a group of ``C`` channels keeps

    n = m·j  (j = ⌊(C − 1)/m⌋, …, 1),     m = ``multiple``,

its ``n`` most important channels by the L2 norm of their filters, with every coupled
layer cut as :mod:`hwcc.passes.lib.channel_prune` does. The rewrite is exact when the
removed channels contribute nothing downstream (zero filters and biases before a ReLU),
and lossy otherwise, so the pass is declared inexact.
"""

from __future__ import annotations

from collections.abc import Iterator

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.search_space import Step, Unit
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.channel_prune import prune_groups
from hwcc.passes.lib.depgraph import Group, analyze, prunable_groups
from hwcc.passes.lib.importance import keep_top, scores

__all__ = ["AlignChannels"]


@register_pass
class AlignChannels(Pass):
    """Prune channel groups to a multiple of ``multiple`` channels.

    Rewrite cases:

    1. ``group`` names a prunable group of C channels and ``keep`` is a multiple of
       ``multiple`` below C: the group keeps its ``keep`` channels of largest L2 norm.
    2. No ``group``: every prunable group whose count C is not a multiple of
       ``multiple`` (and is above it) keeps ``multiple·⌊C/multiple⌋`` channels.

    Must not fire when:

    3. no ``group`` is named and every prunable group is aligned already (or narrower
       than ``multiple``);
    4. the named group is not prunable (its reason is given).

    ``keep`` that is not a multiple of ``multiple``, or not in ``[1, C)``, and a group
    that does not exist are errors.
    """

    name = "align_channels"
    exact = False
    searchable = True
    search_order = 15
    knobs = (
        Knob("multiple", int, 8, "channel counts are kept at multiples of this", range=(1, 4096)),
        Knob("group", str, "", "align only this group (its id, as prune_channels names it)"),
        Knob("keep", int, 0, "with group: how many channels it keeps", range=(0, None)),
    )

    def units(self, graph: Graph) -> Iterator[Unit]:
        """Each prunable group wider than 8 channels: its steps keep the multiples of 8
        below its count, the largest (the smallest change) first."""
        m = self.knob("multiple").default
        for g in prunable_groups(graph):
            counts = range(m * ((g.channels - 1) // m), 0, -m)
            steps = tuple(
                Step(
                    {"group": g.id, "keep": n, "multiple": m}, {"channels": f"{g.channels}->{n}"}, n
                )
                for n in counts
            )
            if steps:
                yield Unit(
                    f"aligned channels of {g.id}", self.name, (*g.producers, *g.consumers), steps
                )

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        analysis = analyze(graph)
        plan = self._plan(analysis.groups(), opts)
        if isinstance(plan, str):
            return PassResult(graph, False, plan)
        score = scores(analysis, list(plan), "l2")
        keep = {g: keep_top(score[g.id], n) for g, n in plan.items()}
        details = {"aligned": {g.id: (g.channels, n) for g, n in plan.items()}}
        return PassResult(prune_groups(graph, keep), True, None, details)

    @staticmethod
    def _plan(groups: list[Group], opts: dict) -> dict[Group, int] | str:
        """Channels each group keeps, or why nothing changes."""
        m = opts["multiple"]
        if not opts["group"]:
            plan = {g: m * (g.channels // m) for g in groups if g.prunable and g.channels > m}
            plan = {g: n for g, n in plan.items() if n < g.channels}
            return plan or f"every prunable group is a multiple of {m} channels, or narrower"
        named = next((g for g in groups if g.id == opts["group"]), None)
        if named is None:
            raise HwccError(
                f"align_channels: the graph has no channel group {opts['group']!r}",
                "name a group as prune_channels reports it (details['groups'])",
            )
        if not named.prunable:
            return f"group {named.id!r} cannot be pruned: {named.reason}"
        n = opts["keep"]
        if n % m or not 1 <= n < named.channels:
            raise HwccError(
                f"align_channels: group {named.id!r} cannot keep {n} "
                f"of its {named.channels} channels",
                f"keep a multiple of {m} below {named.channels}",
            )
        return {named: n}
