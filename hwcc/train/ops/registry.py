"""The torch executor's op registry (:data:`OPS`, :func:`register`) and what builders share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node

__all__ = [
    "CONTRIB_DOMAIN",
    "OPS",
    "BuildContext",
    "OpFn",
    "OpSpec",
    "input_or_attr",
    "op_spec",
    "ints",
    "register",
    "reject",
    "torch_pads",
]

OpFn = Callable[..., Any]


@dataclass(frozen=True)
class OpSpec:
    """One registered operator.

    Attributes:
        build: ``build(node, ctx) -> fn``; ``fn(*inputs)`` computes the outputs.
        weights: input positions that are trainable when they are float initializers.
        outputs: how many of the node's outputs ``fn`` computes (-1: all of them).
        folds: ``fn()`` takes no input and returns a constant (Constant); the module
            stores the value instead of calling ``fn`` on every run.
    """

    build: Callable[[Node, BuildContext], OpFn]
    weights: tuple[int, ...] = ()
    outputs: int = 1
    folds: bool = False


OPS: dict[str, OpSpec] = {}
"""Op type -> its builder; an op of another domain than ONNX's under ``domain.op_type``."""

_ONNX_DOMAINS = ("", "ai.onnx")
CONTRIB_DOMAIN = "com.microsoft"  # onnxruntime's: the kernels hwcc's own passes write


def op_spec(op_type: str, domain: str = "") -> OpSpec | None:
    """The registered builder of an op, or None."""
    return OPS.get(op_type if domain in _ONNX_DOMAINS else f"{domain}.{op_type}")


def register(*op_types: str, weights: tuple[int, ...] = (), outputs: int = 1, folds: bool = False):
    """Decorator adding a builder to :data:`OPS` under each of ``op_types``."""

    def wrap(build: Callable[[Node, BuildContext], OpFn]):
        for op in op_types:
            OPS[op] = OpSpec(build, weights, outputs, folds)
        return build

    return wrap


class BuildContext:
    """What a builder may know about the graph around its node.

    Args:
        graph: the graph being converted.
        constants: tensor name -> value known before running (initializers, Constants).
        batch: the graph's fixed batch size, or None when its inputs do not share one.
        nest: ``nest(node, attr)`` -> the module running the graph attribute ``attr`` of
            ``node`` (If's branches, Loop's body), with an ``evaluate(values)`` method.
    """

    def __init__(
        self,
        graph: Graph,
        constants: dict[str, np.ndarray],
        batch: int | None,
        nest: Callable[[Node, str], Any] | None = None,
    ):
        self.graph, self.constants, self.batch = graph, constants, batch
        self.opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 17))
        self._nest = nest

    def nest(self, node: Node, attr: str) -> Any:
        """The module running the graph attribute ``attr`` of ``node``."""
        if self._nest is None or node.attr(attr) is None:
            raise reject(node, f"it has no graph attribute {attr!r} to run", "check the model")
        return self._nest(node, attr)

    def const(self, node: Node, index: int) -> np.ndarray | None:
        """The value of input ``index`` of ``node`` if it is a constant, else None."""
        name = node.inputs[index] if index < len(node.inputs) else ""
        return self.constants.get(name) if name else None

    def shape(self, node: Node, index: int) -> tuple | None:
        """The static shape of input ``index`` of ``node``, None if unknown."""
        t = self.graph.tensors.get(node.inputs[index]) if index < len(node.inputs) else None
        return None if t is None else t.shape


def reject(node: Node, what: str, hint: str) -> HwccError:
    """The error for a node the torch executor cannot run."""
    return HwccError(f"cannot run node {node.name!r} ({node.op_type}) in torch: {what}", hint)


def ints(v: Any) -> list[int]:
    """An attribute or constant value as a flat list of ints."""
    return [int(a) for a in np.asarray(v).reshape(-1)]


def input_or_attr(node: Node, ctx: BuildContext, index: int, attr: str) -> list[int] | None:
    """Ints from input ``index`` where the node has it (it must be a constant), else from
    attribute ``attr`` (the same setting in older opsets); None if neither is given."""
    if index < len(node.inputs) and node.inputs[index]:
        value = ctx.const(node, index)
        if value is None:
            raise reject(
                node,
                f"its input {node.inputs[index]!r} is computed at run time",
                "make it a constant (e.g. with the fold_constants pass)",
            )
        return ints(value)
    return None if node.attr(attr) is None else ints(node.attr(attr))


def torch_pads(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX [b1.., e1..] over the last len(begins) dims -> F.pad's last-dim-first list."""
    out: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        out += [b, e]
    return out
