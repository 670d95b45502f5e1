"""More math: trigonometric and hyperbolic functions, Softsign, Shrink, Swish, IsInf,
IsNaN, Hardmax, EyeLike, Det, Compress, ReverseSequence, ScatterND and TensorScatter.

Hardmax before opset 13 works on the input flattened to 2-D at ``axis``, as Softmax
does; IsInf, IsNaN, Hardmax and the index ops pass no gradient.
"""

from __future__ import annotations

import math

import torch

from hwcc.ir import Node
from hwcc.train.ops.logic_ops import torch_dtype
from hwcc.train.ops.registry import BuildContext, OpFn, register, reject

_UNARY: dict[str, OpFn] = {
    "Tan": torch.tan,
    "Asin": torch.asin,
    "Acos": torch.acos,
    "Atan": torch.atan,
    "Sinh": torch.sinh,
    "Cosh": torch.cosh,
    "Asinh": torch.asinh,
    "Acosh": torch.acosh,
    "Atanh": torch.atanh,
    "Softsign": torch.nn.functional.softsign,
    "IsNaN": torch.isnan,
}

for _op, _fn in _UNARY.items():
    register(_op)(lambda node, ctx, fn=_fn: fn)


@register("Shrink")
def _shrink(node: Node, ctx: BuildContext) -> OpFn:
    lambd, bias = float(node.attr("lambd", 0.5)), float(node.attr("bias", 0.0))

    def run(x):
        zero = torch.zeros((), dtype=x.dtype)
        return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero)).to(x.dtype)

    return run


@register("Swish")
def _swish(node: Node, ctx: BuildContext) -> OpFn:
    alpha = float(node.attr("alpha", 1.0))
    return lambda x: x * torch.sigmoid(alpha * x)


@register("IsInf")
def _is_inf(node: Node, ctx: BuildContext) -> OpFn:
    neg, pos = bool(node.attr("detect_negative", 1)), bool(node.attr("detect_positive", 1))
    return lambda x: (torch.isneginf(x) & neg) | (torch.isposinf(x) & pos)


@register("Hardmax")
def _hardmax(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis", -1 if ctx.opset >= 13 else 1))

    def hard(x, a):  # one at the first maximum along ``a``
        idx = torch.argmax(x, a, keepdim=True)
        return torch.zeros_like(x).scatter(a, idx, 1)

    if ctx.opset >= 13:
        return lambda x: hard(x, axis % x.dim())

    def run(x):
        a = axis % x.dim()
        return hard(x.reshape(math.prod(x.shape[:a]), -1), 1).reshape(x.shape)

    return run


@register("EyeLike")
def _eye_like(node: Node, ctx: BuildContext) -> OpFn:
    k = int(node.attr("k", 0))
    to = node.attr("dtype")
    dtype = torch_dtype(int(to)) if to is not None else None
    if to is not None and dtype is None:
        raise reject(node, f"dtype={to} has no torch dtype here", "use a numeric dtype")

    def run(x):
        ones = torch.ones(x.shape, dtype=torch.float32)  # the k-th diagonal: triu(k) & tril(k)
        return ones.triu(k).tril(k).to(dtype or x.dtype)

    return run


@register("Det")
def _det(node: Node, ctx: BuildContext) -> OpFn:
    return torch.linalg.det


@register("Compress")
def _compress(node: Node, ctx: BuildContext) -> OpFn:
    axis = node.attr("axis")

    def run(x, cond):
        keep = torch.nonzero(cond.reshape(-1)).reshape(-1)
        if axis is None:
            x = x.reshape(-1)
            return x[keep[keep < x.numel()]]
        a = int(axis) % x.dim()
        return x.index_select(a, keep[keep < x.shape[a]])

    return run


@register("ReverseSequence")
def _reverse_sequence(node: Node, ctx: BuildContext) -> OpFn:
    batch_axis, time_axis = int(node.attr("batch_axis", 1)), int(node.attr("time_axis", 0))

    def run(x, lengths):
        out = x.clone()
        for b, n in enumerate(lengths.tolist()):
            row = x.select(batch_axis, b)
            t = time_axis - (time_axis > batch_axis)
            flipped = row.narrow(t, 0, int(n)).flip(t)
            out.select(batch_axis, b).narrow(t, 0, int(n)).copy_(flipped)
        return out

    return run


_REDUCTIONS = {"add": torch.add, "mul": torch.mul, "max": torch.maximum, "min": torch.minimum}


@register("ScatterND")
def _scatter_nd(node: Node, ctx: BuildContext) -> OpFn:
    reduction = node.attr("reduction", "none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    if reduction != "none" and reduction not in _REDUCTIONS:
        raise reject(node, f"reduction={reduction!r} is not an ONNX value", "use none, add, mul")

    def run(x, idx, updates):
        k = idx.shape[-1]
        flat_idx = idx.reshape(-1, k)
        flat_up = updates.reshape(flat_idx.shape[0], *x.shape[k:])
        out = x.clone()
        for i, where in enumerate(flat_idx.tolist()):
            where = tuple(w % s for w, s in zip(where, x.shape))
            value = flat_up[i]
            out[where] = value if reduction == "none" else _REDUCTIONS[reduction](out[where], value)
        return out

    return run


@register("TensorScatter")
def _tensor_scatter(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis", -2))
    circular = node.attr("mode", "linear") in ("circular", b"circular")

    def run(past, update, write=None):
        a = axis % past.dim()
        out = past.clone()
        starts = [0] * past.shape[0] if write is None else write.tolist()
        for b, start in enumerate(starts):
            n = update.shape[a]
            pos = [
                (int(start) + i) % past.shape[a] if circular else int(start) + i for i in range(n)
            ]
            index = torch.tensor(pos)
            out[b].index_copy_(a - 1, index, update[b])
        return out

    return run
