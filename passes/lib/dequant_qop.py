"""Operator-format quantization (``QLinearConv``, ``QLinearMatMul``, ``QGemm``, ...) put
into QDQ form, for the dequantize pass to finish.

A ``QLinearOp(xq, sx, zx, wq, sw, zw, sy, zy)`` computes ``Q(Op(DQ(xq), DQ(wq)), sy, zy)``.
It is rewritten as exactly that: the weight becomes its dequantized constant, an int32
bias becomes ``bias·sx·sw``, activations get a ``DequantizeLinear`` and the result a
``QuantizeLinear``. Those meet the ``QuantizeLinear``/``DequantizeLinear`` of the
neighbouring ops and the pass removes the pairs as it does in QDQ models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwcc.ir import Graph, Node
from hwcc.passes.lib.dequant_common import dequantize_array, float_constant, refuse
from hwcc.passes.lib.edits import constant_value

__all__ = ["QOPERATOR_OPS", "rewrite_qoperator"]


@dataclass(frozen=True)
class _Spec:
    float_op: str
    operands: tuple[tuple[int, int, int], ...]  # (value, scale, zero point) input indices
    output: tuple[int, int] | None  # (scale, zero point) of the result; None: float result
    bias: int | None = None
    attrs: tuple[str, ...] = ()


_BINARY = ((0, 1, 2), (3, 4, 5))
_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_SPECS = {
    ("", "QLinearConv"): _Spec("Conv", _BINARY, (6, 7), 8, _CONV_ATTRS),
    ("", "QLinearMatMul"): _Spec("MatMul", _BINARY, (6, 7)),
    ("com.microsoft", "QGemm"): _Spec("Gemm", _BINARY, (7, 8), 6, ("transA", "transB")),
    ("com.microsoft", "QLinearAdd"): _Spec("Add", _BINARY, (6, 7)),
    ("com.microsoft", "QLinearMul"): _Spec("Mul", _BINARY, (6, 7)),
    ("com.microsoft", "QLinearSigmoid"): _Spec("Sigmoid", ((0, 1, 2),), (3, 4)),
    ("com.microsoft", "QLinearLeakyRelu"): _Spec(
        "LeakyRelu", ((0, 1, 2),), (3, 4), None, ("alpha",)
    ),
    ("com.microsoft", "QLinearGlobalAveragePool"): _Spec("GlobalAveragePool", ((0, 1, 2),), (3, 4)),
}
QOPERATOR_OPS = set(_SPECS)


def rewrite_qoperator(g: Graph, node: Node) -> None:
    """Replace the operator-format quantized ``node`` by DQ -> float op -> Q."""
    spec = _SPECS[(node.domain if node.domain != "ai.onnx" else "", node.op_type)]
    ins = list(node.inputs) + [""] * (9 - len(node.inputs))
    if node.attr("channels_last", 0) or (
        spec.float_op == "Gemm" and node.attr("alpha", 1.0) != 1.0
    ):
        raise refuse(node, "its layout or alpha has no plain float equivalent here")
    scales, new_nodes, inputs = [], [], []
    for k, (vi, si, zi) in enumerate(spec.operands):
        scale = constant_value(g, ins[si])
        zp = constant_value(g, ins[zi]) if ins[zi] else None
        if scale is None or (ins[zi] and zp is None):
            raise refuse(node, f"the scale or zero point of input {ins[vi]!r} is not a constant")
        scales.append(scale)
        q = constant_value(g, ins[vi])
        if q is not None:
            axis = _weight_axis(node, spec, k, q) if scale.size > 1 else None
            inputs.append(float_constant(g, ins[vi], dequantize_array(q, scale, zp, axis)))
        elif scale.size == 1:
            new_nodes.append(("DequantizeLinear", [ins[vi], ins[si], ins[zi]]))
            inputs.append("")
        else:
            raise refuse(node, f"input {ins[vi]!r} is quantized per channel but not a constant")
    if spec.bias is not None and ins[spec.bias]:
        inputs.append(_bias(g, node, ins[spec.bias], scales))
    attrs = {a: node.attrs[a] for a in spec.attrs if a in node.attrs}
    g.erase_node(node, force=True)
    for op, args in new_nodes:
        dq = g.add_node(op, [t for t in args if t], 1, name=f"{node.name}_dq")
        inputs[inputs.index("")] = dq.outputs[0]
    out_q = spec.output and ins[spec.output[0]]
    outputs = 1 if out_q else [node.outputs[0]]
    f = g.add_node(spec.float_op, inputs, outputs, attrs, name=node.name)
    if out_q:
        sy, zy = ins[spec.output[0]], ins[spec.output[1]]
        args = [f.outputs[0], sy, zy] if zy else [f.outputs[0], sy]
        g.add_node("QuantizeLinear", args, [node.outputs[0]], name=f"{node.name}_q")


def _weight_axis(node: Node, spec: _Spec, k: int, q: np.ndarray) -> int:
    if spec.float_op == "Conv" and k == 1:
        return 0
    if spec.float_op == "MatMul" and k == 1 and q.ndim == 2:
        return 1
    if spec.float_op == "Gemm" and k == 1:
        return 0 if node.attr("transB", 0) else 1
    raise refuse(node, f"operand {k} is quantized per channel where no channel axis is known")


def _bias(g: Graph, node: Node, name: str, scales: list[np.ndarray]) -> str:
    b = constant_value(g, name)
    if b is None or b.dtype != np.int32 or scales[0].size != 1:
        raise refuse(node, f"its bias {name!r} is not a constant int32 vector")
    scale = scales[0].astype(np.float32).reshape(()) * scales[1].astype(np.float32).reshape(-1)
    return float_constant(g, name, (b.astype(np.float32) * scale).astype(np.float32))
