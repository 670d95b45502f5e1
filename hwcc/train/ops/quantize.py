"""QuantizeLinear and DequantizeLinear, with straight-through rounding for training; the
integer-only ops MatMulInteger, QLinearMatMul and DynamicQuantizeLinear (no gradients);
onnxruntime's DynamicQuantizeMatMul (``quantize_dynamic``'s layers), its input rounded
straight through and its int8 weights fixed."""

from __future__ import annotations

import numpy as np
import torch

from hwcc.ir import Node
from hwcc.train.ops.registry import CONTRIB_DOMAIN, BuildContext, OpFn, register, reject

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


def _centered(q: torch.Tensor, z, axis: int | None = None) -> torch.Tensor:
    """``q - z`` in float64 (exact for 8- and 16-bit integers and their products' sums)."""
    q = q.to(torch.float64)
    if z is None:
        return q
    z = z.to(torch.float64)
    if axis is not None and z.numel() > 1:  # one zero point per row of A or column of B
        shape = [1] * q.dim()
        shape[axis % q.dim()] = -1
        z = z.reshape(shape)
    return q - z


@register("MatMulInteger")
def _matmul_integer(node: Node, ctx: BuildContext) -> OpFn:
    def run(a, b, za=None, zb=None):
        return (_centered(a, za, -2) @ _centered(b, zb, -1)).to(torch.int32)

    return run


@register("QLinearMatMul")
def _qlinear_matmul(node: Node, ctx: BuildContext) -> OpFn:
    def run(a, sa, za, b, sb, zb, sy, zy):
        acc = _centered(a, za, -2) @ _centered(b, zb, -1)
        scale = sa.float() * sb.float() / sy.float()
        y = torch.round(acc.float() * scale) + zy.float()
        lo, hi = _QRANGE[np.dtype(str(zy.dtype).removeprefix("torch."))]
        return y.clamp(lo, hi).to(zy.dtype)

    return run


def _uint8_range(x: torch.Tensor, nonzero: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """DynamicQuantizeLinear's scale and zero point for ``x``: its range, 0 included, over
    255 levels (``nonzero``: a scale of 1 where the range is empty, as for an all-zero
    input)."""
    lo = torch.clamp(x.min(), max=0.0)
    hi = torch.clamp(x.max(), min=0.0)
    scale = (hi - lo) / 255.0
    if nonzero:
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, torch.clamp(torch.round(-lo / scale), 0, 255)


@register("DynamicQuantizeLinear", outputs=3)
def _dynamic_quantize(node: Node, ctx: BuildContext) -> OpFn:
    def run(x):
        scale, zero = _uint8_range(x)
        y = torch.clamp(torch.round(x / scale) + zero, 0, 255)
        return y.to(torch.uint8), scale.to(x.dtype), zero.to(torch.uint8)

    return run


@register(f"{CONTRIB_DOMAIN}.DynamicQuantizeMatMul", weights=(4,))
def _dynamic_quantize_matmul(node: Node, ctx: BuildContext) -> OpFn:
    """``A`` to uint8 by its own range and back (rounding straight through: the layers
    before it keep learning), times the fixed int8 weights scaled per layer or column;
    the bias trains."""

    def run(a, b, b_scale, b_zero=None, bias=None):
        with torch.no_grad():
            scale, zero = _uint8_range(a, nonzero=True)
        q = a / scale
        q = q + (torch.round(q) - q).detach()
        a_hat = (torch.clamp(q + zero, 0, 255) - zero) * scale
        w = b.to(a.dtype)
        if b_zero is not None:
            w = w - b_zero.to(a.dtype)
        y = a_hat @ (w * b_scale.to(a.dtype))
        return y if bias is None else y + bias

    return run
