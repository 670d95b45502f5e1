"""Elementwise ops: unary and binary arithmetic, activations, Clip and Softmax."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hwcc.ir import Node
from hwcc.train.ops.registry import BuildContext, OpFn, register


class _Sqrt(torch.autograd.Function):
    """``sqrt`` whose gradient at 0 is 0 (a subgradient) instead of ``inf``: a magnitude
    ``sqrt(re² + im²)`` of a bin that is exactly zero (an STFT's DC sine part) would
    otherwise send ``0 · inf = nan`` into every weight behind it."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.where(y > 0, grad / (2 * y), torch.zeros_like(grad))


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    return _Sqrt.apply(x) if x.is_floating_point() else torch.sqrt(x)


_UNARY: dict[str, OpFn] = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": _sqrt,
    "Abs": torch.abs,
    "Neg": torch.neg,
    "Erf": torch.erf,
    "Reciprocal": torch.reciprocal,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "HardSwish": F.hardswish,
    "Softplus": F.softplus,
}
_BINARY: dict[str, OpFn] = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow}

# torch has no add, sub or division kernels for these: they run in int64, and wrap around
# modulo 2**bits as ONNX's (C++'s) unsigned arithmetic does
_UINT_BITS = {torch.uint16: 16, torch.uint32: 32, torch.uint64: 64}
_INT64_MIN = torch.iinfo(torch.int64).min


def _unsigned(fn: OpFn) -> OpFn:
    """``fn(a, b)`` that also takes uint16/32/64 operands (of one dtype, as ONNX's ``T``):
    computed in int64 and returned in the operands' dtype, wrapped around modulo 2**bits.
    uint64 travels as its bits in int64 (two's complement add, sub and mul wrap alike);
    ``fn`` gets ``unsigned=True`` then, for the ops whose result depends on the sign."""

    def run(a, b):
        bits = _UINT_BITS.get(a.dtype)
        if bits is None:
            return fn(a, b)
        if bits == 64:
            x, y = a.view(torch.int64), b.to(torch.uint64).view(torch.int64)
            return fn(x, y, unsigned=True).view(torch.uint64)
        out = fn(a.to(torch.int64), b.to(torch.int64))
        return (out & ((1 << bits) - 1)).to(a.dtype)

    return run


def _u64_ge(a, b):
    """``a >= b`` for int64 tensors holding uint64 bits."""
    return (a ^ _INT64_MIN) >= (b ^ _INT64_MIN)


def udiv64(a, b):
    """The unsigned quotient of int64 tensors holding uint64 bits: halve the dividend
    (logical shift) so that it is non-negative, divide, and correct the last bit."""
    big = b < 0  # a divisor >= 2**63 goes into any uint64 at most once
    d = torch.where(big, 1, b)
    q = (((a >> 1) & ~_INT64_MIN) // d) << 1
    q = q + _u64_ge(a - q * d, d).to(torch.int64)  # a - q*d < 2*d: at most one more
    return torch.where(big, _u64_ge(a, b).to(torch.int64), q)


def _arith(fn: OpFn) -> OpFn:
    return lambda a, b, unsigned=False: fn(a, b)


for _op, _fn in _UNARY.items():
    register(_op)(lambda node, ctx, fn=_fn: fn)
# ONNX's Pow takes no unsigned type; its result has the base's type (int ** float: int)
register("Pow")(lambda node, ctx: lambda a, b: torch.pow(a, b).to(a.dtype))
for _op in ("Add", "Sub", "Mul"):
    register(_op)(lambda node, ctx, fn=_unsigned(_arith(_BINARY[_op])): fn)


def _int_div(a, b, unsigned=False):
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    if unsigned:
        return udiv64(a, b)
    return torch.div(a, b, rounding_mode="trunc")  # ONNX integer division truncates


@register("Div")
def _div(node: Node, ctx: BuildContext) -> OpFn:
    return _unsigned(_int_div)


@register("Identity")
def _identity(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x: x


@register("Dropout", outputs=2)
def _dropout(node: Node, ctx: BuildContext) -> OpFn:
    # As in inference: fine-tuning keeps the graph's function; the mask keeps everything.
    return lambda x, *_: (x, torch.ones_like(x, dtype=torch.bool))


@register("LeakyRelu")
def _leaky_relu(node: Node, ctx: BuildContext) -> OpFn:
    alpha = float(node.attr("alpha", 0.01))
    return lambda x: F.leaky_relu(x, alpha)


@register("HardSigmoid")
def _hard_sigmoid(node: Node, ctx: BuildContext) -> OpFn:
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    return lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0)


@register("Clip")
def _clip(node: Node, ctx: BuildContext) -> OpFn:
    if ctx.opset < 11:
        lo, hi = node.attr("min", -math.inf), node.attr("max", math.inf)
        return lambda x: torch.clamp(x, lo, hi)
    return lambda x, lo=None, hi=None: x if lo is None and hi is None else torch.clamp(x, lo, hi)


@register("Softmax", "LogSoftmax")
def _softmax(node: Node, ctx: BuildContext) -> OpFn:
    fn = {"Softmax": torch.softmax, "LogSoftmax": torch.log_softmax}[node.op_type]
    if ctx.opset >= 13:
        axis = int(node.attr("axis", -1))
        return lambda x: fn(x, axis)
    axis = int(node.attr("axis", 1))  # before opset 13: over the input flattened from axis on

    def run(x):
        a = axis % x.dim()
        return fn(x.reshape(math.prod(x.shape[:a]), -1), 1).reshape(x.shape)

    return run
