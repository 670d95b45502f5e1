"""Dynamic quantization back to float ops (the dequantize pass's half for
``onnxruntime.quantization.quantize_dynamic`` and the older ``onnx.quantize``).

A dynamically quantized Conv or MatMul is a chain

    (xq, sx, zx) = DynamicQuantizeLinear(x)
    acc = ConvInteger(xq, wq, zx, zw)            (or MatMulInteger)
    [acc = acc + Cast(Floor(b / (sx·sw)))]       (older tools quantize the bias too)
    y = Cast(acc, float) · (sx·sw)  [+ b]

whose value is ``Conv(x, (wq − zw)·sw) + b`` up to the rounding of ``x``. That float op
replaces the chain; the bias becomes the Conv's bias. ``DynamicQuantizeLSTM`` (weights
``[dirs, in, 4·hidden]``, transposed from the ONNX layout) becomes an ``LSTM``;
``DynamicQuantizeMatMul`` and ``MatMulIntegerToFloat`` become a ``MatMul`` and an ``Add``.
"""

from __future__ import annotations

import numpy as np

from hwcc.ir import Graph, Node
from hwcc.passes.lib.dequant_common import (
    channel_vector,
    dequantize_array,
    float_constant,
    qrange,
    refuse,
    sole_user,
    traced_constant,
)
from hwcc.passes.lib.edits import constant_value

__all__ = ["DYNAMIC_OPS", "rewrite_dynamic"]

DYNAMIC_OPS = {
    ("", "ConvInteger"),
    ("", "MatMulInteger"),
    ("com.microsoft", "DynamicQuantizeLSTM"),
    ("com.microsoft", "DynamicQuantizeMatMul"),
    ("com.microsoft", "MatMulIntegerToFloat"),
}
_FLOAT = 1


def rewrite_dynamic(g: Graph, node: Node) -> None:
    """Replace the dynamically quantized op ``node`` (and its tail) by float ops."""
    if node.op_type in ("ConvInteger", "MatMulInteger"):
        _integer_op(g, node)
    elif node.op_type == "DynamicQuantizeLSTM":
        _lstm(g, node)
    else:
        _matmul_to_float(g, node)


def _weight(g: Graph, node: Node, index: int, zp_index: int) -> tuple[np.ndarray, np.ndarray]:
    wq = constant_value(g, node.inputs[index]) if len(node.inputs) > index else None
    if wq is None or qrange(wq.dtype) is None:
        raise refuse(node, f"its weight {node.inputs[index]!r} is not a constant 8-bit tensor")
    name = node.inputs[zp_index] if len(node.inputs) > zp_index else ""
    zp = constant_value(g, name) if name else np.zeros((), wq.dtype)
    if zp is None:
        raise refuse(node, f"the weight's zero point {name!r} is not a constant")
    return wq, zp


def _quantizer(g: Graph, node: Node, zp_index: int) -> Node:
    """The DynamicQuantizeLinear that quantizes ``node``'s activation input."""
    dql = g.producer(node.inputs[0])
    if dql is None or dql.op_type != "DynamicQuantizeLinear" or dql.outputs[0] != node.inputs[0]:
        raise refuse(node, "its activation is not quantized by a DynamicQuantizeLinear")
    zp = node.inputs[zp_index] if len(node.inputs) > zp_index else ""
    if zp != dql.outputs[2]:
        raise refuse(node, f"its activation zero point is not {dql.outputs[2]!r}")
    return dql


def _scale_factor(g: Graph, node: Node, tensor: str, sx: str) -> np.ndarray:
    """``c`` where ``tensor = sx·c`` with ``c`` constant (the weight's scale)."""
    p = g.producer(tensor)
    if p is not None and p.op_type == "Mul" and sx in p.inputs and len(p.inputs) == 2:
        other = p.inputs[1] if p.inputs[0] == sx else p.inputs[0]
        value = traced_constant(g, other)
        if value is not None and value.dtype.kind == "f":
            return value
    raise refuse(node, f"its output scale {tensor!r} is not the input's scale times a constant")


def _integer_op(g: Graph, node: Node) -> None:
    conv = node.op_type == "ConvInteger"
    dql = _quantizer(g, node, 2)
    wq, zp = _weight(g, node, 1, 3)
    if not conv and wq.ndim != 2:
        raise refuse(node, "its weight is not a matrix")
    sx = dql.outputs[1]
    n = wq.shape[0] if conv else wq.shape[1]
    rank, axis = (wq.ndim, 1) if conv else (2, -1)
    tail, bias = [], None
    user = sole_user(g, node.outputs[0])
    if user is not None and user.op_type == "Add":  # an integer bias, from older tools
        other = user.inputs[1] if user.inputs[0] == node.outputs[0] else user.inputs[0]
        bias = _integer_bias(g, node, other, sx, rank, axis, n)
        tail.append(user)
        user = sole_user(g, user.outputs[0])
    if user is None or user.op_type != "Cast" or user.attr("to") != _FLOAT:
        raise refuse(node, "its result is not cast to float once, by one Cast")
    tail.append(user)
    mul = sole_user(g, user.outputs[0])
    if mul is None or mul.op_type != "Mul":
        raise refuse(node, "its float result is not multiplied by the scales")
    scale_in = mul.inputs[1] if mul.inputs[0] == user.outputs[0] else mul.inputs[0]
    sw = channel_vector(_scale_factor(g, node, scale_in, sx), rank, axis, n)
    zpv = channel_vector(zp, 1, 0, n)
    if sw is None or zpv is None:
        raise refuse(node, "its weight scale or zero point is neither scalar nor per channel")
    tail.append(mul)
    out = mul.outputs[0]
    if conv and bias is None:  # a float bias added after the scaling joins the Conv
        add = sole_user(g, out)
        other = (add.inputs[1] if add.inputs[0] == out else add.inputs[0]) if add else ""
        value = traced_constant(g, other) if add is not None and add.op_type == "Add" else None
        bias = channel_vector(value, rank, axis, n) if value is not None else None
        if bias is not None:
            tail.append(add)
            out = add.outputs[0]
    w = dequantize_array(wq, sw.astype(np.float32), zpv, 0 if conv else 1)
    inputs = [dql.inputs[0], float_constant(g, node.inputs[1], w)]
    if bias is not None:
        inputs.append(float_constant(g, f"{node.inputs[1]}_bias", bias.astype(np.float32)))
    for t in reversed(tail):
        g.erase_node(t, force=True)
    g.erase_node(node, force=True)
    attrs = dict(node.attrs) if conv else {}
    g.add_node("Conv" if conv else "MatMul", inputs, [out], attrs, name=node.name)


def _integer_bias(
    g: Graph, node: Node, tensor: str, sx: str, rank: int, axis: int, n: int
) -> np.ndarray:
    """The float bias ``b`` behind an integer bias ``Cast(Floor(b / (sx·sw)))``, seen
    through Reshapes, as ``n`` per-channel numbers."""
    shapes, t = [], tensor
    while (p := g.producer(t)) is not None and p.op_type in ("Reshape", "Cast", "Floor", "Round"):
        if p.op_type == "Reshape":
            shape = traced_constant(g, p.inputs[1])
            if shape is None:
                break
            shapes.append(shape)
        t = p.inputs[0]
    p = g.producer(t)
    b = traced_constant(g, p.inputs[0]) if p is not None and p.op_type == "Div" else None
    if b is not None:
        _scale_factor(g, node, p.inputs[1], sx)
        for shape in reversed(shapes):
            b = b.reshape([int(d) for d in shape])
        vector = channel_vector(b, rank, axis, n)
        if vector is not None:
            return vector
    raise refuse(node, f"its integer bias {tensor!r} is not a float bias divided by the scales")


def _lstm(g: Graph, node: Node) -> None:
    ins = list(node.inputs) + [""] * (12 - len(node.inputs))
    weights = []
    for i, (si, zi) in zip((1, 2), ((8, 9), (10, 11)), strict=True):
        q, zp = _weight(g, node, i, zi)
        scale = constant_value(g, ins[si])
        if q.ndim != 3 or scale is None or scale.dtype.kind != "f":
            raise refuse(
                node, f"input {ins[i]!r} or its scale is not a constant [dirs, k, 4·hidden]"
            )
        dirs = q.shape[0]
        s = scale.reshape(dirs, 1, -1) if scale.size > dirs else scale.reshape(-1, 1, 1)
        z = zp.reshape(dirs, 1, -1) if zp.size > dirs else zp.reshape(-1, 1, 1)
        w = (q.astype(np.int64) - z.astype(np.int64)).astype(np.float32) * s.astype(np.float32)
        weights.append(float_constant(g, ins[i], np.transpose(w, (0, 2, 1))))
    inputs = [ins[0], *weights, *ins[3:8]]
    while inputs and not inputs[-1]:
        inputs.pop()
    g.erase_node(node, force=True)
    g.add_node("LSTM", inputs, list(node.outputs), dict(node.attrs), name=node.name)


def _matmul_to_float(g: Graph, node: Node) -> None:
    ins = list(node.inputs) + [""] * (7 - len(node.inputs))
    if node.op_type == "DynamicQuantizeMatMul":  # A, B, b_scale, b_zero_point, bias
        x, scale_name, bias_name = ins[0], ins[2], ins[4]
        wq, zp = _weight(g, node, 1, 3)
        scale = constant_value(g, scale_name)
    else:  # MatMulIntegerToFloat: A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias
        dql = _quantizer(g, node, 4)
        if ins[2] != dql.outputs[1]:
            raise refuse(node, f"its activation scale is not {dql.outputs[1]!r}")
        x, scale_name, bias_name = dql.inputs[0], ins[3], ins[6]
        wq, zp = _weight(g, node, 1, 5)
        scale = constant_value(g, scale_name)
    n = wq.shape[-1] if wq.ndim == 2 else 0
    sw = channel_vector(scale, 2, -1, n) if scale is not None and n else None
    zpv = channel_vector(zp, 2, -1, n) if n else None
    bias = constant_value(g, bias_name) if bias_name else None
    if sw is None or zpv is None or (bias_name and bias is None):
        raise refuse(
            node, "its weight, scale, zero point or bias is not a constant of one value per column"
        )
    w = float_constant(g, ins[1], dequantize_array(wq, sw.astype(np.float32), zpv, 1))
    g.erase_node(node, force=True)
    out = node.outputs[0]
    if bias_name:
        mm = g.add_node("MatMul", [x, w], 1, name=node.name)
        g.add_node("Add", [mm.outputs[0], bias_name], [out], name=f"{node.name}_bias")
    else:
        g.add_node("MatMul", [x, w], [out], name=node.name)
