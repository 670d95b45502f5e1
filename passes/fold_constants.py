"""Constant folding: compute ahead of time what does not depend on the graph's inputs.

A node is *constant* when every input it reads is a constant (an initializer that is not
also a graph input, or the output of a node folded before it): then ``f(c₁, …, cₖ)`` is
the same on every run, so the node is replaced by initializers holding its outputs. Two
kinds of node are folded without evaluating anything:

* ``Constant``: its attribute is the value;
* ``Shape(x)`` / ``Size(x)`` of a tensor whose shape is static: ``x.shape[start:end]`` /
  ``∏ x.shape``. This is what collapses the ``Shape → Gather → Unsqueeze → Concat →
  Reshape`` chains of torch exports into a Reshape by a constant shape.

Everything else is evaluated by onnxruntime on a one-node model (CPU, graph
optimisations off, through ``hwcc.ir.verify.run_onnx``), not by ``onnx.reference``: the
folded value is then what the runtime that runs and verifies the model computes for that
node, bit for bit, and large folds (a constant MatMul or Transpose of a weight) run at
native speed rather than in numpy. A node onnxruntime cannot evaluate is kept, with the
reason in ``details["skipped"]``.
"""

from __future__ import annotations

import math

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node
from hwcc.ir.dtypes import BYTES, numpy_dtype
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.ir.verify import run_onnx
from hwcc.passes.lib.branches import inline_constant_ifs
from hwcc.passes.lib.edits import add_constant, constant_value, drop_unused_initializers

_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
_RANDOM = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}
_GRAPH_ATTRS = (5, 10)  # AttributeProto.GRAPH, AttributeProto.GRAPHS


@register_pass
class FoldConstants(Pass):
    """Replace nodes whose inputs are all constant by initializers holding their outputs.

    Rewrite cases:

    1. ``Constant`` nodes become initializers of the same name.
    2. A node of the standard domains whose inputs are all constants is evaluated and
       becomes initializers; chains fold in one run.
    3. ``Shape`` and ``Size`` of a tensor with a static shape fold even when the tensor
       itself is computed at run time.
    9. An ``If`` whose condition is a constant is replaced by the nodes of the branch it
       takes (:mod:`hwcc.passes.lib.branches`), and folding goes on over them.

    Must not fire on a node that:

    4. is nondeterministic (``RandomNormal*``, ``RandomUniform*``, ``Multinomial``,
       ``Bernoulli``, ``Dropout`` given a ``training_mode`` input);
    5. has a subgraph (``Loop``, ``Scan``, an ``If`` whose condition is computed at run
       time) or belongs to a non-standard domain;
    6. would produce an output larger than ``max_bytes`` (a ``ConstantOfShape`` of a
       huge shape stays a node); ``Constant`` nodes are exempt, their value is already
       in the model;
    7. produces a graph output, or an output whose type is unknown or not a tensor;
    8. reads a graph input, including an initializer that is also a graph input
       (a caller may override it), other than through case 3.
    """

    name = "fold_constants"
    knobs = (
        Knob(
            "max_bytes",
            int,
            1 << 20,
            "largest output, in bytes, that folding may create",
            range=(0, None),
        ),
    )

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        max_bytes = self.options(ctx)["max_bytes"]
        g = graph.copy()
        folded, inlined, skipped, freed = 0, 0, {}, []
        while True:
            for node in list(g.nodes):
                if not g.has_node(node.name) or not _is_candidate(g, node):
                    continue
                values = _skip_reason(g, node, max_bytes) or _evaluate(g, node, max_bytes)
                if isinstance(values, str):
                    skipped[node.name] = values
                    continue
                _replace(g, node, values)
                freed.extend(node.inputs)
                folded += 1
            more, kept = inline_constant_ifs(g)  # case 9: its nodes may fold in turn
            skipped.update(kept)
            inlined += more
            if not more:
                break
            for name in list(skipped):
                if not g.has_node(name) or name in kept:
                    skipped.pop(name)  # tried again on the next sweep
        drop_unused_initializers(g, freed)
        details = {"folded": folded, "inlined": inlined, "skipped": skipped}
        if not folded and not inlined:
            if not skipped:
                return PassResult(graph, False, "no node has only constant inputs", details)
            why = "; ".join(f"{n}: {r}" for n, r in list(skipped.items())[:3])
            return PassResult(graph, False, f"{len(skipped)} constant node(s) kept: {why}", details)
        g.toposort()
        return PassResult(g, True, None, details)


def _is_candidate(g: Graph, node: Node) -> bool:
    if node.op_type in ("Shape", "Size") and node.inputs and _static(g, node.inputs[0]):
        return True
    return all(constant_value(g, t) is not None for t in (*node.inputs, *node.implicit_inputs) if t)


def _static(g: Graph, name: str) -> bool:
    t = g.tensors.get(name)
    return t is not None and t.is_static and "type_proto" not in t.meta


def _skip_reason(g: Graph, node: Node, max_bytes: int) -> str | None:
    if node.domain not in _DOMAINS:
        return f"domain {node.domain!r} is not a standard one"
    if node.op_type in _RANDOM or (
        node.op_type == "Dropout" and len(node.inputs) > 2 and node.inputs[2]
    ):
        return "it is nondeterministic"
    if node.implicit_inputs or any(t in _GRAPH_ATTRS for t in node.attr_types.values()):
        return "it has a subgraph"
    for o in node.outputs:
        if not o:
            continue
        if g.is_graph_output(o):
            return f"its output {o!r} is a graph output"
        t = g.tensors.get(o)
        if t is None or "type_proto" in t.meta or not _numpy_type(t.elem_type):
            return f"the type of its output {o!r} is unknown, not a tensor, or not one numpy holds"
        size = math.prod(t.shape) * BYTES.get(t.elem_type, 8) if t.is_static else 0
        if size > max_bytes and node.op_type != "Constant":
            return f"its output {o!r} would take {size} bytes > max_bytes={max_bytes}"
    return None


def _numpy_type(elem_type: int) -> bool:
    try:
        numpy_dtype(elem_type)
    except KeyError:
        return False
    return True


def _evaluate(g: Graph, node: Node, max_bytes: int) -> list[np.ndarray] | str:
    """The node's outputs (in order, ``None`` for omitted ones), or why they are not folded."""
    direct = _without_runtime(g, node)
    if direct is not None:
        return direct
    mini = Graph("fold")
    mini.opset_imports = dict(g.opset_imports)
    mini.meta["ir_version"] = g.meta.get("ir_version")
    feeds = {}
    for name in dict.fromkeys(t for t in node.inputs if t):
        feeds[name] = g.initializer(name)
        mini.add_input(name, g.tensors[name].elem_type, feeds[name].shape)
    mini.add_node(
        node.op_type,
        node.inputs,
        node.outputs,
        node.attrs,
        name=node.name,
        domain=node.domain,
        attr_types=node.attr_types,
    )
    for o in node.outputs:
        if o:
            mini.tensors[o].elem_type = g.tensors[o].elem_type
            mini.outputs.append(o)
    try:
        results = iter(run_onnx(mini, feeds))
    except HwccError as e:
        return e.message
    values = [next(results) if o else None for o in node.outputs]
    too_big = [
        o
        for o, v in zip(node.outputs, values)
        if v is not None and np.asarray(v).nbytes > max_bytes
    ]
    return f"its output {too_big[0]!r} takes more than max_bytes={max_bytes}" if too_big else values


def _without_runtime(g: Graph, node: Node) -> list[np.ndarray] | None:
    """Outputs of Constant, Shape and Size computed here, or None to use onnxruntime."""
    a = node.attrs
    if node.op_type == "Constant":
        if isinstance(a.get("value"), np.ndarray):
            return [a["value"]]
        for key, dtype in (
            ("value_float", np.float32),
            ("value_floats", np.float32),
            ("value_int", np.int64),
            ("value_ints", np.int64),
        ):
            if key in a:
                return [np.array(a[key], dtype=dtype)]
        return None
    if node.op_type in ("Shape", "Size") and _static(g, node.inputs[0]):
        shape = g.tensors[node.inputs[0]].shape
        if node.op_type == "Size":
            return [np.array(math.prod(shape), dtype=np.int64)]
        return [np.array(shape[a.get("start", 0) : a.get("end", len(shape))], dtype=np.int64)]
    return None


def _replace(g: Graph, node: Node, values: list[np.ndarray | None]) -> None:
    read = [o for o, v in zip(node.outputs, values) if o and v is not None and g.users(o)]
    types = {o: g.tensors[o].elem_type for o in read}
    g.erase_node(node, force=True)
    for o, v in zip(node.outputs, values):
        if o in types:
            add_constant(g, o, np.array(v, dtype=numpy_dtype(types[o])), types[o])  # owned copy
