"""Indexing, selection, reduction and normalisation ops: GatherElements, ScatterElements,
GatherND, TopK, Einsum, Trilu, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare,
ReduceLogSum, ReduceLogSumExp, InstanceNormalization and GroupNormalization.

Indices follow ONNX: a negative index counts from the end of its axis.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hwcc.ir import Node
from hwcc.train.ops.registry import BuildContext, OpFn, register, reject
from hwcc.train.ops.tensor_ops import reduce_axes


def _positive(idx: torch.Tensor, size) -> torch.Tensor:
    """ONNX indices (negative ones count from the end) as torch's non-negative int64."""
    idx = idx.long()
    return torch.where(idx < 0, idx + size, idx)


@register("GatherElements")
def _gather_elements(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis", 0))

    def run(x, idx):
        a = axis % x.dim()
        return torch.gather(x, a, _positive(idx, x.shape[a]))

    return run


_SCATTER = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


@register("ScatterElements", "Scatter")
def _scatter_elements(node: Node, ctx: BuildContext) -> OpFn:
    axis, reduction = int(node.attr("axis", 0)), node.attr("reduction", "none")
    if reduction != "none" and reduction not in _SCATTER:
        raise reject(node, f"reduction={reduction!r} is not an ONNX value", "use none, add, mul")

    def run(x, idx, updates):
        a = axis % x.dim()
        idx = _positive(idx, x.shape[a])
        if reduction == "none":
            return x.scatter(a, idx, updates)
        return x.scatter_reduce(a, idx, updates, _SCATTER[reduction], include_self=True)

    return run


@register("GatherND")
def _gather_nd(node: Node, ctx: BuildContext) -> OpFn:
    b = int(node.attr("batch_dims", 0))

    def run(x, idx):
        k = idx.shape[-1]
        batch = x.shape[:b]
        n = math.prod(batch)
        data = x.reshape(n, *x.shape[b:])
        flat = idx.reshape(n, -1, k)
        keys = [torch.arange(n).unsqueeze(1).expand(n, flat.shape[1])]
        keys += [_positive(flat[..., j], data.shape[1 + j]) for j in range(k)]
        out = data[tuple(keys)]
        return out.reshape(*idx.shape[:-1], *x.shape[b + k :])

    return run


@register("TopK", outputs=2)
def _topk(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis", -1))
    largest, ordered = bool(node.attr("largest", 1)), bool(node.attr("sorted", 1))
    fixed_k = node.attr("k") if ctx.opset < 10 else None

    def run(x, k=None):
        count = int(fixed_k) if fixed_k is not None else int(k.reshape(-1)[0])
        if not ordered:
            return torch.topk(x, count, axis, largest, False)
        # a stable sort: of equal values, the lower index first (as ONNX asks)
        values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
        return values.narrow(axis, 0, count), indices.narrow(axis, 0, count)

    return run


@register("Einsum", weights=(0, 1))
def _einsum(node: Node, ctx: BuildContext) -> OpFn:
    equation = str(node.attr("equation")).replace(" ", "")
    return lambda *xs: torch.einsum(equation, *xs)


@register("Trilu")
def _trilu(node: Node, ctx: BuildContext) -> OpFn:
    fn = torch.triu if int(node.attr("upper", 1)) else torch.tril
    return lambda x, k=None: fn(x, 0 if k is None else int(k.reshape(-1)[0]))


def _prod(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = torch.prod(x, d, keepdim=keep)
    return x


# op -> (reduce(x, dims, keepdim), what it is over no axis, the opset where axes became an input)
_REDUCE = {
    "ReduceProd": (_prod, lambda x: x, 18),
    "ReduceL2": (lambda x, d, k: torch.sqrt(torch.sum(x * x, d, keepdim=k)), torch.abs, 18),
    "ReduceLogSumExp": (lambda x, d, k: torch.logsumexp(x, d, keepdim=k), lambda x: x, 18),
    "ReduceL1": (lambda x, d, k: torch.sum(torch.abs(x), d, keepdim=k), torch.abs, 18),
    "ReduceSumSquare": (lambda x, d, k: torch.sum(x * x, d, keepdim=k), lambda x: x * x, 18),
    "ReduceLogSum": (lambda x, d, k: torch.log(torch.sum(x, d, keepdim=k)), torch.log, 18),
}


@register(*_REDUCE)
def _reduce(node: Node, ctx: BuildContext) -> OpFn:
    fn, over_none, since = _REDUCE[node.op_type]
    get_axes = reduce_axes(node, ctx, since)
    keep, noop = bool(node.attr("keepdims", 1)), bool(node.attr("noop_with_empty_axes", 0))

    def run(*inputs):
        x, axes = inputs[0], get_axes(inputs)
        if not axes and noop:  # ONNX still applies the elementwise part (L2 of x is |x|)
            return over_none(x)
        return fn(x, tuple(axes) if axes else tuple(range(x.dim())), keep)

    return run


@register("InstanceNormalization", weights=(1, 2))
def _instance_norm(node: Node, ctx: BuildContext) -> OpFn:
    eps = float(node.attr("epsilon", 1e-5))
    return lambda x, scale, bias: F.instance_norm(x, weight=scale, bias=bias, eps=eps)


@register("GroupNormalization", weights=(1, 2))
def _group_norm(node: Node, ctx: BuildContext) -> OpFn:
    eps, groups = float(node.attr("epsilon", 1e-5)), node.attr("num_groups")
    if groups is None:
        raise reject(node, "it has no num_groups", "give the num_groups attribute")
    groups = int(groups)
    per_group = ctx.opset < 21  # opset 18: one scale and bias per group, 21: per channel

    def run(x, scale, bias):
        n, c = x.shape[:2]
        g = x.reshape(n, groups, -1)
        mean = g.mean(-1, keepdim=True)
        var = ((g - mean) ** 2).mean(-1, keepdim=True)
        y = ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)
        if per_group:
            scale, bias = (t.repeat_interleave(c // groups) for t in (scale, bias))
        shape = (1, c) + (1,) * (x.dim() - 2)
        return y * scale.reshape(shape) + bias.reshape(shape)

    return run
