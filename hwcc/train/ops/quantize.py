"""QuantizeLinear and DequantizeLinear, with straight-through rounding for training."""

from __future__ import annotations

import numpy as np
import torch

from hwcc.ir import Node
from hwcc.train.ops.registry import BuildContext, OpFn, register, reject

_QRANGE = {
    np.dtype(t): (np.iinfo(t).min, np.iinfo(t).max)
    for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32)
}


def _per_axis(v: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    if v.dim() == 0 or v.numel() == 1:
        return v.reshape(())
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return v.reshape(shape)


@register("DequantizeLinear")
def _dequantize(node: Node, ctx: BuildContext) -> OpFn:
    if node.attr("block_size", 0):
        raise reject(
            node, "blocked quantization is not supported", "quantize per tensor or per axis"
        )
    axis = int(node.attr("axis", 1))

    def run(q, s, z=None):
        q = q.to(s.dtype)
        return (q if z is None else q - _per_axis(z, q, axis).to(s.dtype)) * _per_axis(s, q, axis)

    return run


@register("QuantizeLinear")
def _quantize(node: Node, ctx: BuildContext) -> OpFn:
    if node.attr("block_size", 0):
        raise reject(
            node, "blocked quantization is not supported", "quantize per tensor or per axis"
        )
    axis, zp = int(node.attr("axis", 1)), ctx.const(node, 2)
    qtype = np.dtype(np.uint8) if zp is None else zp.dtype
    if qtype not in _QRANGE:
        raise reject(node, f"quantizing to {qtype} is not supported", "quantize to int8 or uint8")
    lo, hi = _QRANGE[qtype]

    def run(x, s, z=None):
        q = x / _per_axis(s, x, axis)
        q = q + (torch.round(q) - q).detach()  # straight-through rounding
        q = q if z is None else q + _per_axis(z, x, axis).to(q.dtype)
        return torch.clamp(q, lo, hi)

    return run
