"""Structured channel pruning: remove output channels and everything coupled to them.

The dependency groups of :mod:`hwcc.passes.lib.depgraph` say which channels must go together
(a layer's filters, the next layers' input channels, BatchNormalization parameters and
biases, depthwise convolutions in between, every member of a residual Add/Sub/Mul, the
mapped positions of a channel Concat, the columns a Flatten/Reshape hands to a Gemm, and
the scale of a squeeze-and-excitation Mul). Removing channel set ``R`` of a group of ``C``
channels makes every tensor of the group ``C − |R|`` channels wide:

    W_p' = W_p[K, …]         (each producer's filters, K = kept channels, and its bias)
    W_c' = W_c[:, K', …]     (each consumer's input channels; for a Gemm after a
                              Flatten of C×H×W, K' = {c·H·W + r : c ∈ K, r < H·W})
    γ', β', μ', σ²' = γ[K], β[K], μ[K], σ²[K],      group' = |K| for depthwise layers.

Which channels go is chosen by an importance criterion (:mod:`hwcc.passes.lib.importance`):
the ``C − k`` highest scores are kept. The rewrite is exact when the removed channels
contribute exactly zero downstream (a zero filter, bias and BatchNormalization shift
followed by ReLU), and lossy otherwise, so the pass is declared inexact.

``ratio`` mode removes ``C − keep`` channels of every prunable group, with
``keep = round_to · ⌈(1 − ratio)·C / round_to⌉``: the kept count is rounded up to a
multiple of ``round_to``, so never more than ``ratio`` of a group goes, and a group whose
rounded count is not below ``C`` (one of fewer than ``round_to`` channels, say) is left
alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.search_space import Step, Unit
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.channel_prune import prune_group, prune_groups
from hwcc.passes.lib.depgraph import Group, analyze, prunable_groups
from hwcc.passes.lib.importance import CRITERIA, keep_top, scores

__all__ = ["PruneChannels", "kept_count", "prunable_groups", "prune_group", "prune_k"]


def kept_count(channels: int, ratio: float, round_to: int = 1) -> int:
    """How many of ``channels`` a group keeps when ``ratio`` of them go (see the module doc)."""
    keep = round_to * math.ceil(round((1.0 - ratio) * channels / round_to, 9))
    return channels if keep > channels or keep < 1 else keep


def prune_k(graph: Graph, group: Group, k: int, criterion: str = "l2", data: Any = None) -> Graph:
    """A copy of ``graph`` with the ``k`` least important channels of ``group`` removed.

    Args:
        graph: the graph ``group`` was found in.
        group: a prunable group (from :func:`prunable_groups`).
        k: how many channels to remove, ``1 <= k < group.channels``.
        criterion: an importance criterion (``l2``, ``l1``, ``activation``).
        data: inputs for data-driven criteria (arrays by input name, or an ``.npz`` path).
    """
    if not 1 <= k < group.channels:
        raise HwccError(
            f"cannot remove {k} of the {group.channels} channels of group {group.id!r}",
            f"k must be between 1 and {group.channels - 1}",
        )
    analysis = (
        group.analysis
        if group.analysis is not None and group.analysis.graph is graph
        else analyze(graph)
    )
    here = next((g for g in analysis.groups() if g.id == group.id), group)
    score = scores(analysis, [here], criterion, data)[here.id]
    return prune_group(graph, here, keep_top(score, here.channels - k))


@register_pass
class PruneChannels(Pass):
    """Remove the least important output channels of each dependency group.

    Rewrite cases:

    1. ``ratio`` r > 0: every prunable group of C channels keeps its
       ``kept_count(C, r, round_to)`` most important channels; the producers' filters and
       biases, the consumers' input channels, BatchNormalization parameters and depthwise
       convolutions (weights, bias, ``group``) shrink with it.
    2. ``group`` and ``k``: only that group loses its ``k`` least important channels
       (``ratio`` is then ignored).
    3. Residual Add/Sub/Mul: every member of the coupled group loses the same channels.
    4. Concat along the channel axis: the removed channels are taken out of the Concat's
       output at their offsets, for every consumer of it.
    5. Flatten or Reshape feeding a Gemm or MatMul: the consumer loses the input columns
       of the removed channels (``c·H·W … (c+1)·H·W − 1``); a Reshape's target shape is
       rewritten.
    6. Squeeze-and-excitation: the scale branch's last layer loses the same output
       channels as the feature map it multiplies.

    Must not fire when:

    7. ``ratio`` is 0 and no ``group`` is named;
    8. the graph has no prunable group (``details["unprunable"]`` says why for each: its
       channels reach a graph output, a Transpose, an LRN, a Reshape that mixes them with
       other dims, a Concat along another axis, a grouped convolution that is not
       depthwise, an unknown op, or a layer whose weight is not constant);
    9. ``round_to`` leaves every group as it is (rounding the kept count up to a multiple
       of ``round_to`` keeps all of each group's channels);
    10. the named group is not prunable (its reason is given). A named group that does not
       exist, ``k`` not in ``[1, C)``, ``ratio`` >= 1, or the ``activation`` criterion
       without data is an error.
    """

    name = "prune_channels"
    exact = False
    searchable = search_default = True
    search_order = 10
    aliases = ("prune",)
    knobs = (
        Knob(
            "ratio",
            float,
            0.0,
            "fraction of the channels of every prunable group to remove",
            range=(0.0, 1.0),
        ),
        Knob(
            "criterion",
            str,
            "l2",
            "importance criterion that picks the channels to keep",
            choices=tuple(CRITERIA),
        ),
        Knob(
            "round_to",
            int,
            1,
            "keep a multiple of this many channels (ratio mode)",
            range=(1, None),
        ),
        Knob("group", str, "", "prune only this group (its id, see details['groups'])"),
        Knob("k", int, 0, "with group: how many channels to remove from it", range=(0, None)),
    )

    def units(self, graph: Graph) -> Iterator[Unit]:
        """Each prunable group of ``C >= 2`` channels: its steps remove ``k = 1 … C − 1``
        channels, the ``C − k`` with the largest L2 filter norms kept (NetAdapt's choice)."""
        for g in prunable_groups(graph):
            if g.channels < 2:
                continue
            steps = tuple(
                Step(
                    {"group": g.id, "k": k},
                    {"group": g.id, "k": k, "channels": f"{g.channels}->{g.channels - k}"},
                    g.channels - k,
                )
                for k in range(1, g.channels)
            )
            yield Unit(
                f"channels of {g.id}", self.name, tuple(g.producers) + tuple(g.consumers), steps
            )

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        if opts["ratio"] >= 1.0:
            raise HwccError(
                f"ratio={opts['ratio']} would remove every channel", "use a ratio below 1"
            )
        analysis = analyze(graph)
        groups = analysis.groups()
        details: dict[str, Any] = {
            "groups": {g.id: g.channels for g in groups if g.prunable},
            "unprunable": {g.id: g.reason for g in groups if not g.prunable},
        }
        plan = self._plan(groups, opts)
        if isinstance(plan, str):
            return PassResult(graph, False, plan, details)
        score = scores(analysis, list(plan), opts["criterion"], ctx.data)
        keep = {g: keep_top(score[g.id], g.channels - k) for g, k in plan.items()}
        details["pruned"] = {g.id: (g.channels, g.channels - k) for g, k in plan.items()}
        return PassResult(prune_groups(graph, keep), True, None, details)

    @staticmethod
    def _plan(groups: list[Group], opts: dict[str, Any]) -> dict[Group, int] | str:
        """Channels to remove per group, or why nothing is removed."""
        prunable = [g for g in groups if g.prunable]
        if opts["group"]:
            named = next((g for g in groups if g.id == opts["group"]), None)
            if named is None:
                some = ", ".join(repr(g.id) for g in prunable[:5]) or "none"
                raise HwccError(
                    f"the graph has no channel group {opts['group']!r}",
                    f"prunable groups include: {some}",
                )
            if not named.prunable:
                return f"group {named.id!r} cannot be pruned: {named.reason}"
            if opts["k"] == 0:
                return f"k=0: nothing to remove from group {named.id!r}"
            if opts["k"] >= named.channels:
                raise HwccError(
                    f"cannot remove {opts['k']} of the {named.channels} channels"
                    f" of group {named.id!r}",
                    f"k must be below {named.channels}",
                )
            return {named: opts["k"]}
        if opts["ratio"] == 0.0:
            return "ratio=0 removes nothing (set ratio, or group and k)"
        if not prunable:
            why = "; ".join(f"{g.id}: {g.reason}" for g in groups[:3])
            more = f" (and {len(groups) - 3} more)" if len(groups) > 3 else ""
            return "the graph has no prunable channel group" + (f": {why}{more}" if why else "")
        plan = {
            g: g.channels - kept_count(g.channels, opts["ratio"], opts["round_to"])
            for g in prunable
        }
        plan = {g: k for g, k in plan.items() if k > 0}
        if not plan:
            return (
                f"ratio={opts['ratio']} with round_to={opts['round_to']} removes no channel "
                f"from any of the {len(prunable)} prunable groups"
            )
        return plan
