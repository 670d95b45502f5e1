"""Ops on dtypes, comparisons, logic, selection, variadic arithmetic and index results.

Cast and CastLike, Range, ConstantOfShape, Expand and Tile; the comparisons (Equal,
Less, LessOrEqual, Greater, GreaterOrEqual); Not, And, Or and Xor; Where; the variadic
Max, Min, Mean and Sum; Size, ArgMax, ArgMin, CumSum, CumProd and NonZero.

All broadcast as numpy does (ONNX's multidirectional broadcasting, which torch shares).
Comparisons, logic, Size, ArgMax/ArgMin and NonZero return bool or int64 tensors and
pass no gradient; Cast to a float type, Expand, Tile, Where, the variadic ops and CumSum
pass gradients to their float inputs.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from hwcc.ir import Node
from hwcc.ir import dtypes as dt
from hwcc.train.ops.bit_ops import comparing, extremum
from hwcc.train.ops.registry import BuildContext, OpFn, ints, register, reject

# ONNX element type -> torch dtype; what is missing (STRING, complex, float8) is refused.
_TORCH_DTYPES = {
    dt.FLOAT: torch.float32,
    dt.UINT8: torch.uint8,
    dt.INT8: torch.int8,
    dt.INT16: torch.int16,
    dt.INT32: torch.int32,
    dt.INT64: torch.int64,
    dt.BOOL: torch.bool,
    dt.FLOAT16: torch.float16,
    dt.DOUBLE: torch.float64,
    dt.BFLOAT16: torch.bfloat16,
}


def torch_dtype(elem: int) -> torch.dtype | None:
    """The torch dtype of the ONNX element type ``elem``; None where torch has none here."""
    return _TORCH_DTYPES.get(elem)


@register("Cast")
def _cast(node: Node, ctx: BuildContext) -> OpFn:
    to = node.attr("to")
    dtype = _TORCH_DTYPES.get(int(to)) if to is not None else None
    if dtype is None:
        raise reject(
            node,
            f"its target element type to={to!r} has no torch dtype here",
            "cast to one of float, double, float16, bfloat16, int8/16/32/64, uint8 or bool",
        )
    return lambda x: x.to(dtype)


@register("CastLike")
def _cast_like(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x, like: x.to(like.dtype)


@register("Range")
def _range(node: Node, ctx: BuildContext) -> OpFn:
    def run(start, limit, delta):
        count = max(math.ceil((limit.item() - start.item()) / delta.item()), 0)
        steps = torch.arange(count, device=start.device)
        if start.is_floating_point():  # start + i * delta, in double as onnxruntime sums
            return (start.double() + steps * delta.double()).to(start.dtype)
        return (start + steps * delta).to(start.dtype)

    return run


@register("ConstantOfShape")
def _constant_of_shape(node: Node, ctx: BuildContext) -> OpFn:
    value = node.attr("value")
    fill = torch.zeros(1) if value is None else torch.tensor(np.array(value)).reshape(-1)
    if fill.numel() != 1:
        raise reject(node, f"its value has {fill.numel()} elements", "give a one-element value")
    return lambda shape: torch.full(
        ints(shape.tolist()), fill.item(), dtype=fill.dtype, device=shape.device
    )


@register("Expand")
def _expand(node: Node, ctx: BuildContext) -> OpFn:
    def run(x, shape):
        return x.expand(torch.broadcast_shapes(x.shape, tuple(ints(shape.tolist()))))

    return run


@register("Tile")
def _tile(node: Node, ctx: BuildContext) -> OpFn:
    if ctx.opset < 6:
        raise reject(
            node, f"opset {ctx.opset}'s Tile (tiles and axis inputs)", "export at opset 6 or later"
        )
    return lambda x, repeats: x.repeat(ints(repeats.tolist())) if x.dim() else x


_COMPARE = {
    "Equal": torch.eq,
    "Less": torch.lt,
    "LessOrEqual": torch.le,
    "Greater": torch.gt,
    "GreaterOrEqual": torch.ge,
}
_LOGIC = {"And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor}

for _op, _fn in (_LOGIC | {"Not": torch.logical_not, "Where": torch.where}).items():
    register(_op)(lambda node, ctx, fn=_fn: fn)
for _op, _fn in _COMPARE.items():
    register(_op)(lambda node, ctx, fn=comparing(_fn): fn)


def _mean(*xs):
    return functools.reduce(torch.add, xs) / len(xs)


_VARIADIC = {
    "Max": extremum(torch.maximum),
    "Min": extremum(torch.minimum),
    "Sum": lambda *xs: functools.reduce(torch.add, xs),
    "Mean": _mean,
}


@register(*_VARIADIC)
def _variadic(node: Node, ctx: BuildContext) -> OpFn:
    if not any(node.inputs):
        raise reject(node, "it has no inputs", "give it at least one input")
    fn = _VARIADIC[node.op_type]
    return lambda *xs: fn(*[x for x in xs if x is not None])


@register("Size")
def _size(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


@register("ArgMax", "ArgMin")
def _arg(node: Node, ctx: BuildContext) -> OpFn:
    fn = torch.argmax if node.op_type == "ArgMax" else torch.argmin
    axis, keep = int(node.attr("axis", 0)), bool(node.attr("keepdims", 1))
    last = bool(node.attr("select_last_index", 0))

    def run(x):
        a = axis % max(x.dim(), 1)
        if not last:  # torch gives the first index of ties, as ONNX does by default
            return fn(x, a, keepdim=keep)
        return x.shape[a] - 1 - fn(x.flip(a), a, keepdim=keep)

    return run


@register("CumSum", "CumProd")
def _cumulative(node: Node, ctx: BuildContext) -> OpFn:
    fn, first = (torch.cumsum, 0) if node.op_type == "CumSum" else (torch.cumprod, 1)
    exclusive, reverse = bool(node.attr("exclusive", 0)), bool(node.attr("reverse", 0))
    fixed = ctx.const(node, 1)
    if fixed is not None and fixed.size != 1:
        raise reject(node, f"its axis has {fixed.size} values", "give one axis")

    def run(x, axis):
        a = (int(fixed.reshape(-1)[0]) if fixed is not None else int(axis.reshape(-1)[0])) % x.dim()
        y = x.flip(a) if reverse else x
        out = fn(y, a, dtype=x.dtype)  # torch would widen ints to int64
        if exclusive:  # shift by one along the axis, the identity (0 or 1) first
            head = torch.full_like(out.narrow(a, 0, 1), first)
            out = torch.cat([head, out.narrow(a, 0, out.shape[a] - 1)], a)
        return out.flip(a) if reverse else out

    return run


@register("NonZero")
def _nonzero(node: Node, ctx: BuildContext) -> OpFn:
    def run(x):
        if x.dim() == 0:  # ONNX treats a scalar as a one-element vector
            x = x.reshape(1)
        return torch.nonzero(x).t().contiguous()

    return run
