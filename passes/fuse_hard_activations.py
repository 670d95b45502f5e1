"""Write hard-sigmoid and hard-swish, exported as arithmetic, as the operators they are.

MobileNetV3-style networks use

    hard_sigmoid(x) = relu6(x + 3) / 6 = clip(x/6 + 1/2, 0, 1),
    hard_swish(x)   = x · hard_sigmoid(x),

and several exporters write them out as ``Add(x, 3) -> Clip(0, 6) -> Div(6)`` (times
``x`` for hard-swish, before or after the division). onnxruntime runs each of those as a
pass over the tensor, four for a hard-swish; ``HardSigmoid(α = 1/6, β = 1/2)`` is one, and
``x · HardSigmoid(x)`` two (the form onnxruntime itself runs ``HardSwish`` in, and one
that every opset has). The results are equal up to rounding.
"""

from __future__ import annotations

import numpy as np

from hwcc.ir import Graph, Node
from hwcc.ir.transform import Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.edits import constant_value, drop_unused_initializers

_ONNX = ("", "ai.onnx")
_ALPHA, _BETA = 1.0 / 6.0, 0.5


@register_pass
class FuseHardActivations(Pass):
    """Replace arithmetic hard-sigmoid and hard-swish by ``HardSigmoid`` (and a ``Mul``).

    Rewrite cases (``c`` = ``Clip(Add(x, 3), 0, 6)``, operands of Add and Mul in either
    order, ``/ 6`` also written ``· (1/6)``):

    1. ``c / 6`` becomes ``HardSigmoid(x)``.
    2. ``(x · c) / 6`` becomes ``x · HardSigmoid(x)``.

    Must not fire when:

    3. the constants differ (``x + 2``, ``Clip(0, 5)``, ``/ 5``), or the Clip's bounds are
       not constants;
    4. an intermediate (the Add, the Clip or the product) is read elsewhere or is a graph
       output;
    5. the product multiplies ``c`` by something other than the ``x`` inside it.
    """

    name = "fuse_hard_activations"

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        clips = [n for n in graph.nodes if n.op_type == "Clip" and n.domain in _ONNX]
        if not clips:
            return PassResult(graph, False, "the graph has no Clip")
        g = graph.copy()
        counts = {"hard_sigmoid": 0, "hard_swish": 0}
        for clip in clips:
            kind = _rewrite(g, g.node(clip.name))
            if kind:
                counts[kind] += 1
        if not any(counts.values()):
            return PassResult(graph, False, "no Clip computes a hard-sigmoid", counts)
        return PassResult(g, True, None, counts)


def _is(value: np.ndarray | None, target: float) -> bool:
    return (
        value is not None
        and value.dtype.kind == "f"
        and value.size == 1
        and bool(np.isclose(float(value.reshape(())), target, rtol=1e-6, atol=0))
    )


def _other(g: Graph, node: Node, value: float) -> str | None:
    """The non-constant operand of a binary ``node`` whose other operand is ``value``."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if _is(constant_value(g, b), value) and constant_value(g, a) is None:
        return a
    if node.op_type in ("Add", "Mul") and _is(constant_value(g, a), value):
        return b if constant_value(g, b) is None else None
    return None


def _divides_by_six(g: Graph, node: Node, x: str) -> bool:
    if node.domain not in _ONNX:
        return False
    if node.op_type == "Div":
        return _other(g, node, 6.0) == x
    return node.op_type == "Mul" and _other(g, node, _ALPHA) == x


def _sole_reader(g: Graph, tensor: str) -> Node | None:
    users = g.users(tensor)
    return users[0] if len(users) == 1 and not g.is_graph_output(tensor) else None


def _clip_bounds(g: Graph, clip: Node) -> tuple[np.ndarray | None, np.ndarray | None]:
    if g.opset_imports.get("", 17) < 11:
        lo, hi = clip.attr("min"), clip.attr("max")
        return (None if lo is None else np.float32(lo)), (None if hi is None else np.float32(hi))
    ins = list(clip.inputs) + ["", ""]
    return constant_value(g, ins[1]), constant_value(g, ins[2])


def _rewrite(g: Graph, clip: Node) -> str | None:
    lo, hi = _clip_bounds(g, clip)
    add = g.producer(clip.inputs[0])
    if not (_is(lo, 0.0) and _is(hi, 6.0)) or add is None or add.op_type != "Add":
        return None
    x = _other(g, add, 3.0)
    reader = _sole_reader(g, clip.outputs[0])
    if x is None or add.domain not in _ONNX or _sole_reader(g, add.outputs[0]) is not clip:
        return None
    if reader is None:
        return None
    if _divides_by_six(g, reader, clip.outputs[0]):
        dead, out, kind = [reader, clip, add], reader.outputs[0], "hard_sigmoid"
    elif reader.op_type == "Mul" and sorted(reader.inputs) == sorted([x, clip.outputs[0]]):
        last = _sole_reader(g, reader.outputs[0])
        if last is None or not _divides_by_six(g, last, reader.outputs[0]):
            return None
        dead, out, kind = [last, reader, clip, add], last.outputs[0], "hard_swish"
    else:
        return None
    attrs = {"alpha": _ALPHA, "beta": _BETA}
    hsig = g.add_node("HardSigmoid", [x], 1, attrs, name=f"{clip.name}_hard_sigmoid", after=add)
    result = hsig.outputs[0]
    if kind == "hard_swish":
        result = g.add_node("Mul", [x, result], 1, name=f"{reader.name}_hard_swish").outputs[0]
    consts = [t for n in dead for t in n.inputs if constant_value(g, t) is not None]
    g.replace_all_uses_with(out, result)
    for n in dead:
        g.erase_node(n)
    drop_unused_initializers(g, consts)
    return kind
