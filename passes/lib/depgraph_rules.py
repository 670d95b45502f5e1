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
    "Transpose": "moves the channel axis",
    "Softmax": "normalises across an axis",
    "LogSoftmax": "normalises across an axis",
    "LayerNormalization": "normalises over its trailing axes",
    "Shape": "reads the channel count at run time",
    "Size": "reads the channel count at run time",
}


def _where(node: Node) -> str:
    return f"{node.op_type} {node.name!r}"


@rule(*_UNARY)
def _unary(a: ChannelAnalysis, node: Node) -> None:
    lay = a.layout.get(node.inputs[0]) if node.inputs else None
    for t in node.inputs[1:]:
        a.block(a.layout.get(t), f"{_where(node)} reads them as a parameter")
    if lay is not None:
        for out in node.outputs:
            a.set_layout(out, lay)


@rule(*_MIXING)
def _mixing(a: ChannelAnalysis, node: Node) -> None:
    for t in node.inputs:
        a.block(a.layout.get(t), f"they reach {_where(node)}, which {_MIXING[node.op_type]}")


def _spatial(a: ChannelAnalysis, node: Node, lay: Layout | None) -> bool:
    """True if ``lay`` is an NCHW channel axis (axis 1, one element per position)."""
    if lay is None:
        return False
    if lay.axis != 1 or lay.inner != 1:
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
    lay = a.layout.get(node.inputs[0])
    for t in node.inputs[1:]:
        a.block(a.layout.get(t), f"{_where(node)} reads them as a parameter")
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
        if lay is not None and _spatial(a, node, lay):
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
    a.block(a.layout.get(w_name), f"{_where(node)} reads them as its right operand")
    w, shape = a.const(w_name), a.shape(x)
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
    mapped = _regroup(src, dst, lay)
    if mapped is None:
        a.block(lay, f"they reach {_where(node)}, which mixes the channels with other dims")
        return
    axis, inner = mapped
    if node.op_type == "Reshape":
        target = a.const(node.inputs[1])
        if target is None:
            a.block(lay, f"{_where(node)} computes its target shape at run time")
            return
        a.site(node, 1, axis, node.outputs[0], "shape")
    a.set_layout(node.outputs[0], lay.moved(axis, inner))


def _static(shape: tuple | None) -> bool:
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


def _regroup(src: tuple[int, ...], dst: tuple[int, ...], lay: Layout) -> tuple[int, int] | None:
    """The output axis and inner size that carry ``lay``'s channel blocks, or ``None``
    (the memory-block mapping of the module docstring of ``_depgraph``)."""
    pre, block = math.prod(src[: lay.axis]), lay.inner * math.prod(src[lay.axis + 1 :])
    run = 1
    for j, d in enumerate(dst):
        if run == pre:
            rest = math.prod(dst[j + 1 :])
            if rest and block % rest == 0 and d == lay.positions * (block // rest):
                return j, block // rest
        run *= d
        if run > pre:
            break
    return None


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
