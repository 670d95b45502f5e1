"""How each op moves channels, for :mod:`hwcc.passes.lib.depgraph` (one rule per op family).

A rule reads the layouts of its node's inputs and, as the op dictates, creates a channel
space for its output (layers with constant weights), carries a layout through (unary ops,
pooling, normalisation, depthwise convolution, Concat, Flatten/Reshape), merges layouts
(element-wise ops with several channel-carrying operands), records the sites the channels
index, or marks the channels unprunable with a reason. Ops without a rule stop every
channel that reaches them.
"""

from __future__ import annotations

import math

from hwcc.ir import Node
from hwcc.passes.lib.depgraph import FIXED, ChannelAnalysis, Layout, make_layout, rule

_UNARY = (
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "ThresholdedRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softplus",
    "Softsign",
    "Gelu",
    "Mish",
    "Erf",
    "Abs",
    "Neg",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Identity",
    "Dropout",
    "Cast",
    "Clip",
    "Not",
    "IsNaN",
    "IsInf",
)
_ELEMENTWISE = (
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "PRelu",
    "And",
    "Or",
    "Xor",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
)
_MIXING = {
    "LRN": "mixes neighbouring channels",
    "Shape": "reads the channel count at run time",
    "Size": "reads the channel count at run time",
}


def _where(node: Node) -> str:
    return f"{node.op_type} {node.name!r}"


def _data_layout(a: ChannelAnalysis, node: Node) -> Layout | None:
    """The layout of the node's data input (its first); channels that reach any other
    input are read as a parameter there and cannot shrink."""
    for t in node.inputs[1:]:
        a.block(a.layout.get(t), f"{_where(node)} reads them as a parameter")
    return a.layout.get(node.inputs[0]) if node.inputs else None


@rule(*_UNARY)
def _unary(a: ChannelAnalysis, node: Node) -> None:
    lay = _data_layout(a, node)
    if lay is not None:
        for out in node.outputs:
            a.set_layout(out, lay)


@rule(*_MIXING)
def _mixing(a: ChannelAnalysis, node: Node) -> None:
    for t in node.inputs:
        a.block(a.layout.get(t), f"they reach {_where(node)}, which {_MIXING[node.op_type]}")


def _spatial(a: ChannelAnalysis, node: Node, lay: Layout | None, blocks: bool = False) -> bool:
    """True if ``lay`` is an NCHW channel axis (axis 1, one element per position, or with
    ``blocks`` several: a unit of a channel shuffle, read by a layer's input columns)."""
    if lay is None:
        return False
    if lay.axis != 1 or (lay.inner != 1 and not blocks):
        a.block(lay, f"{_where(node)} expects them on axis 1 of an N×C×… tensor")
        return False
    return True


@rule("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _pool(a: ChannelAnalysis, node: Node) -> None:
    lay = a.layout.get(node.inputs[0])
    if not _spatial(a, node, lay):
        return
    if len(node.outputs) > 1 and node.outputs[1]:
        a.block(lay, f"{_where(node)} returns indices that count channels")
        return
    a.set_layout(node.outputs[0], lay)


@rule("Resize", "Upsample")
def _resize(a: ChannelAnalysis, node: Node) -> None:
    """Resampling moves positions within each channel: the channels pass through when the
    scale on axis 1 is 1; a ``sizes`` operand names the channel count and is rewritten."""
    lay, ins = a.layout.get(node.inputs[0]), list(node.inputs) + ["", "", ""]
    for t in node.inputs[1:]:
        a.block(a.layout.get(t) if t else None, f"{_where(node)} reads them as a parameter")
    if not _spatial(a, node, lay):
        return
    at = 1 if node.op_type == "Upsample" or len(node.inputs) == 2 else 2  # opset 10: (X, scales)
    scales = node.attr("scales") if node.op_type == "Upsample" else None
    scales = scales if scales is not None else (a.const(ins[at]) if ins[at] else None)
    if ins[3] and node.op_type == "Resize" and a.const(ins[3]) is not None:
        a.site(node, 3, 1, node.outputs[0], "shape")
    elif scales is None or len(scales) < 2 or float(scales[1]) != 1.0:
        a.block(lay, f"{_where(node)} scales the channel axis, or its scales or sizes vary")
        return
    a.set_layout(node.outputs[0], lay)


@rule("BatchNormalization", "InstanceNormalization")
def _norm(a: ChannelAnalysis, node: Node) -> None:
    lay = _data_layout(a, node)
    if not _spatial(a, node, lay):
        return
    if sum(1 for o in node.outputs if o) > 1 or node.attr("training_mode", 0):
        a.block(lay, f"{_where(node)} is in training mode")
        return
    for i, t in enumerate(node.inputs[1:], start=1):
        value = a.const(t)
        if value is None or value.shape != (lay.positions,):
            a.block(
                lay,
                f"{_where(node)} has a parameter {t!r} that is not a constant vector per channel",
            )
            return
    for i in range(1, len(node.inputs)):
        a.site(node, i, 0, node.inputs[0], "param")
    a.set_layout(node.outputs[0], lay)


@rule("Conv")
def _conv(a: ChannelAnalysis, node: Node) -> None:
    x = node.inputs[0]
    lay = a.layout.get(x)
    w = a.const(node.inputs[1])
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    if w is None or (bias and a.const(bias) is None):
        a.block(lay, f"{_where(node)} has a weight or bias that is not constant")
        return
    group = int(node.attr("group", 1))
    m, c = w.shape[0], w.shape[1] * group
    out = node.outputs[0]
    if group == 1:
        if lay is not None and _spatial(a, node, lay, blocks=True):
            a.site(node, 1, 1, x, "consumer")
        s = a.new_space(node, m)
        a.set_layout(out, make_layout(1, 1, [(s, m)]))
    elif group == c == m:  # depthwise: channel i in, channel i out
        if lay is None or not _spatial(a, node, lay):
            return
        a.set_layout(out, lay)
        a.site(node, -1, 0, out, "group")
    else:  # a channel of a group cannot go alone: every group must keep as many
        why = f"{_where(node)} is a grouped convolution (group={group}) that is not depthwise"
        a.block(lay, f"they reach {why}")
        a.block(make_layout(1, 1, [(a.new_space(node, m), m)]), f"they come from {why}")
        return
    a.site(node, 1, 0, out, "filter")
    if bias:
        a.site(node, 2, 0, out, "param")


@rule("Gemm")
def _gemm(a: ChannelAnalysis, node: Node) -> None:
    x, w_name = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    lay = a.layout.get(x)
    for t in (w_name, bias):
        a.block(a.layout.get(t), f"{_where(node)} reads them as its weight or bias")
    w, trans_b = a.const(w_name), int(node.attr("transB", 0))
    if w is None or w.ndim != 2:
        a.block(lay, f"they reach {_where(node)}, whose weight is not constant")
        return
    if lay is not None:
        if node.attr("transA", 0) or lay.axis != 1:
            a.block(lay, f"{_where(node)} does not contract over them")
        else:
            a.site(node, 1, 1 if trans_b else 0, x, "consumer")
    c = a.const(bias) if bias else None
    if bias and c is None:
        return
    n = w.shape[0] if trans_b else w.shape[1]
    s = a.new_space(node, n)
    a.set_layout(node.outputs[0], make_layout(1, 1, [(s, n)]))
    a.site(node, 1, 0 if trans_b else 1, node.outputs[0], "filter")
    if c is not None and c.ndim >= 1 and c.shape[-1] == n and n > 1:
        a.site(node, 2, c.ndim - 1, node.outputs[0], "param")


@rule("MatMul")
def _matmul(a: ChannelAnalysis, node: Node) -> None:
    x, w_name = node.inputs
    lay = a.layout.get(x)
    w, shape = a.const(w_name), a.shape(x)
    if w is None and (lay is not None or w_name in a.layout):
        _batched_matmul(a, node)
        return
    a.block(a.layout.get(w_name), f"{_where(node)} reads them as its right operand")
    if w is None or w.ndim != 2 or shape is None:
        a.block(lay, f"they reach {_where(node)}, whose weight is not a constant matrix")
        return
    if lay is not None:
        if lay.axis != len(shape) - 1:
            a.block(lay, f"{_where(node)} does not contract over them")
        else:
            a.site(node, 1, 0, x, "consumer")
    out = a.shape(node.outputs[0])
    if out is None:
        return
    s = a.new_space(node, w.shape[1])
    a.set_layout(node.outputs[0], make_layout(len(out) - 1, 1, [(s, w.shape[1])]))
    a.site(node, 1, 1, node.outputs[0], "filter")


def _batched_matmul(a: ChannelAnalysis, node: Node) -> None:
    """A product of two computed tensors (attention's ``Q·Kᵀ`` and ``P·V``): channels on
    the contracted axis of both operands go together (and leave the product); channels
    on ``A``'s rows, ``B``'s columns or a batch axis (attention heads) carry through to
    the same axis of the product, and batch axes of both operands are tied."""
    (x, y), out = node.inputs, node.outputs[0]
    la, lb = a.layout.get(x), a.layout.get(y)
    sa, sb, so = a.shape(x), a.shape(y), a.shape(out)
    if sa is None or sb is None or so is None or min(len(sa), len(sb)) < 2:
        for lay in (la, lb):
            a.block(lay, f"{_where(node)} multiplies operands of unknown or vector shape")
        return
    r = len(so)
    ka = la is not None and la.axis == len(sa) - 1
    kb = lb is not None and lb.axis == len(sb) - 2
    if ka and kb:
        a.unify(la, lb, _where(node))
    elif ka or kb:
        a.block(la if ka else lb, f"{_where(node)} contracts them with channels that cannot shrink")
    placed: dict[int, list[tuple[Layout, tuple]]] = {}
    for lay, shape, contracted, last in ((la, sa, ka, r - 2), (lb, sb, kb, r - 1)):
        if lay is None or contracted:
            continue
        matrix_axis = len(shape) - 2 if shape is sa else len(shape) - 1
        axis = last if lay.axis == matrix_axis else r - len(shape) + lay.axis
        placed.setdefault(axis, []).append((lay, shape))
    if len(placed) > 1:
        for lays in placed.values():
            for lay, _ in lays:
                a.block(lay, f"{_where(node)} puts channels of both operands on different axes")
        return
    for axis, lays in placed.items():
        base = lays[0][0]
        for lay, _ in lays[1:]:
            a.unify(base, lay, _where(node))
        if axis < r - 2 and len(lays) == 1:  # a batch axis of one operand only
            other = sb if lays[0][1] is sa else sa
            own = axis - (r - len(other))
            if own >= 0 and other[own] != 1:
                a.block(base, f"{_where(node)} pairs them with a batch axis that cannot shrink")
                return
        a.set_layout(out, base.moved(axis))


@rule("Softmax", "LogSoftmax", "Hardmax")
def _softmax(a: ChannelAnalysis, node: Node) -> None:
    """Normalising along another axis keeps the channels apart; along the channel axis (or,
    before opset 13, over a flattened tail that holds it) it mixes them."""
    lay, shape = a.layout.get(node.inputs[0]), a.shape(node.inputs[0])
    if lay is None:
        return
    if shape is None:
        a.block(lay, f"{_where(node)} normalises a tensor of unknown rank")
        return
    opset = a.graph.opset_imports.get("", a.graph.opset_imports.get("ai.onnx", 13))
    axis = int(node.attr("axis", -1 if opset >= 13 else 1)) % len(shape)
    if (lay.axis == axis) if opset >= 13 else (lay.axis >= axis):
        a.block(lay, f"they reach {_where(node)}, which normalises across them")
        return
    a.set_layout(node.outputs[0], lay)


@rule("LayerNormalization")
def _layer_norm(a: ChannelAnalysis, node: Node) -> None:
    """Layer normalisation over the axes after the channels treats each channel alone."""
    lay, shape = _data_layout(a, node), a.shape(node.inputs[0])
    if lay is None:
        return
    if shape is None or lay.axis >= int(node.attr("axis", -1)) % len(shape):
        a.block(lay, f"they reach {_where(node)}, which normalises over them")
        return
    if any(node.outputs[1:]):
        a.block(lay, f"{_where(node)} returns its statistics")
        return
    a.set_layout(node.outputs[0], lay)


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
    """A slice along other axes keeps every channel."""
    lay = _data_layout(a, node)
    if lay is None:
        return
    src, dst = a.shape(node.inputs[0]), a.shape(node.outputs[0])
    if src is None or dst is None or len(src) != len(dst):
        a.block(lay, f"they reach {_where(node)}, whose shapes are unknown")
        return
    if src[lay.axis] != dst[lay.axis] or not isinstance(src[lay.axis], int):
        a.block(lay, f"they reach {_where(node)}, which slices them")
        return
    a.set_layout(node.outputs[0], lay)


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


@rule(*_ELEMENTWISE)
def _elementwise(a: ChannelAnalysis, node: Node) -> None:
    carriers = [(i, a.layout[t]) for i, t in enumerate(node.inputs) if t in a.layout]
    if not carriers:
        return
    out_shape = a.shape(node.outputs[0])
    shapes = [a.shape(t) for t in node.inputs]
    if out_shape is None or any(s is None for s in shapes):
        for _, lay in carriers:
            a.block(lay, f"{_where(node)} has operands of unknown shape")
        return
    rank = len(out_shape)
    out_axis = {i: rank - len(shapes[i]) + lay.axis for i, lay in carriers}
    spread = [
        (i, lay) for i, lay in carriers if shapes[i][lay.axis] == 1 and out_shape[out_axis[i]] != 1
    ]
    for _, lay in spread:  # one channel broadcast over the other operands' channels
        a.block(lay, f"{_where(node)} broadcasts them over other channels")
    carriers = [c for c in carriers if c not in spread]
    if not carriers:
        return
    axes = {out_axis[i] for i, _ in carriers}
    first_i, base = carriers[0]
    if len(axes) > 1:
        for _, lay in carriers:
            a.block(lay, f"{_where(node)} combines channels lying on different axes")
        return
    axis = axes.pop()
    for _, lay in carriers[1:]:
        a.unify(base, lay, _where(node))
    size = base.positions * base.inner
    for i, t in enumerate(node.inputs):
        if i in out_axis or not t:
            continue
        own = axis - (rank - len(shapes[i]))
        if own < 0 or shapes[i][own] == 1:
            continue  # broadcast over the channels: nothing to shrink
        if shapes[i][own] == size and a.const(t) is not None:
            a.site(node, i, own, node.inputs[first_i], "param")
        else:
            a.block(base, f"{_where(node)} combines them with {t!r}, whose channels cannot shrink")
    a.set_layout(node.outputs[0], base.moved(axis))


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


@rule(
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceSumSquare",
)
def _reduce(a: ChannelAnalysis, node: Node) -> None:
    lay = a.layout.get(node.inputs[0])
    if lay is None:
        return
    shape = a.shape(node.inputs[0])
    axes = node.attr("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        value = a.const(node.inputs[1])
        axes = None if value is None else [int(v) for v in value.reshape(-1)]
    if shape is None or not axes:
        a.block(lay, f"they reach {_where(node)}, which may reduce over the channels")
        return
    axes = sorted(int(x) % len(shape) for x in axes)
    if lay.axis in axes:
        a.block(lay, f"they reach {_where(node)}, which reduces over the channels")
        return
    keep = int(node.attr("keepdims", 1))
    a.set_layout(
        node.outputs[0], lay.moved(lay.axis - (0 if keep else sum(x < lay.axis for x in axes)))
    )
