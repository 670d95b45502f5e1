"""Graph edits shared by passes: what counts as a constant, and adding, replacing and
dropping initializers so that the model stays valid for its IR version.

Modules of ``hwcc.passes`` whose names start with ``_`` hold no pass; discovery skips them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hwcc.ir import Graph, Node

__all__ = ["add_constant", "constant_value", "drop_unused_initializers", "set_constant_input"]


def _legacy(graph: Graph) -> bool:
    """IR version < 4: every initializer is also listed as a graph input, and is constant."""
    version = graph.meta.get("ir_version")
    return bool(version) and version < 4


def constant_value(graph: Graph, tensor: str) -> np.ndarray | None:
    """The value of ``tensor`` if it is a constant, else ``None``.

    An initializer that is also a graph input is a default a caller may override (IR
    version 4 on), so it is not a constant; in models of IR version < 4 every initializer
    is listed as an input and none can be overridden (as in onnxruntime).
    """
    if not tensor or (tensor in graph.inputs and not _legacy(graph)):
        return None
    return graph.initializer(tensor)


def add_constant(graph: Graph, name: str, array: np.ndarray, elem_type: int | None = None) -> None:
    """Add an initializer, also listing it as a graph input where the IR version says so."""
    graph.add_initializer(name, array, elem_type)
    if _legacy(graph) and name not in graph.inputs:
        graph.inputs.append(name)


def set_constant_input(graph: Graph, node: Node, index: int, array: np.ndarray) -> str:
    """Make input ``index`` of ``node`` (appended if the node has fewer inputs) a new
    constant holding ``array``.

    The old initializer's name is kept when ``node`` was its only reader (its old value is
    dropped); otherwise the new one gets a fresh name derived from it.

    Returns:
        The name of the new initializer.
    """
    ins = list(node.inputs) + [""] * (index + 1 - len(node.inputs))
    old = ins[index]
    sole = (
        constant_value(graph, old) is not None
        and old not in graph.outputs
        and ins.count(old) == 1
        and [u.name for u in graph.users(old)] == [node.name]
    )
    new = graph.unique_name(old or f"{node.name}_input{index}")
    add_constant(graph, new, array)
    ins[index] = new
    graph.set_inputs(node, ins)
    if sole:
        del graph.tensors[old]
        if new in graph.inputs:  # legacy IR: ``old`` keeps its place in the input list
            graph.inputs.remove(new)
        graph.rename_tensor(new, old)
        return old
    return new


def drop_unused_initializers(graph: Graph, names: Iterable[str]) -> list[str]:
    """Forget those of ``names`` that are initializers no node reads any more.

    Graph outputs stay, and so do initializers that are overridable graph inputs (they
    are part of the interface). Returns the names dropped.
    """
    read = {t for n in graph.nodes for t in (*n.inputs, *n.implicit_inputs)}
    keep = read | set(graph.outputs) | (set() if _legacy(graph) else set(graph.inputs))
    dropped = [
        t for t in dict.fromkeys(names) if t not in keep and graph.initializer(t) is not None
    ]
    for t in dropped:
        del graph.tensors[t]
    if dropped and _legacy(graph):
        gone = set(dropped)
        graph.inputs = [i for i in graph.inputs if i not in gone]
    return dropped


def rejection_summary(what: str, rejected: dict[str, str], shown: int = 3) -> str:
    """``"no layer was factorised: a: why; b: why (and 4 more)"`` from layer -> reason."""
    why = "; ".join(f"{n}: {r}" for n, r in list(rejected.items())[:shown])
    more = f" (and {len(rejected) - shown} more)" if len(rejected) > shown else ""
    return f"{what}: {why}{more}"
