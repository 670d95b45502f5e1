"""Channel dependency groups: which channels of a graph must be removed together.

A *channel space* is the set of output channels that one layer with constant weights
creates: a Conv with ``group = 1``, a Gemm, or a MatMul whose right operand is a constant
matrix. Channel ``i`` of the space is filter ``i`` of that layer. Every tensor that carries
channels has a :class:`Layout`: the axis they lie on, and the spaces its positions come
from, in order. Concat along that axis concatenates layouts (offset mapping), so position
``p`` of a Concat output is channel ``p − o_j`` of input ``j`` at offset ``o_j``.

Coupling (the dependency graph, after Fang et al., DepGraph, CVPR 2023):

* element-wise ops with several channel-carrying operands (residual Add, Sub, Mul, the
  squeeze-and-excitation Mul whose scale is ``[N, C, 1, 1]``) need position ``p`` of every
  operand to survive or go together: their spaces are merged by union-find, channel ``i``
  of one with channel ``i`` of the other;
* depthwise convolutions (``group = C_in = C_out``), BatchNormalization, unary ops and
  pooling carry the layout of their input through to their output.

A *group* is one union-find class of spaces: its ``C`` channels, every tensor holding
them, and every *site* (a constant operand axis, a ``group`` attribute, a Reshape target
dim) indexed by those tensors' positions. Removing channels ``R`` of a group deletes, in
each such tensor, the positions that map to ``R``, and the matching slices at every site:
rows of the producers' filters and biases, BatchNormalization's scale, B, mean and var,
per-channel constants of element-wise ops, the consumers' input columns.

Flatten and Reshape keep channels addressable when they do not interleave them. With
channel axis ``a``, ``inner`` elements per position, ``pre = Π in[:a]`` and
``post = Π in[a+1:]``, position ``p`` occupies the contiguous block
``[p·inner·post, (p+1)·inner·post)`` of each of the ``pre`` rows of the buffer. An output
axis ``j`` with ``Π out[:j] = pre`` carries the same blocks as positions of
``inner' = inner·post / Π out[j+1:]`` elements when that divides; for an NCHW Flatten
feeding a Gemm, channel ``c`` covers columns ``c·H·W … (c+1)·H·W − 1``.

A group is not prunable when any of its tensors reaches something that cannot lose
channels: a graph output (except a recurrent layer's state returned to the caller, which
is put back at full size, see :mod:`~hwcc.passes.lib.depgraph_recurrent`), an op that
mixes channels (LRN, Transpose, a Reshape splitting them), a grouped convolution that is
not depthwise, a Concat along another axis with an operand that does not carry the same
channels, a strided Slice of them, an unknown op, a layer whose weight is not constant, or
an operand whose channels are fixed. A Slice along the channel axis cuts a layer's space
in two at its bounds (the STFT's real and imaginary halves), and a Concat along another
axis of tensors with the same channels (h and c stacked into one state) couples them.
The reasons are kept per group (``Group.reason``).

The analysis visits each node once (``O(nodes + tensors)``); nothing is cached globally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from hwcc.ir import Graph, Node

__all__ = [
    "ChannelAnalysis",
    "Group",
    "Layout",
    "Site",
    "analyze",
    "constant_of",
    "prunable_groups",
    "rule",
]

FIXED = -1
"""Space id of a segment whose channels cannot be removed (they come from no space)."""

_ONNX = ("", "ai.onnx")
FOLDED = ("Constant", "Identity", "Transpose")  # ops whose output is constant if their input is


@dataclass(frozen=True)
class Layout:
    """Where a tensor's channels lie and where each position comes from.

    Attributes:
        axis: the channel axis.
        inner: elements per channel position along that axis (``H·W`` after a Flatten).
        segs: ``(space id, count)`` pairs in axis order; ``FIXED`` for channels of no space.
    """

    axis: int
    inner: int
    segs: tuple[tuple[int, int], ...]

    @property
    def positions(self) -> int:
        return sum(n for _, n in self.segs)

    @property
    def spaces(self) -> list[int]:
        return [s for s, _ in self.segs if s != FIXED]

    def moved(self, axis: int, inner: int | None = None) -> Layout:
        return Layout(axis, self.inner if inner is None else inner, self.segs)


def make_layout(axis: int, inner: int, segs: Iterable[tuple[int, int]]) -> Layout:
    """A layout with adjacent fixed segments merged (so layouts compare by structure)."""
    out: list[tuple[int, int]] = []
    for s, n in segs:
        if s == FIXED and out and out[-1][0] == FIXED:
            out[-1] = (FIXED, out[-1][1] + n)
        elif n:
            out.append((s, n))
    return Layout(axis, inner, tuple(out))


@dataclass(frozen=True)
class Site:
    """One place that is indexed by a tensor's channel positions.

    Attributes:
        node: the node whose input or attribute changes.
        index: the input index (a constant operand), or ``-1`` for the ``group`` attribute.
        axis: the axis of that input indexed by the positions (for a Reshape's target shape
            or a Slice's bounds, the entry to rewrite).
        tensor: the tensor whose positions index it.
        role: ``filter`` (a producer's output filters), ``consumer`` (a layer's input
            channels), ``param`` (a per-channel constant), ``group`` or ``hidden_size``
            (the attribute of that name, set to the number of positions kept),
            ``shape`` (a Reshape's target dim, set to the number kept), ``bounds`` (a
            Slice's start or end along the channels, set to the positions kept before it),
            ``omit`` (an all-zero input, dropped for the op's default),
            ``select`` (an input computed at run time, narrowed to the kept positions by a
            Gather inserted before ``node``) or ``scatter`` (a graph output, written back
            at full size with zeros at the removed positions).
        tile: how many times the positions repeat along ``axis``: a recurrent layer
            stacks its gates, so position ``p`` indexes ``p + g·n`` for ``g < tile``,
            ``n`` being the axis length divided by ``tile``.
    """

    node: str
    index: int
    axis: int
    tensor: str
    role: str
    tile: int = 1


@dataclass(frozen=True)
class Group:
    """Channels that can only be removed together.

    Attributes:
        id: a stable name: the first (in graph order) layer whose filters create them.
        channels: how many channels the group has.
        producers: the layers whose output filters are the group's channels.
        consumers: the layers whose input channels are the group's channels.
        nodes: every node whose weights, attributes or output shape change when the group
            shrinks.
        tensors: every tensor that loses channels.
        prunable: whether channels can be removed.
        reason: why not, when ``prunable`` is false.
        root: the group's representative space in ``analysis``.
        analysis: the :class:`ChannelAnalysis` it came from (layouts and sites, for
            importance criteria and for pruning without analysing the graph again).
    """

    id: str
    channels: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    nodes: tuple[str, ...]
    tensors: tuple[str, ...]
    prunable: bool
    reason: str | None = None
    root: int = field(default=-1, repr=False)
    analysis: ChannelAnalysis | None = field(default=None, repr=False, compare=False, hash=False)


Rule = Callable[["ChannelAnalysis", Node], None]
_RULES: dict[str, Rule] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    """Register ``fn(analysis, node)`` as the channel rule of ``op_types`` (ONNX domain)."""

    def register(fn: Rule) -> Rule:
        for op in op_types:
            _RULES[op] = fn
        return fn

    return register


class ChannelAnalysis:
    """The channel spaces, layouts, sites and groups of one graph (see the module doc).

    Rules (``hwcc.passes.lib.depgraph_rules``) call the building methods; users call
    :meth:`groups`, :meth:`keep_positions` and :func:`prune_groups`.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.layout: dict[str, Layout] = {}
        self.sites: list[Site] = []
        self.tensor_sites: dict[str, list[int]] = {}
        self.space_tensors: list[list[str]] = []
        self._parent: list[int] = []
        self.size: list[int] = []
        self.origin: list[str] = []
        self.labels: dict[int, str] = {}  # group ids of spaces cut from a layer's space
        self.reasons: list[list[str]] = []
        self.states: set[str] = set()  # state outputs a recurrent layer hands back to the caller
        version = graph.meta.get("ir_version")
        self.overridable = set() if (version and version < 4) else set(graph.inputs)

    # ---------------------------------------------------------------- building
    def new_space(self, node: Node, n: int) -> int:
        self._parent.append(len(self._parent))
        self.size.append(n)
        self.origin.append(node.name)
        self.reasons.append([])
        self.space_tensors.append([])
        return len(self._parent) - 1

    def find(self, s: int) -> int:
        parent = self._parent
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)  # the earliest space names the group

    def block(self, layout: Layout | None, reason: str) -> None:
        """Mark every space of ``layout`` unprunable, saying why."""
        for s in layout.spaces if layout else ():
            if reason not in self.reasons[s]:
                self.reasons[s].append(reason)

    def unify(self, a: Layout, b: Layout, where: str) -> None:
        """Position ``p`` of ``a`` and of ``b`` must go together."""
        if [n for _, n in a.segs] != [n for _, n in b.segs] or a.inner != b.inner:
            for lay in (a, b):
                self.block(lay, f"{where} joins channels whose concatenated parts do not line up")
            return
        for (sa, _), (sb, _) in zip(a.segs, b.segs):
            if sa != FIXED and sb != FIXED:
                self.union(sa, sb)
            elif sa != sb:
                self.block(
                    a if sa != FIXED else b, f"{where} joins them with channels that cannot shrink"
                )

    def set_layout(self, tensor: str, layout: Layout) -> None:
        if not tensor:
            return
        self.layout[tensor] = layout
        for s in set(layout.spaces):
            self.space_tensors[s].append(tensor)

    def site(
        self, node: Node, index: int, axis: int, tensor: str, role: str, tile: int = 1
    ) -> None:
        self.tensor_sites.setdefault(tensor, []).append(len(self.sites))
        self.sites.append(Site(node.name, index, axis, tensor, role, tile))

    # ---------------------------------------------------------------- queries for rules
    def const(self, tensor: str) -> np.ndarray | None:
        """The value of ``tensor`` if it is a constant (see :func:`constant_of`)."""
        return constant_of(self.graph, tensor, self.overridable)

    def shape(self, tensor: str) -> tuple | None:
        """The shape of ``tensor`` (dims may be symbolic), or ``None`` if its rank is unknown."""
        t = self.graph.tensors.get(tensor)
        if t is None:
            return None
        if t.data is not None:
            return t.data.shape
        return None if t.shape is None else tuple(t.shape)

    # ---------------------------------------------------------------- results
    def groups(self) -> list[Group]:
        """Every group, prunable or not, in graph order of their first producer."""
        members: dict[int, list[int]] = {}
        for s in range(len(self._parent)):
            members.setdefault(self.find(s), []).append(s)
        return [self._group(root, spaces) for root, spaces in members.items()]

    def _group(self, root: int, spaces: list[int]) -> Group:
        tensors = list(dict.fromkeys(t for s in spaces for t in self.space_tensors[s]))
        sites = [self.sites[i] for t in tensors for i in self.tensor_sites.get(t, ())]
        producers = tuple(dict.fromkeys(self.origin[s] for s in spaces))
        consumers = tuple(dict.fromkeys(x.node for x in sites if x.role == "consumer"))
        nodes = dict.fromkeys(x.node for x in sites)
        for t in tensors:
            p = self.graph.producer(t)
            if p is not None:
                nodes.setdefault(p.name)
        reasons = list(dict.fromkeys(r for s in spaces for r in self.reasons[s]))
        channels = self.size[root]
        if not reasons and channels < 2:
            reasons = ["it has a single channel"]
        if not reasons and not tensors:
            reasons = ["its channels are never read"]
        reason = "; ".join(reasons[:3]) + (
            f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
        )
        return Group(
            self.labels.get(root, self.origin[root]),
            channels,
            producers,
            consumers,
            tuple(nodes),
            tuple(tensors),
            not reasons,
            reason or None,
            root,
            self,
        )

    def keep_positions(self, tensor: str, keep: Mapping[int, np.ndarray]) -> np.ndarray:
        """Indices along ``tensor``'s channel axis that survive, ``keep`` being the kept
        channel indices of each pruned group (by root space), expanded by ``inner``."""
        lay = self.layout[tensor]
        parts, offset = [], 0
        for s, n in lay.segs:
            kept = keep.get(self.find(s)) if s != FIXED else None
            parts.append(offset + (np.arange(n) if kept is None else kept))
            offset += n
        pos = np.concatenate(parts).astype(np.int64)
        if lay.inner == 1:
            return pos
        return (pos[:, None] * lay.inner + np.arange(lay.inner)[None, :]).reshape(-1)


def analyze(graph: Graph) -> ChannelAnalysis:
    """Compute the channel spaces, layouts, sites and groups of ``graph`` (shapes inferred)."""
    import hwcc.passes.lib.depgraph_matmul  # noqa: F401  (registers the rules)
    import hwcc.passes.lib.depgraph_rules  # noqa: F401
    import hwcc.passes.lib.depgraph_shapes  # noqa: F401
    from hwcc.passes.lib.depgraph_recurrent import returns_state  # (also registers rules)

    a = ChannelAnalysis(graph)
    for node in graph.nodes:
        fn = _RULES.get(node.op_type if node.domain in _ONNX else f"{node.domain}.{node.op_type}")
        if fn is not None:
            fn(a, node)
        else:
            for t in node.inputs:
                a.block(
                    a.layout.get(t),
                    f"they reach {node.op_type} {node.name!r}, which the pruner does not know",
                )
        for t in node.implicit_inputs:
            a.block(a.layout.get(t), f"they are read by a subgraph of {node.name!r}")
    for out in graph.outputs:
        lay = a.layout.get(out)
        if lay is not None and not returns_state(a, out, lay):
            a.block(lay, f"they reach the graph output {out!r}")
    return a


def prunable_groups(graph: Graph) -> list[Group]:
    """The groups of ``graph`` whose channels can be removed, in graph order."""
    return [g for g in analyze(graph).groups() if g.prunable]


def constant_of(graph: Graph, tensor: str, overridable: set[str]) -> np.ndarray | None:
    """The value of ``tensor`` if it is constant: an initializer that is not in
    ``overridable`` (graph inputs a caller may feed), a Constant node's ``value``, or an
    Identity or Transpose of one (as exporters write a Linear's weight)."""
    if not tensor or tensor in overridable:
        return None
    t = graph.tensors.get(tensor)
    if t is not None and t.data is not None:
        return t.data
    p = graph.producer(tensor)
    if p is None or p.domain not in _ONNX or p.op_type not in FOLDED:
        return None
    if p.op_type == "Constant":
        value = p.attrs.get("value")
        return value if isinstance(value, np.ndarray) else None
    value = constant_of(graph, p.inputs[0], overridable)
    if value is None or p.op_type == "Identity":
        return value
    return np.transpose(value, p.attrs.get("perm") or None)
