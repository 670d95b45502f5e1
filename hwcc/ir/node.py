"""The IR's records: a :class:`Tensor` is a value, a :class:`Node` one operator.

Their docstrings specify what the IR holds; :class:`hwcc.ir.graph.Graph` holds them and
keeps the use-def links between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Dim = int | str | None
"""A dimension: a fixed size, a symbolic name (``"N"``), or ``None`` for unknown."""


@dataclass
class Tensor:
    """A value in the graph.

    Attributes:
        name: unique name in the graph.
        elem_type: ONNX element type code (``1`` float32, ``7`` int64, ...), 0 if unknown.
        shape: tuple of dims, or ``None`` when even the rank is unknown.
        data: the initializer's value, or ``None`` for values computed at run time.
        meta: free-form annotations (``declared`` if the source model gave its type).
    """

    name: str
    elem_type: int = 0
    shape: tuple[Dim, ...] | None = None
    data: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_initializer(self) -> bool:
        return self.data is not None

    @property
    def is_static(self) -> bool:
        """True if the shape is known and every dim is a fixed integer."""
        return self.shape is not None and all(isinstance(d, int) and d >= 0 for d in self.shape)


@dataclass
class Node:
    """One operator.

    Attributes:
        name: unique name in the graph (generated for nodes that had none).
        op_type: the ONNX op name, e.g. ``"Conv"``.
        domain: the operator set domain; ``""`` is the default ONNX domain.
        inputs: input tensor names (read-only tuple; change with ``Graph.set_input``).
        outputs: output tensor names (read-only tuple).
        attrs: attribute name -> value.
        attr_types: attribute name -> ONNX attribute type code, kept so that a round
            trip writes each attribute with its original type.
        implicit_inputs: outer-scope tensors read by the node's subgraphs (If, Loop,
            Scan); they are dependencies but not ``inputs``.
        meta: annotations passes attach (``winograd``, ``low_rank``, ...).
    """

    name: str
    op_type: str
    domain: str = ""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    attr_types: dict[str, int] = field(default_factory=dict)
    implicit_inputs: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.op_type}, {list(self.inputs)} -> {list(self.outputs)})"


class IRError(Exception):
    """An IR invariant was broken (a bug in a transform, not bad user input)."""
