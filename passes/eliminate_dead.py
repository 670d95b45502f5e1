"""Remove nodes that only copy their input, then everything that reaches no graph output.

A node is a copy when its first output equals its first input, ``y = x``:

* ``Identity``;
* ``Dropout`` in inference form: ``training_mode`` absent or a constant false (opset
  12+), ``is_test=1`` before opset 7, and its ``mask`` output unused;
* ``Reshape`` by a constant shape that resolves (``0`` copies a dim unless
  ``allowzero=1``, ``-1`` takes the rest) to the input's own static shape.

Removing ``y = x`` makes every reader of ``y`` read ``x``. When ``y`` is a graph output
the output keeps its name: the producer of ``x`` is renamed to write ``y`` directly
(``Graph.replace_all_uses_with``). That needs ``x`` to be computed by a node; when ``x``
is a graph input, an initializer, or a graph output itself, the copy is what gives the
output its name, and it stays.

Dead code: a node from which no graph output can be reached is erased, and then every
initializer that no node reads (graph inputs and outputs stay: they are the interface).
"""

from __future__ import annotations

import math

import numpy as np

from hwcc.ir import Graph, Node
from hwcc.ir.transform import Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.edits import constant_value, drop_unused_initializers

_ONNX = ("", "ai.onnx")
NOT_A_COPY = ""  # what a check returns for a node that computes something: skipped silently


@register_pass
class EliminateDead(Pass):
    """Bypass copies (Identity, inference Dropout, no-op Reshape) and erase dead code.

    Rewrite cases:

    1. ``Identity`` is removed; its readers read its input.
    2. ``Dropout`` in inference form whose mask nobody reads is removed likewise.
    3. ``Reshape`` to the input's own static shape is removed likewise.
    4. A copy whose output is a graph output is removed when its input is computed by a
       node; that node then writes the graph output under its name.
    5. Nodes from which no graph output is reachable are erased.
    6. Initializers that no node reads are dropped.

    Must not fire on:

    7. a copy whose output is a graph output and whose input is a graph input, an
       initializer, or another graph output (the graph needs the node to name it);
    8. a Dropout in training mode (``training_mode`` true or not constant, ``is_test=0``
       before opset 7) or whose mask output is read;
    9. a copy whose input or output is read by a subgraph (it would have to be rewritten);
    10. graph inputs, even unused ones, and initializers a caller may override (listed as
        graph inputs in IR version 4 on).
    """

    name = "eliminate_dead"

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        g = graph.copy()
        bypassed, kept = 0, {}
        for node in list(g.nodes):
            check = _COPIES.get(node.op_type) if node.domain in _ONNX else None
            why = check(g, node) if check else NOT_A_COPY
            if why is None:
                why = _wiring_problem(g, node)
            if why is None:
                g.replace_all_uses_with(node.outputs[0], node.inputs[0])
                g.erase_node(node)
                bypassed += 1
            elif why:
                kept[node.name] = why
        dead = g.eliminate_dead_code()
        drop_unused_initializers(g, list(g.initializers))
        g.remove_unused_tensors()
        dropped = len(graph.initializers) - len(g.initializers)
        details = {
            "bypassed": bypassed,
            "dead_nodes": dead,
            "initializers_dropped": dropped,
            "kept": kept,
        }
        if not (bypassed or dead or dropped):
            why = "nothing is dead and no node merely copies its input"
            if kept:
                why += "; kept: " + "; ".join(f"{n}: {r}" for n, r in list(kept.items())[:3])
            return PassResult(graph, False, why, details)
        return PassResult(g, True, None, details)


def _wiring_problem(g: Graph, node: Node) -> str | None:
    """Why the copy ``y = x`` cannot be bypassed, or None."""
    x, y = node.inputs[0], node.outputs[0]
    if not x or not y:
        return "its input or output is omitted"
    if any(y in u.implicit_inputs for u in g.users(y)):
        return f"its output {y!r} is read by a subgraph"
    if not g.is_graph_output(y):
        return None
    if g.producer(x) is None or x in g.inputs:
        return f"it names graph output {y!r} after a graph input or initializer {x!r}"
    if g.is_graph_output(x):
        return f"it copies graph output {x!r} to graph output {y!r}"
    if any(x in u.implicit_inputs for u in g.users(x)):
        return f"its input {x!r} is read by a subgraph"
    return None


def _dropout(g: Graph, node: Node) -> str | None:
    opset = g.opset_imports.get("", g.opset_imports.get("ai.onnx", 1))
    if opset < 7 and not node.attr("is_test", 0):
        return "it is in training mode (is_test=0)"
    if len(node.inputs) > 2 and node.inputs[2]:
        mode = constant_value(g, node.inputs[2])
        if mode is None or bool(np.asarray(mode).any()):
            return "its training_mode is true or not a constant"
    mask = node.outputs[1] if len(node.outputs) > 1 else ""
    if mask and (g.users(mask) or g.is_graph_output(mask)):
        return f"its mask output {mask!r} is read"
    return None


def _reshape(g: Graph, node: Node) -> str | None:
    x = g.tensors.get(node.inputs[0])
    target = constant_value(g, node.inputs[1]) if len(node.inputs) > 1 else None
    if x is None or not x.is_static or target is None:
        return NOT_A_COPY
    dims = [int(d) for d in np.asarray(target).ravel()]
    if not node.attr("allowzero", 0):
        dims = [x.shape[i] if d == 0 and i < len(x.shape) else d for i, d in enumerate(dims)]
    if dims.count(-1) == 1:
        rest = math.prod(d for d in dims if d != -1)
        if rest <= 0:
            return NOT_A_COPY
        dims[dims.index(-1)] = math.prod(x.shape) // rest
    return None if tuple(dims) == tuple(x.shape) else NOT_A_COPY


_COPIES = {"Identity": lambda g, node: None, "Dropout": _dropout, "Reshape": _reshape}
