"""Normalisations over axes: RMSNormalization, MeanVarianceNormalization, LpNormalization.

LayerNormalization is in conv_pool.py and shares :func:`stash_dtype` from here: the
``stash_type`` attribute of ONNX's layer and RMS normalisations names the precision of
the statistics (stage one), after which the result is cast back to the input's type.
"""

from __future__ import annotations

import torch

from hwcc.ir import Node
from hwcc.train.ops.registry import BuildContext, OpFn, ints, register, reject

__all__ = ["check_axis", "stash_dtype"]

# ONNX TensorProto data types a stash_type may name
_STASH = {1: torch.float32, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


def stash_dtype(node: Node) -> torch.dtype:
    """The torch dtype of the node's ``stash_type`` (float32 when absent)."""
    code = int(node.attr("stash_type", 1))
    if code not in _STASH:
        raise reject(
            node,
            f"stash_type {code} is not a float type",
            "use stash_type 1 (float), 10 (float16), 11 (double) or 16 (bfloat16)",
        )
    return _STASH[code]


def check_axis(node: Node, ctx: BuildContext, axis: int) -> None:
    """Refuse an ``axis`` outside the input's rank where that rank is known."""
    shape = ctx.shape(node, 0)
    if shape is not None and not -len(shape) <= axis < len(shape):
        raise reject(
            node, f"axis {axis} is outside its rank-{len(shape)} input", "use an axis of the input"
        )


@register("RMSNormalization", weights=(1,))
def _rms_norm(node: Node, ctx: BuildContext) -> OpFn:
    axis, eps = int(node.attr("axis", -1)), float(node.attr("epsilon", 1e-5))
    stash = stash_dtype(node)
    check_axis(node, ctx, axis)

    def run(x, scale):
        xs = x.to(stash)
        ms = (xs * xs).mean(tuple(range(axis % x.dim(), x.dim())), keepdim=True)
        return (xs * torch.rsqrt(ms + eps)).to(x.dtype) * scale

    return run


@register("MeanVarianceNormalization")
def _mean_variance_norm(node: Node, ctx: BuildContext) -> OpFn:
    axes = ints(node.attr("axes", [0, 2, 3]))

    def run(x):
        dims = sorted({a % x.dim() for a in axes})
        mean = x.mean(dims, keepdim=True)
        var = (x * x).mean(dims, keepdim=True) - mean * mean  # ONNX: E[x^2] - E[x]^2
        return (x - mean) / (torch.sqrt(var.clamp_min(0)) + 1e-9)  # ONNX adds 1e-9 to std

    return run


@register("LpNormalization")
def _lp_norm(node: Node, ctx: BuildContext) -> OpFn:
    axis, p = int(node.attr("axis", -1)), int(node.attr("p", 2))
    if p not in (1, 2):
        raise reject(node, f"p={p} is not an Lp normalisation ONNX defines", "use p=1 or p=2")
    check_axis(node, ctx, axis)

    def run(x):
        norm = torch.linalg.vector_norm(x, p, dim=axis, keepdim=True)
        return x / torch.where(norm == 0, 1, norm)  # a zero vector stays zero (onnxruntime)

    return run
