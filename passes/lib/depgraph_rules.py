"""How each op moves channels, for :mod:`hwcc.passes.lib.depgraph` (one rule per op family).

A rule reads the layouts of its node's inputs and, as the op dictates, creates a channel
space for its output (layers with constant weights), carries a layout through (unary ops,
pooling, normalisation, depthwise convolution, Concat, Flatten/Reshape), merges layouts
(element-wise ops with several channel-carrying operands), records the sites the channels
index, or marks the channels unprunable with a reason. Ops without a rule stop every
channel that reaches them.
"""

from __future__ import annotations

from hwcc.ir import Node
from hwcc.passes.lib.depgraph import ChannelAnalysis, Layout, make_layout, rule

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
