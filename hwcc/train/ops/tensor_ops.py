"""Ops that reshape, move, select or reduce tensors, and constants."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

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

Ints = Callable[[Sequence], "list[int] | None"]


def operand(node: Node, ctx: BuildContext, index: int, attr: str = "") -> Ints:
    """``get(inputs) -> ints``: input ``index`` where the node has it, else attribute ``attr``
    (None if neither is given). A constant input is read once, here; any other input is
    read from the tensor ``fn`` receives, on each run."""
    if index < len(node.inputs) and node.inputs[index] and ctx.const(node, index) is None:
        return lambda inputs: [int(v) for v in inputs[index].reshape(-1).tolist()]
    fixed = input_or_attr(node, ctx, index, attr)
    return lambda inputs: fixed


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
    axis = int(node.attr("axis", 0))
    parts = int(node.attr("num_outputs", len(node.outputs)))  # opset 18 names the count
    get_sizes = operand(node, ctx, 1, "split")

    def run(*inputs):
        x, sizes = inputs[0], get_sizes(inputs)
        if sizes:
            return torch.split(x, sizes, axis)
        return torch.split(x, math.ceil(x.shape[axis] / parts), axis)

    return run


@register("Slice")
def _slice(node: Node, ctx: BuildContext) -> OpFn:
    if ctx.opset < 10:
        fixed = [node.attr(k) for k in ("starts", "ends", "axes")]
        gets = [lambda _, v=v: None if v is None else ints(v) for v in fixed] + [lambda _: None]
    else:
        gets = [operand(node, ctx, i) for i in (1, 2, 3, 4)]

    def run(*inputs):
        x = inputs[0]
        starts, ends, axes, steps = (get(inputs) for get in gets)
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        for a, s, e, st in zip(axes, starts, ends, steps):
            a, dim = a % x.dim(), x.shape[a]
            if st > 0:  # Python's slice clamps as ONNX does
                x = x[(slice(None),) * a + (slice(s, e, st),)]
            else:  # torch slices only forwards: gather the indices range() gives
                s = min(max(s + dim if s < 0 else s, 0), dim - 1)
                e = min(max(e + dim if e < 0 else e, -1), dim - 1)
                idx = torch.tensor(range(s, e, st), dtype=torch.int64, device=x.device)
                x = x.index_select(a, idx)
        return x

    return run


@register("Squeeze")
def _squeeze(node: Node, ctx: BuildContext) -> OpFn:
    get_axes = operand(node, ctx, 1, "axes")

    def run(*inputs):
        axes = get_axes(inputs)
        return inputs[0].squeeze() if axes is None else inputs[0].squeeze(tuple(axes))

    return run


@register("Unsqueeze")
def _unsqueeze(node: Node, ctx: BuildContext) -> OpFn:
    get_axes = operand(node, ctx, 1, "axes")

    def run(*inputs):
        x, axes = inputs[0], get_axes(inputs) or []
        for a in sorted(a % (x.dim() + len(axes)) for a in axes):
            x = x.unsqueeze(a)
        return x

    return run


_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_index(mode: str, size: int, begin: int, end: int, device) -> torch.Tensor:
    """The source index of each position of an axis padded by ``begin`` and ``end`` in a
    ``reflect``, ``edge`` or ``wrap`` pad; a negative pad crops first (as onnxruntime does),
    and the padding repeats the cropped axis."""
    lo, size = max(-begin, 0), size - max(-begin, 0) - max(-end, 0)
    i = torch.arange(-max(begin, 0), size + max(end, 0), device=device)
    if mode == "edge":
        i = i.clamp(0, size - 1)
    elif mode == "wrap":
        i = torch.remainder(i, size)
    elif size == 1:
        i = torch.zeros_like(i)
    else:
        period = 2 * (size - 1)
        i = torch.remainder(i, period)
        i = torch.where(i >= size, period - i, i)
    return i + lo


@register("Pad")
def _pad(node: Node, ctx: BuildContext) -> OpFn:
    mode = node.attr("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode not in _PAD_MODES:
        raise reject(node, f"mode {mode!r} is unknown", f"use one of {sorted(_PAD_MODES)}")
    get_pads, get_axes = operand(node, ctx, 1, "pads"), operand(node, ctx, 3)
    fixed_value = ctx.const(node, 2)
    runtime_value = fixed_value is None and len(node.inputs) > 2 and bool(node.inputs[2])
    if fixed_value is None or fixed_value.size == 0:
        fixed_value = float(node.attr("value", 0.0))
    else:
        fixed_value = float(fixed_value.reshape(-1)[0])

    def run(*inputs):
        x, pads, axes = inputs[0], get_pads(inputs), get_axes(inputs)
        ax = list(range(x.dim())) if axes is None else [a % x.dim() for a in axes]
        begins, ends = [0] * x.dim(), [0] * x.dim()
        for i, a in enumerate(ax):
            begins[a], ends[a] = pads[i], pads[len(ax) + i]
        if mode != "constant":
            for a in range(x.dim()):
                if begins[a] or ends[a]:
                    idx = _pad_index(mode, x.shape[a], begins[a], ends[a], x.device)
                    x = x.index_select(a, idx)
            return x
        value = fixed_value
        if runtime_value and inputs[2].numel():
            value = inputs[2].reshape(-1)[0].item()
        flat = torch_pads(begins, ends)
        while flat and not flat[-1] and not flat[-2]:  # torch pads the last dims only
            flat = flat[:-2]
        return F.pad(x, flat, "constant", value)

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


def _empty_extreme(x: torch.Tensor, dims: tuple, keep: bool, is_max: bool) -> torch.Tensor:
    """ReduceMax (ReduceMin) of an empty tensor: the dtype's lowest (highest) value."""
    if x.dtype.is_floating_point:
        low, high = -math.inf, math.inf
    else:
        low, high = torch.iinfo(x.dtype).min, torch.iinfo(x.dtype).max
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keep or i not in dims]
    return x.new_full(shape, low if is_max else high)


def reduce_axes(node: Node, ctx: BuildContext, since: int) -> Ints:
    """``get(inputs) -> axes``: ONNX Reduce*'s axes, an input from opset ``since`` on (a
    constant or read on each run), an attribute before."""
    if ctx.opset >= since:
        return operand(node, ctx, 1)
    fixed = node.attr("axes")
    fixed = None if fixed is None else ints(fixed)
    return lambda inputs: fixed


@register(*_REDUCE)
def _reduce(node: Node, ctx: BuildContext) -> OpFn:
    fn, since = _REDUCE[node.op_type]
    get_axes = reduce_axes(node, ctx, since)
    keep, noop = bool(node.attr("keepdims", 1)), bool(node.attr("noop_with_empty_axes", 0))

    def run(*inputs):
        x, axes = inputs[0], get_axes(inputs)
        if not axes and noop:
            return x
        dims = tuple(a % x.dim() for a in axes) if axes else tuple(range(x.dim()))
        if x.numel() == 0 and node.op_type in ("ReduceMax", "ReduceMin"):
            return _empty_extreme(x, dims, keep, node.op_type == "ReduceMax")
        return fn(x, dim=dims, keepdim=keep)

    return run
