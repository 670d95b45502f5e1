"""Ops that reshape, move, select or reduce tensors, and constants."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from hwcc.ir import Node
from hwcc.train.ops.registry import (
    BuildContext,
    OpFn,
    input_or_attr,
    ints,
    register,
    reject,
    torch_pads,
)


@register("Flatten")
def _flatten(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis", 1))
    return lambda x: x.reshape(math.prod(x.shape[: axis if axis >= 0 else axis + x.dim()]), -1)


@register("Reshape")
def _reshape(node: Node, ctx: BuildContext) -> OpFn:
    target, allowzero = ctx.const(node, 1), int(node.attr("allowzero", 0))
    fixed = None if target is None else ints(target)
    x_shape = ctx.shape(node, 0)
    keep_batch = (
        fixed is not None
        and ctx.batch is not None
        and len(fixed) > 0
        and fixed[0] == ctx.batch
        and bool(x_shape)
        and x_shape[0] == ctx.batch
    )

    def run(x, shape):
        dims = list(fixed) if fixed is not None else shape.tolist()
        if keep_batch:
            dims[0] = x.shape[0]
        if not allowzero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)

    return run


@register("Transpose")
def _transpose(node: Node, ctx: BuildContext) -> OpFn:
    perm = node.attr("perm")
    return lambda x: x.permute(perm if perm is not None else tuple(reversed(range(x.dim()))))


@register("Concat")
def _concat(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis"))
    return lambda *xs: torch.cat(xs, axis)


@register("Split", outputs=-1)
def _split(node: Node, ctx: BuildContext) -> OpFn:
    axis, parts = int(node.attr("axis", 0)), len(node.outputs)
    sizes = input_or_attr(node, ctx, 1, "split")

    def run(x, _split=None):
        if sizes is not None:
            return torch.split(x, sizes, axis)
        return torch.split(x, math.ceil(x.shape[axis] / parts), axis)

    return run


@register("Slice")
def _slice(node: Node, ctx: BuildContext) -> OpFn:
    if ctx.opset < 10:
        starts, ends = ints(node.attr("starts")), ints(node.attr("ends"))
        axes, steps = node.attr("axes"), None
    else:
        starts, ends = input_or_attr(node, ctx, 1, ""), input_or_attr(node, ctx, 2, "")
        axes, steps = input_or_attr(node, ctx, 3, ""), input_or_attr(node, ctx, 4, "")
    axes = list(range(len(starts))) if axes is None else ints(axes)
    steps = [1] * len(starts) if steps is None else steps

    def run(x, *_):
        for a, s, e, st in zip(axes, starts, ends, steps):
            dim = x.shape[a]
            if st > 0:
                x = x[(slice(None),) * (a % x.dim()) + (slice(s, e, st),)]
            else:  # torch slices only forwards: gather the indices range() gives
                s = min(max(s + dim if s < 0 else s, 0), dim - 1)
                e = min(max(e + dim if e < 0 else e, -1), dim - 1)
                x = x.index_select(a, torch.arange(s, e, st, device=x.device))
        return x

    return run


@register("Squeeze")
def _squeeze(node: Node, ctx: BuildContext) -> OpFn:
    axes = input_or_attr(node, ctx, 1, "axes")
    return lambda x, *_: x.squeeze() if axes is None else x.squeeze(tuple(axes))


@register("Unsqueeze")
def _unsqueeze(node: Node, ctx: BuildContext) -> OpFn:
    axes = input_or_attr(node, ctx, 1, "axes") or []

    def run(x, *_):
        for a in sorted(a % (x.dim() + len(axes)) for a in axes):
            x = x.unsqueeze(a)
        return x

    return run


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@register("Pad")
def _pad(node: Node, ctx: BuildContext) -> OpFn:
    mode = _PAD_MODES.get(node.attr("mode", "constant"))
    if mode is None:
        raise reject(
            node, f"mode {node.attr('mode')!r} is unknown", f"use one of {sorted(_PAD_MODES)}"
        )
    pads = input_or_attr(node, ctx, 1, "pads")
    axes = input_or_attr(node, ctx, 3, "")
    value = ctx.const(node, 2)
    if value is None and len(node.inputs) > 2 and node.inputs[2]:
        raise reject(node, "its constant_value is computed at run time", "make it a constant")
    if value is None or value.size == 0:
        value = float(node.attr("value", 0.0))
    else:
        value = float(value.reshape(-1)[0])

    def run(x, *_):
        ax = list(range(x.dim())) if axes is None else [a % x.dim() for a in axes]
        full = [0] * 2 * x.dim()
        for i, a in enumerate(ax):
            full[a], full[x.dim() + a] = pads[i], pads[len(ax) + i]
        flat = torch_pads(full[: x.dim()], full[x.dim() :])
        while flat and not flat[-1] and not flat[-2]:  # torch pads the last dims only
            flat = flat[:-2]
        return F.pad(x, flat, mode, value if mode == "constant" else None)

    return run


@register("Constant", folds=True)
def _constant(node: Node, ctx: BuildContext) -> OpFn:
    for key, dtype in (
        ("value", None),
        ("value_float", np.float32),
        ("value_floats", np.float32),
        ("value_int", np.int64),
        ("value_ints", np.int64),
    ):
        if node.attr(key) is not None:
            value = np.asarray(node.attr(key), dtype=dtype)
            return lambda: value
    raise reject(
        node, "its value is not a dense tensor or number", "store the value as a dense tensor"
    )


@register("Shape")
def _shape(node: Node, ctx: BuildContext) -> OpFn:
    start, end = node.attr("start", 0), node.attr("end")
    return lambda x: torch.tensor(x.shape[start:end], dtype=torch.int64, device=x.device)


@register("Gather")
def _gather(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis", 0))

    def run(data, idx):
        a = axis % data.dim()
        idx = torch.where(idx < 0, idx + data.shape[a], idx)
        flat = data.index_select(a, idx.reshape(-1).long())
        return flat.reshape(data.shape[:a] + idx.shape + data.shape[a + 1 :])

    return run


# op -> (function, first opset where the axes are an input rather than an attribute)
_REDUCE = {
    "ReduceMean": (torch.mean, 18),
    "ReduceSum": (torch.sum, 13),
    "ReduceMax": (torch.amax, 18),
    "ReduceMin": (torch.amin, 18),
}


@register(*_REDUCE)
def _reduce(node: Node, ctx: BuildContext) -> OpFn:
    fn, since = _REDUCE[node.op_type]
    axes = input_or_attr(node, ctx, 1, "") if ctx.opset >= since else node.attr("axes")
    keep, noop = bool(node.attr("keepdims", 1)), bool(node.attr("noop_with_empty_axes", 0))

    def run(x, *_):
        if not axes and noop:
            return x
        return fn(x, dim=tuple(axes) if axes else tuple(range(x.dim())), keepdim=keep)

    return run
