"""More elementwise ops: the ELU family, Mish, Gelu, PRelu and ThresholdedRelu, Sin, Cos,
Sign, Round and Mod.

Round rounds half to even, as ONNX does (and as ``torch.round`` does); Mod follows its
``fmod`` attribute: the sign of the dividend with ``fmod=1`` (C's fmod), else the sign of
the divisor (Python's %).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hwcc.ir import Node
from hwcc.train.ops.bit_ops import UNSIGNED, unsigned_mod
from hwcc.train.ops.registry import BuildContext, OpFn, register, reject

_UNARY: dict[str, OpFn] = {
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Sign": torch.sign,
    "Round": torch.round,
    "Mish": F.mish,
}

for _op, _fn in _UNARY.items():
    register(_op)(lambda node, ctx, fn=_fn: fn)


@register("Selu")
def _selu(node: Node, ctx: BuildContext) -> OpFn:
    alpha = float(node.attr("alpha", 1.67326319217681884765625))
    gamma = float(node.attr("gamma", 1.05070102214813232421875))
    return lambda x: gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@register("Elu")
def _elu(node: Node, ctx: BuildContext) -> OpFn:
    alpha = float(node.attr("alpha", 1.0))
    return lambda x: F.elu(x, alpha)


@register("Celu")
def _celu(node: Node, ctx: BuildContext) -> OpFn:
    alpha = float(node.attr("alpha", 1.0))
    return lambda x: F.celu(x, alpha)


@register("Gelu")
def _gelu(node: Node, ctx: BuildContext) -> OpFn:
    approximate = node.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise reject(node, f"approximate={approximate!r} is not an ONNX value", "use none or tanh")
    return lambda x: F.gelu(x, approximate=approximate)


@register("PRelu", weights=(1,))
def _prelu(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x, slope: torch.where(x < 0, x * slope, x)


@register("ThresholdedRelu")
def _thresholded_relu(node: Node, ctx: BuildContext) -> OpFn:
    alpha = float(node.attr("alpha", 1.0))
    return lambda x: torch.where(x > alpha, x, torch.zeros_like(x))


@register("Mod")
def _mod(node: Node, ctx: BuildContext) -> OpFn:
    fn = torch.fmod if int(node.attr("fmod", 0)) else torch.remainder
    return lambda a, b: unsigned_mod(a, b) if a.dtype in UNSIGNED else fn(a, b)
