"""What EIE reads from a graph beyond its layers: FC weights as stored, fused Relus, activations.

For each FC layer, its constant weights as stored (and why EIE cannot run it, if not), the
Relus that read an EIE layer's output, and the measured activation vectors.

:func:`view_of` is built once per pricing call by :class:`hwcc.targets.eie.target.EIE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from hwcc.ir import Graph

__all__ = ["FREE", "GraphView", "Weights", "view_of"]

FREE = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
_THROUGH = ("Identity", "Cast")


@dataclass(frozen=True)
class Weights:
    """An FC layer's constant operands as stored: ``W = b`` if ``b_is_w`` else ``bᵀ``.

    ``zero`` is the stored value meaning "no weight" (a DequantizeLinear zero point, or 0).
    """

    b: np.ndarray
    b_is_w: bool
    bias: np.ndarray | None
    zero: np.ndarray | int = 0

    @property
    def key(self) -> tuple:
        return (id(self.b), id(self.bias), id(self.zero), self.b_is_w, self.b.shape)

    def masks(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Non-zero patterns of ``W`` (rows = outputs) and of the bias."""
        mask = self.b != self.zero
        mask = mask if self.b_is_w else mask.T
        bias = None if self.bias is None else np.broadcast_to(self.bias != 0, (mask.shape[0],))
        return mask, bias


def _constant(g: Graph, name: str) -> tuple[np.ndarray, np.ndarray | int] | None:
    """A constant tensor's stored values and its zero (through Identity, Cast, DequantizeLinear)."""
    zero: np.ndarray | int = 0
    while (p := g.producer(name)) is not None and p.op_type in _THROUGH + ("DequantizeLinear",):
        if p.op_type == "DequantizeLinear" and len(p.inputs) > 2 and p.inputs[2]:
            zp, axis = g.initializer(p.inputs[2]), int(p.attr("axis", 1))
            if zp is None:
                return None
            zero = (
                zp if zp.size == 1 else zp.reshape([-1 if i == axis % 2 else 1 for i in range(2)])
            )
        name = p.inputs[0]
    if p is not None and p.op_type == "Constant":
        v = p.attr("value")
        return (v, zero) if isinstance(v, np.ndarray) else None
    data = g.initializer(name) if p is None else None
    return None if data is None else (data, zero)


def _fc_weights(g: Graph, node) -> Weights | str:
    """The constant operands of an FC node, or why EIE cannot run it."""
    if node.op_type == "Gemm" and node.attr("transA", 0):
        return "Gemm with transA=1: EIE broadcasts the elements of one input vector"
    found = _constant(g, node.inputs[1]) if len(node.inputs) > 1 else None
    if found is None or found[0].ndim != 2:
        return f"{node.op_type} without a constant 2-D weight as input B: EIE keeps weights in SRAM"
    b, zero = found
    b_is_w = node.op_type == "Gemm" and bool(node.attr("transB", 0))
    bias = None
    if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2]:
        c = _constant(g, node.inputs[2])
        if c is None:
            return "Gemm with a bias computed at run time"
        bias = c[0].reshape(-1)
        if bias.size not in (1, b.shape[0] if b_is_w else b.shape[1]):
            return f"Gemm bias of shape {c[0].shape} is not a per-output vector"
    return Weights(b, b_is_w, bias, zero)


@dataclass
class GraphView:
    """What one pricing call knows beyond the layers: weights, fused ReLUs, activations."""

    weights: dict[str, Weights] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    fused: set[str] = field(default_factory=set)
    activations: Mapping[str, np.ndarray] = field(default_factory=dict)


def view_of(g: Graph, activations: Mapping[str, np.ndarray] | None) -> GraphView:
    view = GraphView(activations=dict(activations or {}))
    for node in g.nodes:
        if node.op_type in ("Gemm", "MatMul") and node.domain in ("", "ai.onnx"):
            w = _fc_weights(g, node)
            if isinstance(w, str):
                view.reasons[node.name] = w
            else:
                view.weights[node.name] = w
    for node in g.nodes:
        if node.op_type == "Relu":
            src = g.producer(node.inputs[0])
            while src is not None and src.op_type in FREE:
                src = g.producer(src.inputs[0])
            if src is not None and src.name in view.weights:
                view.fused.add(node.name)
    return view
