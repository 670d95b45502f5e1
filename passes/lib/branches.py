"""Inlining an ``If`` whose condition is a constant: the branch it always takes replaces it.

Exporters write control flow that only looks at shapes: torch's ``squeeze(dim)`` on a
dimension that may be 1 becomes ``If(Equal(Gather(Shape(x)), 1))`` with a Squeeze in one
branch and an Identity in the other, and a recurrent layer fed a state of unknown batch
wraps its whole LSTM in such an ``If`` (silero-vad). Once the input shapes are fixed and
the shape arithmetic folded, the condition is a constant, and the ``If`` is the nodes of
one branch: they are added to the graph, the branch's outputs renamed to the ``If``'s
(or copied through an Identity where a branch hands back an outer tensor), so that every
later pass, target and the pruner see ordinary nodes. A nested ``If`` becomes a node of
the outer graph and folds the same way once its own condition is constant.
"""

from __future__ import annotations

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node
from hwcc.ir.onnx_io.subgraphs import read_subgraph
from hwcc.passes.lib.edits import constant_value

__all__ = ["inline_constant_ifs"]


def inline_constant_ifs(g: Graph) -> tuple[int, dict[str, str]]:
    """Inline, in place, every ``If`` of ``g`` whose condition is a constant.

    Returns:
        How many were inlined, and for each one kept, why.
    """
    inlined, kept = 0, {}
    for node in list(g.nodes):
        if node.op_type != "If" or node.domain not in ("", "ai.onnx"):
            continue
        cond = constant_value(g, node.inputs[0]) if node.inputs else None
        if cond is None or np.asarray(cond).size != 1:
            continue
        taken = "then_branch" if bool(np.asarray(cond).reshape(-1)[0]) else "else_branch"
        why = _inline(g, node, taken)
        if why:
            kept[node.name] = why
        else:
            inlined += 1
    return inlined, kept


def _inline(g: Graph, node: Node, attr: str) -> str | None:
    """Replace ``node`` by the nodes of its branch ``attr``; or say why not."""
    try:
        body = read_subgraph(g, node, attr)
    except HwccError as e:
        return f"its {attr} cannot be read: {e.message}"
    if body is None:
        return f"it has no graph attribute {attr!r}"
    if len(body.outputs) != len(node.outputs):
        return f"its {attr} has {len(body.outputs)} outputs for the If's {len(node.outputs)}"
    defined = [o for n in body.nodes for o in n.outputs if o] + list(body.initializers)
    clash = next((t for t in defined if t in g.tensors), None)
    if clash is not None:
        return f"its {attr} defines {clash!r}, a name the graph already has"
    nested = {t for n in body.nodes for t in n.implicit_inputs}
    rename: dict[str, str] = {}
    for inner, outer in zip(body.outputs, node.outputs):
        if body.producer(inner) is not None and inner not in nested and inner not in rename:
            rename[inner] = outer
    g.erase_node(node, force=True)
    for name, value in body.initializers.items():
        g.add_initializer(name, value, body.tensors[name].elem_type)
    for n in body.nodes:
        g.add_node(
            n.op_type,
            [rename.get(t, t) for t in n.inputs],
            [rename.get(t, t) for t in n.outputs],
            n.attrs,
            name=n.name,
            domain=n.domain,
            meta=n.meta,
            attr_types=n.attr_types,
            implicit_inputs=n.implicit_inputs,
        )
        for o in n.outputs:
            if o and o not in rename:
                _copy_type(body, g, o, o)
    for inner, outer in zip(body.outputs, node.outputs):
        if rename.get(inner) != outer and outer:
            g.add_node("Identity", [inner], [outer], name=f"{node.name}_{attr}_out")
    return None


def _copy_type(src: Graph, dst: Graph, name: str, to: str) -> None:
    s, d = src.tensors[name], dst.tensor(to)
    if s.elem_type and not d.elem_type:
        d.elem_type = s.elem_type
    if s.shape is not None and d.shape is None:
        d.shape = s.shape
