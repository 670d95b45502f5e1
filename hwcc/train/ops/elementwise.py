"""Elementwise ops: unary and binary arithmetic, activations, Clip and Softmax."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hwcc.ir import Node
from hwcc.train.ops.registry import BuildContext, OpFn, register

_UNARY: dict[str, OpFn] = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
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

for _op, _fn in (_UNARY | _BINARY).items():
    register(_op)(lambda node, ctx, fn=_fn: fn)


@register("Div")
def _div(node: Node, ctx: BuildContext) -> OpFn:
    def run(a, b):
        if a.is_floating_point() or b.is_floating_point():
            return a / b
        return torch.div(a, b, rounding_mode="trunc")  # ONNX integer division truncates

    return run


@register("Identity", "Dropout")
def _identity(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x, *_: x  # Dropout runs as in inference: fine-tuning keeps the graph's function


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
