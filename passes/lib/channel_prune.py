"""Removing channels: a dependency group's kept positions applied at every site it touches.

Given the groups of :mod:`hwcc.passes.lib.depgraph` and, for each group to prune, the
channels it keeps, every producer's filters and bias, every consumer's input channels,
BatchNormalization parameters, depthwise weights and channel Concats are cut to the kept
positions (``W_p[K, …]``, ``W_c[:, K', …]``); constants left unused are dropped. A site
that stacks the positions several times (a recurrent layer's gates, ``Site.tile``) keeps
them in every block, an attribute site (``group``, ``hidden_size``) is set to the
number kept, and an ``omit`` site (a recurrent layer's all-zero initial state) drops the
input, which the op then takes as zeros of the new size.

Two sites keep a model's interface where its channels cross it (a recurrent state fed by
and returned to the caller): a ``select`` site reads its input through an inserted
``Gather(x, K, axis)``, and a ``scatter`` site computes the graph output ``y`` at full
size ``C`` from the pruned ``y'`` as ``y = y' · P`` with ``P = I_C[K]`` (``|K| × C``, one
1 per row): position ``K_k`` holds ``y'_k`` exactly and every removed position 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.dtypes import numpy_dtype
from hwcc.passes.lib.depgraph import FOLDED, ChannelAnalysis, Group, Site, analyze, constant_of
from hwcc.passes.lib.edits import add_constant, set_constant_input

__all__ = ["prune_group", "prune_groups"]


def prune_group(graph: Graph, group: Group, keep_indices: Iterable[int]) -> Graph:
    """A copy of ``graph`` in which ``group`` keeps only the channels ``keep_indices``.

    Args:
        graph: the graph the group was found in (or one with a group of the same id).
        group: a prunable group.
        keep_indices: the channels to keep, indices in ``[0, group.channels)``.

    Returns:
        The pruned copy; ``graph`` is left unchanged.

    Raises:
        HwccError: the group is not prunable here, or the indices are not valid.
    """
    return prune_groups(graph, {group: keep_indices})


def prune_groups(graph: Graph, keep: Mapping[Group, Iterable[int]]) -> Graph:
    """Prune several groups of ``graph`` at once (see :func:`prune_group`)."""
    analysis, by_root = _resolve(graph, keep)
    g = graph.copy()
    tensors = list(
        dict.fromkeys(
            t
            for root in by_root
            for s in _members(analysis, root)
            for t in analysis.space_tensors[s]
        )
    )
    positions = {t: analysis.keep_positions(t, by_root) for t in tensors}
    for t, pos in positions.items():
        lay, tensor = analysis.layout[t], g.tensors[t]
        shape = list(tensor.shape)
        shape[lay.axis] = len(pos)
        tensor.shape = tuple(shape)
    sites = dict.fromkeys(
        analysis.sites[i] for t in tensors for i in analysis.tensor_sites.get(t, ())
    )
    replaced = [_apply(g, analysis, x, positions[x.tensor]) for x in sites]
    _drop_dead_constants(g, [t for t in replaced if t])
    return g


def _members(analysis: ChannelAnalysis, root: int) -> list[int]:
    return [s for s in range(len(analysis.size)) if analysis.find(s) == root]


def _resolve(
    graph: Graph, keep: Mapping[Group, Iterable[int]]
) -> tuple[ChannelAnalysis, dict[int, np.ndarray]]:
    """The analysis of ``graph`` and each group's kept indices by root, checked."""
    analysis = next(
        (g.analysis for g in keep if g.analysis is not None and g.analysis.graph is graph), None
    )
    if analysis is None:
        analysis = analyze(graph)
    current = {g.id: g for g in analysis.groups()}
    by_root: dict[int, np.ndarray] = {}
    for group, indices in keep.items():
        here = current.get(group.id)
        if here is None or here.channels != group.channels:
            raise HwccError(
                f"group {group.id!r} ({group.channels} channels) is not a group of this graph",
                "find the groups of the graph you prune with prunable_groups(graph)",
            )
        if not here.prunable:
            raise HwccError(f"group {group.id!r} cannot be pruned: {here.reason}")
        kept = np.asarray(sorted(set(int(i) for i in indices)), dtype=np.int64)
        if kept.size == 0 or kept[0] < 0 or kept[-1] >= here.channels:
            raise HwccError(
                f"group {group.id!r}: keep indices must be a non-empty subset of "
                f"0..{here.channels - 1}",
                "keep at least one channel",
            )
        by_root[here.root] = kept
    return analysis, by_root


_ATTRIBUTES = ("group", "hidden_size")
"""Site roles that name an attribute holding the number of channels."""


def tiled(pos: np.ndarray, length: int, tile: int) -> np.ndarray:
    """The indices along an axis of ``length`` entries that ``tile`` stacked blocks of
    positions ``pos`` occupy (a recurrent layer's gates: ``p + g·length/tile``)."""
    if tile == 1:
        return pos
    n = length // tile
    return (np.arange(tile)[:, None] * n + pos[None, :]).reshape(-1)


def _apply(g: Graph, analysis: ChannelAnalysis, site: Site, pos: np.ndarray) -> str | None:
    """Rewrite one site; return the name of the input it replaced, if any."""
    node = g.node(site.node)
    if site.role in _ATTRIBUTES:
        node.attrs[site.role] = int(len(pos))
        return None
    if site.role in _INTERFACE:
        _INTERFACE[site.role](g, analysis, site, pos)
        return None
    if site.role == "omit":
        old = node.inputs[site.index]
        g.set_input(node, site.index, "")
        _drop_dead_producers(g, old)
        return None
    old = node.inputs[site.index]
    value = constant_of(g, old, analysis.overridable)
    if site.role == "shape":
        value = np.array(value, copy=True)
        if value[site.axis] != -1:
            value[site.axis] = len(pos)
    elif site.role == "bounds":
        value, lay = np.array(value, copy=True), analysis.layout[site.tensor]
        full, bound = lay.positions * lay.inner, int(value[site.axis])
        value[site.axis] = np.count_nonzero(pos < min(bound + (full if bound < 0 else 0), full))
    else:
        value = np.take(value, tiled(pos, value.shape[site.axis], site.tile), axis=site.axis)
    set_constant_input(g, node, site.index, value)
    return old


def _select(g: Graph, analysis: ChannelAnalysis, site: Site, pos: np.ndarray) -> None:
    """Make ``site.node`` read the kept positions of its input ``site.index`` (a Gather)."""
    node = g.node(site.node)
    old = node.inputs[site.index]
    indices = g.unique_name(f"{old}_kept_index")
    add_constant(g, indices, pos.astype(np.int64))
    kept = g.unique_name(f"{old}_kept")
    g.add_node(
        "Gather", [old, indices], [kept], {"axis": site.axis}, name=f"{node.name}_select_{old}"
    )
    src = g.tensors[old]
    if src.shape is not None:
        shape = list(src.shape)
        shape[site.axis] = len(pos)
        g.tensors[kept].shape = tuple(shape)
    g.tensors[kept].elem_type = src.elem_type
    g.set_input(node, site.index, kept)


def _scatter(g: Graph, analysis: ChannelAnalysis, site: Site, pos: np.ndarray) -> None:
    """Compute graph output ``site.tensor`` at its full size from its pruned value: the
    pruned tensor is renamed and multiplied by ``P = I_C[pos]`` (see the module doc)."""
    out, before = site.tensor, analysis.graph.tensors[site.tensor]
    lay = analysis.layout[out]
    full = lay.positions * lay.inner
    if len(pos) == full:
        return
    kept = g.unique_name(f"{out}_kept")
    g.rename_tensor(out, kept)
    g.outputs = [out if o == kept else o for o in g.outputs]
    p = np.zeros((len(pos), full), dtype=numpy_dtype(before.elem_type or 1))
    p[np.arange(len(pos)), pos] = 1
    weight = g.unique_name(f"{out}_scatter_matrix")
    add_constant(g, weight, p)
    node = g.add_node("MatMul", [kept, weight], [out], name=f"{out}_scatter")
    node.meta["structural"] = True  # P is the interface, not a weight to fine-tune
    g.tensors[out].elem_type, g.tensors[out].shape = before.elem_type, before.shape


_INTERFACE = {"select": _select, "scatter": _scatter}
"""Site roles that keep the graph's interface: each inserts a node (see the module doc)."""


def _drop_dead_constants(g: Graph, names: list[str]) -> None:
    """Erase the constant-computing nodes and initializers the rewrite left unread."""
    for t in dict.fromkeys(names):
        while t and not g.users(t) and t not in g.outputs:
            p = g.producer(t)
            if p is not None and p.op_type in FOLDED and len(p.outputs) == 1:
                src = p.inputs[0] if p.inputs else ""
                g.erase_node(p)
                t = src
            elif p is None and g.initializer(t) is not None and t not in g.inputs:
                del g.tensors[t]
                t = ""
            else:
                t = ""


def _drop_dead_producers(g: Graph, tensor: str) -> None:
    """Erase the nodes (and initializers) that only computed ``tensor``, now unread: the
    shape computation of a zero initial state that an omitted input leaves behind."""
    stack = [tensor]
    while stack:
        t = stack.pop()
        if not t or g.users(t) or t in g.outputs:
            continue
        p = g.producer(t)
        if p is None:
            if g.initializer(t) is not None and t not in g.inputs:
                del g.tensors[t]
            continue
        if any(o and (g.users(o) or o in g.outputs) for o in p.outputs):
            continue
        stack.extend(p.inputs)
        g.erase_node(p)
