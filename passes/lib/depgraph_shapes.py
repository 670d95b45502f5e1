"""Channel rules of the ops that move, cut or join axes, for :mod:`hwcc.passes.lib.depgraph`:
Transpose, Slice (along the channels too: :func:`_cut`), Split, Gather along other axes,
Concat (along the channel axis, or along another of tensors with the same channels), and the
reshapes (Flatten, Reshape, Squeeze, Unsqueeze) that keep whole channel blocks together,
merge leading axes into the channels or split them into units (attention heads).
"""

from __future__ import annotations

import math

from hwcc.ir import Node
from hwcc.passes.lib.depgraph import FIXED, ChannelAnalysis, Layout, make_layout, rule
from hwcc.passes.lib.depgraph_rules import _data_layout, _where  # the shared helpers of the rules


@rule("Transpose")
def _transpose(a: ChannelAnalysis, node: Node) -> None:
    lay = a.layout.get(node.inputs[0])
    if lay is None:
        return
    perm = node.attr("perm")
    shape = a.shape(node.inputs[0])
    if perm is None:
        if shape is None:
            a.block(lay, f"{_where(node)} reverses axes of a tensor of unknown rank")
            return
        perm = list(range(len(shape)))[::-1]
    a.set_layout(node.outputs[0], lay.moved(list(perm).index(lay.axis)))


@rule("Slice")
def _slice(a: ChannelAnalysis, node: Node) -> None:
    """A slice along other axes keeps every channel; one along the channel axis (step 1,
    constant bounds on whole positions) keeps positions ``[start, end)``, the spaces it
    cuts through being split there (:func:`_cut`), and its bounds become sites."""
    lay = _data_layout(a, node)
    if lay is None:
        return
    src, dst = a.shape(node.inputs[0]), a.shape(node.outputs[0])
    if src is None or dst is None or len(src) != len(dst):
        a.block(lay, f"they reach {_where(node)}, whose shapes are unknown")
        return
    if src[lay.axis] == dst[lay.axis] and isinstance(src[lay.axis], int):
        a.set_layout(node.outputs[0], lay)
        return
    span = _channel_span(a, node, lay, src)
    if span is None:
        a.block(lay, f"they reach {_where(node)}, which slices them")
        return
    entry, start, end = span
    out = _cut(a, node.inputs[0], start // lay.inner, end // lay.inner)
    for index in (1, 2):
        a.site(node, index, entry, node.inputs[0], "bounds")
    a.set_layout(node.outputs[0], out)


def _channel_span(
    a: ChannelAnalysis, node: Node, lay: Layout, shape: tuple
) -> tuple[int, int, int] | None:
    """``(entry, start, end)`` of a Slice along the channel axis, ``entry`` being the
    axis' place in the bound lists, or ``None`` unless it is a step-1 slice with constant
    bounds (ONNX inputs, opset 10 on) that starts and ends on whole positions."""
    consts = [a.const(t) if t else None for t in node.inputs[1:5]] + [None] * 4
    starts, ends, axes, steps = consts[:4]
    if starts is None or ends is None or len(node.inputs) < 3:
        return None
    rank, dim = len(shape), shape[lay.axis]
    axes = list(range(len(starts))) if axes is None else [int(x) % rank for x in axes]
    if lay.axis not in axes or not isinstance(dim, int):
        return None
    k = axes.index(lay.axis)
    if (len(node.inputs) > 4 and node.inputs[4]) and (steps is None or int(steps[k]) != 1):
        return None
    start, end = (min(max(int(v) + (dim if v < 0 else 0), 0), dim) for v in (starts[k], ends[k]))
    if start >= end or start % lay.inner or end % lay.inner:
        return None
    return k, start, end


def _cut(a: ChannelAnalysis, tensor: str, start: int, end: int) -> Layout:
    """The layout of positions ``[start, end)`` of ``tensor``. A space that the bounds cut
    through is split in two, with every space coupled to it: the positions before the cut
    keep the space's id, those after it form a new group (named ``layer#2`` for the second
    part, ``layer#3`` for the third: names that pruning does not change), channel ``i``
    of a tail still coupled to channel ``i`` of the other tails."""
    for bound in (start, end):
        offset = 0
        for s, n in a.layout[tensor].segs:
            if s != FIXED and offset < bound < offset + n:
                _split_space(a, s, bound - offset)
                break
            offset += n
    lay, segs, offset = a.layout[tensor], [], 0
    for s, n in lay.segs:
        lo, hi = max(offset, start), min(offset + n, end)
        if lo < hi:
            segs.append((s, hi - lo))  # a fixed segment may be cut anywhere
        offset += n
    return make_layout(lay.axis, lay.inner, segs)


def _split_space(a: ChannelAnalysis, space: int, k: int) -> None:
    root = a.find(space)
    members = [s for s in range(len(a.size)) if a.find(s) == root]
    n, tails = a.size[root], {}
    for s in members:
        tails[s] = t = a.new_space(a.graph.node(a.origin[s]), n - k)
        a.size[s] = k
        a.reasons[t] = list(a.reasons[s])
        a.space_tensors[t] = list(a.space_tensors[s])
        a.labels[t] = f"{a.origin[s]}#{sum(x == a.origin[s] for x in a.origin)}"
    for t in tails.values():
        a.union(t, min(tails.values()))
    for name in dict.fromkeys(t for s in members for t in a.space_tensors[s]):
        old = a.layout[name]
        segs = tuple(part for s, m in old.segs for part in _halves(s, m, k, tails))
        a.layout[name] = Layout(old.axis, old.inner, segs)


def _halves(s: int, n: int, k: int, tails: dict[int, int]) -> list[tuple[int, int]]:
    return [(s, k), (tails[s], n - k)] if s in tails else [(s, n)]


@rule("Split")
def _split(a: ChannelAnalysis, node: Node) -> None:
    lay, shape = _data_layout(a, node), a.shape(node.inputs[0])
    if lay is None:
        return
    if shape is None or int(node.attr("axis", 0)) % len(shape) == lay.axis:
        a.block(lay, f"they reach {_where(node)}, which splits them")
        return
    for out in node.outputs:
        a.set_layout(out, lay)


@rule("Gather")
def _gather(a: ChannelAnalysis, node: Node) -> None:
    """Gathering along another axis moves the channel axis by the indices' rank − 1."""
    lay, shape = a.layout.get(node.inputs[0]), a.shape(node.inputs[0])
    a.block(a.layout.get(node.inputs[1]), f"{_where(node)} reads them as indices")
    if lay is None:
        return
    idx = a.shape(node.inputs[1])
    axis = int(node.attr("axis", 0)) % len(shape) if shape is not None else None
    if axis is None or idx is None or axis == lay.axis:
        a.block(lay, f"they reach {_where(node)}, which gathers along them")
        return
    a.set_layout(node.outputs[0], lay.moved(lay.axis + (len(idx) - 1 if axis < lay.axis else 0)))


@rule("Concat")
def _concat(a: ChannelAnalysis, node: Node) -> None:
    carriers = [a.layout[t] for t in node.inputs if t in a.layout]
    if not carriers:
        return
    shapes = [a.shape(t) for t in node.inputs]
    if any(s is None for s in shapes):
        for lay in carriers:
            a.block(lay, f"{_where(node)} has inputs of unknown shape")
        return
    axis = int(node.attr("axis", 1)) % len(shapes[0])
    inner = carriers[0].inner
    if all(lay.axis != axis for lay in carriers) and len(carriers) == len(node.inputs):
        # along another axis (a layer's h and c stacked into one state): position p of
        # every input is position p of the output, so they go together
        for lay in carriers[1:]:
            a.unify(carriers[0], lay, _where(node))
        a.set_layout(node.outputs[0], carriers[0])
        return
    if any(lay.axis != axis or lay.inner != inner for lay in carriers) or any(
        not isinstance(s[axis], int) or s[axis] % inner for s in shapes
    ):
        for lay in carriers:
            a.block(lay, f"{_where(node)} concatenates along axis {axis}, not their channel axis")
        return
    segs: list[tuple[int, int]] = []
    for t, shape in zip(node.inputs, shapes):
        segs.extend(a.layout[t].segs if t in a.layout else [(FIXED, shape[axis] // inner)])
    a.set_layout(node.outputs[0], make_layout(axis, inner, segs))


@rule("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def _reshape(a: ChannelAnalysis, node: Node) -> None:
    lay = a.layout.get(node.inputs[0])
    for t in node.inputs[1:]:
        a.block(a.layout.get(t), f"{_where(node)} reads them as a shape")
    if lay is None:
        return
    src, dst = a.shape(node.inputs[0]), a.shape(node.outputs[0])
    if not (_static(src) and _static(dst)):
        a.block(lay, f"they reach {_where(node)}, whose shapes are not static")
        return
    if node.op_type == "Reshape" and a.const(node.inputs[1]) is None:
        a.block(lay, f"{_where(node)} computes its target shape at run time")
        return
    out = _regroup(src, dst, lay) or _split_units(a, node.inputs[0], src, dst)
    if out is None:
        a.block(lay, f"they reach {_where(node)}, which mixes the channels with other dims")
        return
    if node.op_type == "Reshape":
        a.site(node, 1, out.axis, node.outputs[0], "shape")
    a.set_layout(node.outputs[0], out)


def _static(shape: tuple | None) -> bool:
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


def _regroup(src: tuple[int, ...], dst: tuple[int, ...], lay: Layout) -> Layout | None:
    """The layout of the reshaped tensor when whole channel blocks map to an output axis,
    or ``None`` (the memory-block mapping of the module docstring of ``depgraph``).

    Leading axes merged into the channel axis (a bidirectional recurrent output
    ``[S, B, 2, H] → [S, B, 2·H]``) repeat the layout once per index of those axes."""
    block = lay.inner * math.prod(src[lay.axis + 1 :])
    for k in range(lay.axis, -1, -1):
        pre, copies = math.prod(src[:k]), math.prod(src[k : lay.axis])
        run = 1
        for j, d in enumerate(dst):
            if run == pre:
                rest = math.prod(dst[j + 1 :])
                if rest and block % rest == 0 and d == copies * lay.positions * (block // rest):
                    return Layout(j, block // rest, lay.segs * copies)
            run *= d
            if run > pre:
                break
    return None


def _split_units(
    a: ChannelAnalysis, tensor: str, src: tuple[int, ...], dst: tuple[int, ...]
) -> Layout | None:
    """The layout after a Reshape that splits the channel axis into several axes, as
    attention splits a projection into ``(heads, head_dim)`` or a fused one into
    ``(3, heads, head_dim)``; ``None`` if no axis of the split can carry them.

    An axis ``u`` of the split carries the channels in units of the elements after it:
    with ``m`` elements of the split before ``u`` and ``g`` channels per index of ``u``,
    the group is refined (:func:`_refine`) so that a channel is a unit of ``g`` (a head)
    present in each of the ``m`` copies (query, key and value of that head). Without a
    refinement (``g = 1`` and a layout already repeated ``m`` times) any axis will do;
    otherwise the last-but-one axis of the split is preferred (the heads of
    ``(heads, head_dim)``), then the others from the last."""
    lay = a.layout[tensor]
    block = lay.inner * math.prod(src[lay.axis + 1 :])
    pre = math.prod(src[: lay.axis])
    j, run = 0, 1
    while j < len(dst) and run < pre:
        run *= dst[j]
        j += 1
    if run != pre:
        return None
    last = len(dst) - 1
    while last > j and math.prod(dst[j : last + 1]) != lay.positions * block:
        last -= 1
    options = []
    for u in range(j, last + 1):
        if (lay.positions * lay.inner) % math.prod(dst[j : u + 1]):
            break  # past the channel axis, into the axes after it
        m, units, rest = math.prod(dst[j:u]), dst[u], math.prod(dst[u + 1 :])
        if rest >= block:
            if rest % block:
                continue
            g, inner = rest // block, 1
        elif block % rest:
            continue
        else:
            g, inner = 1, block // rest
        if lay.positions % (g * m) or units != lay.positions // (g * m) * inner:
            continue
        options.append((u, m, g, inner))
    free = [o for o in options if o[2] == 1 and _repeats(lay.segs, o[1])]
    if free:
        u, m, _, inner = free[0]
        return Layout(u, inner, lay.segs[: len(lay.segs) // m])
    order = sorted(options, key=lambda o: (o[0] != last - 1, -o[0]))
    for u, m, g, inner in order:
        if _refine(a, lay, g, m):
            segs = a.layout[tensor].segs
            return Layout(u, inner, segs[: len(segs) // m])
    return None


def _repeats(segs: tuple, m: int) -> bool:
    if m == 1:
        return True
    if len(segs) % m:
        return False
    n = len(segs) // m
    return all(segs[i * n : (i + 1) * n] == segs[:n] for i in range(m))


def _refine(a: ChannelAnalysis, lay: Layout, g: int, m: int) -> bool:
    """Coarsen the group of ``lay`` so that one channel is ``g`` adjacent old channels
    (a head of ``g`` dims), the same in each of ``m`` equal parts of the space (query,
    key and value of a fused projection): every tensor of the group gets its new layout
    and the group its new size. Refused (False) unless every tensor of the group holds
    exactly the group's channels, once, and they divide evenly."""
    if len(lay.segs) != 1 or lay.segs[0][0] == FIXED:
        return False
    root = a.find(lay.segs[0][0])
    members = [s for s in range(len(a.size)) if a.find(s) == root]
    n = a.size[root]
    if n % (g * m):
        return False
    tensors = dict.fromkeys(t for s in members for t in a.space_tensors[s])
    for t in tensors:
        segs = a.layout[t].segs
        if len(segs) != 1 or a.find(segs[0][0]) != root or segs[0][1] != n:
            return False
    units = n // (g * m)
    for s in members:
        a.size[s] = units
    for t in tensors:
        old = a.layout[t]
        a.layout[t] = Layout(old.axis, old.inner * g, ((old.segs[0][0], units),) * m)
    return True
