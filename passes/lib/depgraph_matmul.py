"""Channel rules of the layers of MLPs and attention, for :mod:`hwcc.passes.lib.depgraph`:
Gemm and MatMul with a constant weight (a channel space), a product of two computed
tensors (attention's ``Q·Kᵀ`` and ``P·V``: contracted channels tie both operands, batch
axes such as heads carry through), and the normalisations attention puts between them
(Softmax, LayerNormalization), which let channels pass along the axes they do not
normalise; and ``quantize_dynamic``'s int8 MatMul (onnxruntime's
``com.microsoft.DynamicQuantizeMatMul``), whose int8 weight is cut as a float one is.
"""

from __future__ import annotations

from hwcc.ir import Node
from hwcc.passes.lib.depgraph import ChannelAnalysis, Layout, make_layout, rule
from hwcc.passes.lib.depgraph_rules import _data_layout, _where  # the shared helpers of the rules


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
    if a.const(w_name) is None and (lay is not None or w_name in a.layout):
        _batched_matmul(a, node)
        return
    a.block(a.layout.get(w_name), f"{_where(node)} reads them as its right operand")
    _weight_matmul(a, node)


@rule("com.microsoft.DynamicQuantizeMatMul")
def _dynamic_quantize_matmul(a: ChannelAnalysis, node: Node) -> None:
    """As a MatMul with a constant weight; a per-column scale, zero point or bias (inputs
    2 to 4) is cut with the columns."""
    for t in node.inputs[1:]:
        a.block(a.layout.get(t), f"{_where(node)} reads them as its weight, scale or bias")
    n = _weight_matmul(a, node)
    for i, t in enumerate(node.inputs[2:5], start=2):
        c = a.const(t) if t else None
        if n and c is not None and c.ndim == 1 and c.shape[0] == n and n > 1:
            a.site(node, i, 0, node.outputs[0], "param")


def _weight_matmul(a: ChannelAnalysis, node: Node) -> int | None:
    """``x · W`` with ``W`` (input 1) a constant matrix: ``x``'s channels on its last axis
    are ``W``'s rows, and the product's are a new space of ``W``'s columns (how many is
    returned; None when the rule could not place them)."""
    x, w_name = node.inputs[0], node.inputs[1]
    lay, w, shape = a.layout.get(x), a.const(w_name), a.shape(x)
    if w is None or w.ndim != 2 or shape is None:
        a.block(lay, f"they reach {_where(node)}, whose weight is not a constant matrix")
        return None
    if lay is not None:
        if lay.axis != len(shape) - 1:
            a.block(lay, f"{_where(node)} does not contract over them")
        else:
            a.site(node, 1, 0, x, "consumer")
    out, n = a.shape(node.outputs[0]), w.shape[1]
    if out is None:
        return None
    s = a.new_space(node, n)
    a.set_layout(node.outputs[0], make_layout(len(out) - 1, 1, [(s, n)]))
    a.site(node, 1, 1, node.outputs[0], "filter")
    return n


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
