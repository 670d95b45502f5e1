"""Bit operations and unsigned integers: BitShift, BitwiseAnd/Or/Xor/Not, BitCast, and
the helpers that let comparisons, Max, Min and Mod take uint16/32/64.

torch lacks most kernels for uint16, uint32 and uint64. :func:`ordered` maps such a
tensor to int64 keeping its order (uint16/32 widen; uint64's bits are moved by 2**63),
and :func:`unordered` maps back; shifts run in int64 and are cut to the operand's width.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from hwcc.ir import Node
from hwcc.ir.dtypes import numpy_dtype
from hwcc.train.ops.elementwise import udiv64
from hwcc.train.ops.registry import BuildContext, OpFn, register, reject

__all__ = ["UNSIGNED", "comparing", "extremum", "ordered", "unordered", "unsigned_mod"]

UNSIGNED = {torch.uint16: 16, torch.uint32: 32, torch.uint64: 64}
_MIN = torch.iinfo(torch.int64).min


def ordered(x: torch.Tensor) -> torch.Tensor:
    """``x`` as int64 values in the same order (unsigned types shifted into range)."""
    if x.dtype == torch.uint64:
        return x.view(torch.int64) ^ _MIN
    return x.to(torch.int64) if x.dtype in UNSIGNED else x


def unordered(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The inverse of :func:`ordered` for a tensor of ``dtype``."""
    if dtype == torch.uint64:
        return (y ^ _MIN).view(torch.uint64)
    return y.to(dtype) if dtype in UNSIGNED else y


def comparing(fn: OpFn) -> OpFn:
    """A comparison ``fn(a, b)`` that also takes unsigned operands."""
    return lambda a, b: fn(ordered(a), ordered(b)) if a.dtype in UNSIGNED else fn(a, b)


def extremum(fn: OpFn) -> OpFn:
    """``fn`` (torch.maximum, torch.minimum) over several tensors, unsigned ones too."""

    def run(*xs):
        dtype = xs[0].dtype
        if dtype not in UNSIGNED:
            return functools.reduce(fn, xs)
        return unordered(functools.reduce(fn, [ordered(x) for x in xs]), dtype)

    return run


def unsigned_mod(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a mod b`` for unsigned ``a`` and ``b`` (both non-negative: the signs agree)."""
    if a.dtype == torch.uint64:
        x, y = a.view(torch.int64), b.view(torch.int64)
        return (x - udiv64(x, y) * y).view(torch.uint64)
    return torch.remainder(a.to(torch.int64), b.to(torch.int64)).to(a.dtype)


def _shift(x: torch.Tensor, n: torch.Tensor, left: bool) -> torch.Tensor:
    bits = UNSIGNED.get(x.dtype, 8 * x.element_size())
    if x.dtype == torch.uint64:
        v, n = x.view(torch.int64), n.view(torch.int64)
        if left:
            out = torch.where(n < 64, v << n.clamp(0, 63), 0)
        else:  # a logical shift: clear the bits the sign fills in
            kept = torch.where(n == 0, -1, ~(torch.tensor(-1) << (64 - n).clamp(0, 63)))
            out = torch.where(n < 64, (v >> n.clamp(0, 63)) & kept, 0)
        return out.view(torch.uint64)
    v, n = x.to(torch.int64), n.to(torch.int64)
    if not left:  # in int64 an unsigned value is non-negative, a signed one fills its sign
        return (v >> torch.where(n < 0, 63, n.clamp(0, 63))).to(x.dtype)
    out = torch.where((n >= 0) & (n < bits), v << n.clamp(0, 63), 0)
    return (out & ((1 << bits) - 1)).to(x.dtype)  # the cast wraps signed types


@register("BitShift")
def _bit_shift(node: Node, ctx: BuildContext) -> OpFn:
    direction = node.attr("direction")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("LEFT", "RIGHT"):
        raise reject(node, f"direction {direction!r} is unknown", "use LEFT or RIGHT")
    left = direction == "LEFT"
    return lambda x, n: _shift(x, n.expand_as(x) if n.dim() < x.dim() else n, left)


for _op, _fn in {
    "BitwiseAnd": torch.bitwise_and,
    "BitwiseOr": torch.bitwise_or,
    "BitwiseXor": torch.bitwise_xor,
}.items():
    register(_op)(lambda node, ctx, fn=_fn: fn)


def _not(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint64:
        return torch.bitwise_not(x.view(torch.int64)).view(torch.uint64)
    if x.dtype in UNSIGNED:
        return (torch.bitwise_not(x.to(torch.int64)) & ((1 << UNSIGNED[x.dtype]) - 1)).to(x.dtype)
    return torch.bitwise_not(x)


register("BitwiseNot")(lambda node, ctx: _not)


@register("BitCast")
def _bit_cast(node: Node, ctx: BuildContext) -> OpFn:
    to = int(node.attr("to", 0))
    try:
        dtype = torch.from_numpy(np.zeros(0, numpy_dtype(to))).dtype
    except (KeyError, TypeError, ValueError):
        raise reject(
            node, f"its target type to={to} has no torch dtype", "bit-cast to a numeric type"
        ) from None
    return lambda x: x.view(dtype).reshape(x.shape)
