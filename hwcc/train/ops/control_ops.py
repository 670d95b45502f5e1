"""Control flow: If, Loop and Scan, whose bodies are graphs of their own.

The executor is eager, so a body is simply run when its node runs: If evaluates its
condition and runs one branch, Loop and Scan run their body once per iteration. Each
body is a module of its own (``ctx.nest``), built once with the node, so an op the
executor cannot run inside a body is refused before any training, with its node named;
the weights initialized inside a body are parameters of that module.

A body reads the tensors of the scopes around it (``Node.implicit_inputs``). Those that
are constants outside (initializers, folded Constants) are constants inside too, so that
a Reshape in a branch still sees its target shape; those that are trainable outside
(:func:`weight_uses`) and everything computed at run time are fed to the body.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
import torch
from onnx import AttributeProto, numpy_helper

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node
from hwcc.ir.dtypes import numpy_dtype
from hwcc.ir.onnx_io import from_proto
from hwcc.train.ops.registry import BuildContext, ints, op_spec, register, reject

__all__ = ["body_graph", "bodies", "outer_refs", "weight_uses"]


def bodies(node: Node) -> list[tuple[str, onnx.GraphProto]]:
    """The graph attributes of ``node``: (attribute name, graph)."""
    out = []
    for name, value in node.attrs.items():
        proto = getattr(value, "proto", None)
        if isinstance(proto, AttributeProto) and proto.type == AttributeProto.GRAPH:
            out.append((name, proto.g))
    return out


def _subgraphs(n: onnx.NodeProto) -> Iterable[onnx.GraphProto]:
    for a in n.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def outer_refs(g: onnx.GraphProto) -> list[str]:
    """The names ``g`` (or a graph nested in it) reads from enclosing scopes, in order."""
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    used: dict[str, None] = {}
    for n in g.node:
        for name in (*n.input, *(r for sg in _subgraphs(n) for r in outer_refs(sg))):
            if name and name not in defined:
                used[name] = None
        defined.update(n.output)
    used.update((o.name, None) for o in g.output if o.name not in defined)
    return list(used)


def weight_uses(g: onnx.GraphProto) -> set[str]:
    """Names read at a weight position of an op (see ``register(weights=)``) in ``g``
    or in a graph nested in it."""
    names: set[str] = set()
    for n in g.node:
        spec = op_spec(n.op_type, n.domain)
        if spec is not None:
            names.update(n.input[i] for i in spec.weights if i < len(n.input) and n.input[i])
        for sg in _subgraphs(n):
            names |= weight_uses(sg)
    return names


def body_graph(node: Node, attr: str, ctx: BuildContext, fed: set[str]) -> Graph:
    """The graph attribute ``attr`` of ``node`` as a graph of its own: the outer tensors
    it reads are initializers where they are constants outside and not in ``fed``, inputs
    after its own otherwise (typed as outside)."""
    g = onnx.GraphProto()
    g.CopyFrom(node.attr(attr).proto.g)
    for i, vi in enumerate(g.input):  # Loop and Scan may leave their body inputs untyped
        if not vi.type.tensor_type.elem_type and not vi.type.WhichOneof("value"):
            elem = _elem_for(node, i)
            if elem:
                vi.type.tensor_type.elem_type = elem
    for name in outer_refs(g):
        value = ctx.constants.get(name)
        t = ctx.graph.tensors.get(name)
        if value is not None and name not in fed:
            g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        else:
            g.input.append(_value_info(name, t))
    opsets = [
        onnx.OperatorSetIdProto(domain=d, version=v) for d, v in ctx.graph.opset_imports.items()
    ]
    model = onnx.ModelProto(
        ir_version=ctx.graph.meta.get("ir_version") or 8, graph=g, opset_import=opsets
    )
    model.functions.extend(ctx.graph.meta.get("functions", []))
    try:
        return from_proto(model, allow_dynamic=True, source=f"the {attr} of {node.name!r}")
    except HwccError as e:
        raise reject(node, f"its {attr} cannot be read: {e.message}", e.hint or "") from None


def _value_info(name: str, t) -> onnx.ValueInfoProto:
    """The declaration of the outer tensor ``t`` (None: unknown) as a body input."""
    vi = onnx.ValueInfoProto(name=name)
    if t is not None and "type_proto" in t.meta:
        vi.type.CopyFrom(t.meta["type_proto"])
        return vi
    vi.type.tensor_type.elem_type = t.elem_type if t is not None else 0
    if t is not None and t.shape is not None:
        shape = vi.type.tensor_type.shape
        for d in t.shape:
            dim = shape.dim.add()
            if isinstance(d, int) and d >= 0:
                dim.dim_value = d
            elif isinstance(d, str):
                dim.dim_param = d
    return vi


def _elem_for(node: Node, i: int) -> int:
    """The element type ONNX fixes for a body's input ``i``: a Loop's iteration number and
    condition; 0 (unknown) for the others."""
    if node.op_type == "Loop" and i < 2:
        return onnx.TensorProto.INT64 if i == 0 else onnx.TensorProto.BOOL
    return 0


def _empty(ctx: BuildContext, name: str) -> torch.Tensor:
    t = ctx.graph.tensors.get(name)
    dtype = numpy_dtype(t.elem_type) if t is not None and t.elem_type else np.float32
    return torch.from_numpy(np.zeros((0,), dtype))


# ------------------------------------------------------------------- If / Loop / Scan
@register("If", outputs=-1)
def _if(node: Node, ctx: BuildContext):
    then, other = ctx.nest(node, "then_branch"), ctx.nest(node, "else_branch")
    outer = node.implicit_inputs

    def fn(cond, *values):
        branch = then if bool(cond.reshape(-1)[0]) else other
        return branch.evaluate(dict(zip(outer, values)))

    return fn


@register("Loop", outputs=-1)
def _loop(node: Node, ctx: BuildContext):
    body = ctx.nest(node, "body")
    carried = len(node.inputs) - 2
    formal = body.graph.inputs[: 2 + carried]
    scans = [_empty(ctx, o) for o in node.outputs[carried:]]
    outer = node.implicit_inputs

    def fn(trips, cond, *values):
        state, env = list(values[:carried]), dict(zip(outer, values[carried:]))
        limit = None if trips is None else int(trips.reshape(-1)[0])
        go = torch.tensor(True) if cond is None else cond.reshape(())
        steps: list[tuple] = []
        i = 0
        while bool(go) and (limit is None or i < limit):
            env.update(zip(formal, [torch.tensor(i, dtype=torch.int64), go, *state]))
            out = body.evaluate(env)
            go, state = out[0].reshape(()), list(out[1 : 1 + carried])
            steps.append(out[1 + carried :])
            i += 1
        if not steps:
            return (*state, *scans)
        return (*state, *(torch.stack([s[k] for s in steps]) for k in range(len(scans))))

    return fn


@register("Scan", outputs=-1)
def _scan(node: Node, ctx: BuildContext):
    body = ctx.nest(node, "body")
    old = ctx.opset < 9  # Scan-8: a batch axis first, sequence_lens as the first input
    m = int(node.attr("num_scan_inputs"))
    n = len(node.inputs) - m - old
    k = len(node.outputs) - n
    in_axes = [0] * m if old else ints(node.attr("scan_input_axes", [0] * m))
    in_dirs = ints(node.attr("directions" if old else "scan_input_directions", [0] * m))
    out_axes = [0] * k if old else ints(node.attr("scan_output_axes", [0] * k))
    out_dirs = [0] * k if old else ints(node.attr("scan_output_directions", [0] * k))
    formal = body.graph.inputs[: n + m]
    outer = node.implicit_inputs

    def scan(state, xs, env):
        length = xs[0].shape[in_axes[0]] if m else 0
        steps = []
        for t in range(length):
            parts = [
                x.select(a, length - 1 - t if d else t) for x, a, d in zip(xs, in_axes, in_dirs)
            ]
            env.update(zip(formal, [*state, *parts]))
            out = body.evaluate(env)
            state = list(out[:n])
            steps.append(out[n:])
        ys = []
        for j in range(k):
            seq = [s[j] for s in steps][:: -1 if out_dirs[j] else 1]
            axis = out_axes[j] % (seq[0].dim() + 1) if seq else 0
            ys.append(torch.stack(seq, axis) if seq else _empty(ctx, node.outputs[n + j]))
        return (*state, *ys)

    def fn(*values):
        if not old:
            return scan(list(values[:n]), values[n : n + m], dict(zip(outer, values[n + m :])))
        lens, values = values[0], values[1:]
        states, xs = values[:n], values[n : n + m]
        if lens is not None and bool((lens != xs[0].shape[1]).any()):
            raise ValueError("Scan-8 with sequences shorter than the batch's is not supported")
        env = dict(zip(outer, values[n + m :]))
        runs = [scan([s[b] for s in states], [x[b] for x in xs], env) for b in range(len(xs[0]))]
        return tuple(torch.stack(parts) for parts in zip(*runs))

    return fn
