"""Control flow for cost models: an ``If`` is priced as the branch it takes.

A cost model prices what a device executes. For an ``If`` node that is the branch its
condition selects, node by node, not the node as an opaque whole: its branch can hold
the whole network (the silero voice detector wraps everything in an ``If`` on the sample
rate) and a kernel measured or modelled as "the If" would have no dims to price. So
:func:`resolve` rewrites a graph before it is analysed: each ``If`` is replaced by the
nodes of its taken branch, in place, until none is left (branches nest). Every target
then prices those nodes like top-level ones, with everything it knows: the CPU replays
onnxruntime's fusions on them and looks their kernels up, the accelerators run what they
support on chip and send the rest to their host. The branch's nodes keep their own names
behind the ``If``'s (``/m/If.then/conv``), so reports show where they came from.

Why inline rather than time the ``If`` as one kernel: a one-kernel model of an ``If``
would carry its whole branch, with weights, as a table key, and only the CPU could use
it; inlining prices the branch the same way on every target and reuses every kernel
already measured. What inlining changes, and is allowed to: the ``If``'s own dispatch in
onnxruntime (it runs the branch as a nested graph, some microseconds) is not priced, and
nodes of a branch are tagged with it (``meta["scope"]``) so that a fusion model does not
fuse across the branch's boundary, which onnxruntime's optimizer does not cross either.

The condition is evaluated, never guessed:

1. a condition that is a constant (an initializer, a ``Constant``: what specialising a
   model to its shapes leaves) is read;
2. otherwise the condition is computed by onnxruntime on the model with it exposed as an
   output: on the sample inputs the pricer was given, or on random inputs when it does
   not depend on input values (only on constants and shapes, which are fixed);
3. a condition that depends on input values when no sample was given cannot be known: the
   branch with the larger workload (FLOPs, then bytes moved; the target is not asked, so
   that choosing stays a function of the graph alone) is priced, and a note says so.

``Loop`` and ``Scan`` are left as they are: they are listed as unknown layers by the
workload view, and a target refuses or hosts them as any node it cannot price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.onnx_io.inline import branch_prefix, inline_branches

__all__ = ["Resolved", "has_control_flow", "resolve", "BRANCHES"]

BRANCHES = ("then", "else")
_MAX_DEPTH = 32  # nesting levels; real models have a handful


@dataclass
class Resolved:
    """A graph with its ``If`` nodes replaced by their taken branches.

    Attributes:
        graph: the rewritten graph (the input itself when it had no ``If``).
        taken: ``If`` node name -> the branch priced (``"then"`` or ``"else"``), nested
            ``If`` nodes under their prefixed names.
        notes: one line per choice the user should know about (a condition that could
            not be evaluated).
    """

    graph: Graph
    taken: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _is_if(node) -> bool:
    return node.op_type == "If" and node.domain in ("", "ai.onnx")


def has_control_flow(graph: Graph) -> bool:
    """Whether ``graph`` has an ``If`` node at its top level."""
    return any(_is_if(n) for n in graph.nodes)


def resolve(graph: Graph, sample: Mapping[str, np.ndarray] | None = None) -> Resolved:
    """``graph`` with every ``If`` replaced by the branch its condition takes.

    Args:
        graph: a shape-inferred graph with fixed input shapes.
        sample: one run's inputs (name -> array, as the graph takes them), for conditions
            that depend on input values. None: such conditions are not known, and the
            more expensive branch is priced (with a note).

    Returns:
        The :class:`Resolved` graph; ``graph`` itself, untouched, when it has no ``If``.

    Raises:
        HwccError: onnxruntime cannot compute a condition or a shape, or the branches nest
            deeper than any real model.
    """
    out = Resolved(graph)
    if not has_control_flow(graph):
        return out
    g = graph
    for _ in range(_MAX_DEPTH):
        ifs = [n for n in g.nodes if _is_if(n)]
        if not ifs:
            return out
        choice = _conditions(g, ifs, sample)
        for node in ifs:
            if choice[node.name] is None:
                which, note = _costlier(g, node)
                choice[node.name] = which
                out.notes.append(note)
        out.taken.update(choice)
        g = _inlined(g, choice, sample)
        out.graph = g
    raise HwccError(
        f"{graph.name}: If nodes nest more than {_MAX_DEPTH} levels deep",
        "price a model whose control flow was folded (specialise it to its inputs)",
    )


# ---------------------------------------------------------------------- conditions
def _constant(g: Graph, name: str) -> np.ndarray | None:
    t = g.tensors.get(name)
    if t is not None and t.data is not None:
        return t.data
    p = g.producer(name)
    if p is not None and p.op_type == "Constant" and isinstance(p.attr("value"), np.ndarray):
        return p.attr("value")
    return None


def _reads_input_values(g: Graph, name: str) -> bool:
    """Whether ``name`` depends on the values of a graph input (shapes are fixed: a
    ``Shape`` or ``Size`` of a static tensor does not)."""
    inputs, seen, todo = set(g.real_inputs()), set(), [name]
    while todo:
        t = todo.pop()
        if t in seen or not t:
            continue
        seen.add(t)
        if t in inputs:
            return True
        p = g.producer(t)
        if p is None:
            continue
        if p.op_type in ("Shape", "Size") and p.inputs and g.tensors[p.inputs[0]].is_static:
            continue
        todo.extend(p.inputs)
        todo.extend(p.implicit_inputs)
    return False


def _conditions(
    g: Graph, ifs: list, sample: Mapping[str, np.ndarray] | None
) -> dict[str, str | None]:
    """The branch each ``If`` takes; None where it cannot be known without a sample."""
    choice: dict[str, str | None] = {}
    run: dict[str, str] = {}  # If name -> condition tensor computed by onnxruntime
    for node in ifs:
        value = _constant(g, node.inputs[0])
        if value is not None:
            choice[node.name] = _branch(value)
        elif sample is None and _reads_input_values(g, node.inputs[0]):
            choice[node.name] = None
        else:
            run[node.name] = node.inputs[0]
    if run:
        values = _computed(g, sorted(set(run.values())), sample)
        choice.update({n: _branch(values[c]) for n, c in run.items()})
    return choice


def _branch(value: np.ndarray) -> str:
    v = np.asarray(value)
    if v.size != 1:
        raise HwccError(f"an If condition must hold one value, this one has shape {v.shape}")
    return "then" if bool(v.reshape(())) else "else"


def _feeds(g: Graph, sample: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    from hwcc.ir.verify import random_feeds  # onnxruntime: only for graphs that need it

    feeds = random_feeds(g, 0)
    if sample is not None:
        feeds.update({k: np.asarray(v) for k, v in sample.items() if k in feeds})
    return feeds


def _computed(
    g: Graph, names: list[str], sample: Mapping[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """``names`` as onnxruntime computes them on ``sample`` (random inputs where absent)."""
    from hwcc.ir.onnx_io import to_proto
    from hwcc.ir.verify import Session

    model = to_proto(g)
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    session = Session(model)
    values = dict(zip(session.output_names, session.run(_feeds(g, sample))))
    return {n: values[n] for n in names}


def _costlier(g: Graph, node) -> tuple[str, str]:
    """The branch of ``node`` with the larger workload (FLOPs, then bytes), and the note."""
    from hwcc.ir.workload import analyze

    sizes = {}
    for which in BRANCHES:
        # Only this If is inlined: the other Ifs of its level stay single unknown layers.
        trial = _inlined(g, {node.name: which}, None, probe=False)
        prefix = branch_prefix(node.name, which)
        mine = [x for x in analyze(trial).layers if x.name.startswith(prefix)]
        nbytes = sum(x.weight_bytes + x.input_bytes + x.output_bytes for x in mine)
        sizes[which] = (sum(x.flops for x in mine), nbytes)
    which = max(BRANCHES, key=lambda b: sizes[b])
    note = (
        f"the condition of {node.name} depends on the input values and no sample inputs "
        f"were given: priced its {which} branch, the more expensive one "
        f"({sizes[which][0]} against {sizes[_other(which)][0]} FLOPs); "
        "give sample inputs (--data) to price the branch that runs"
    )
    return which, note


def _other(which: str) -> str:
    return "else" if which == "then" else "then"


# ---------------------------------------------------------------------- inlining
def _inlined(
    g: Graph, choice: Mapping[str, str], sample: Mapping[str, np.ndarray] | None, probe=True
) -> Graph:
    """``g`` with the ``If`` nodes named in ``choice`` replaced by their chosen branch,
    shapes inferred (and read from onnxruntime where onnx's inference cannot size them)."""
    from hwcc.ir.onnx_io import from_proto, to_proto
    from hwcc.ir.specialise import probe_shapes, unsized

    model = to_proto(g)
    scopes = inline_branches(model.graph, choice)
    flat = from_proto(model, source=g.meta.get("source", "<model>"))
    for node in flat.nodes:
        outer = g.node(node.name).meta.get("scope") if g.has_node(node.name) else None
        scope = scopes.get(node.name, outer)
        if scope is not None:
            node.meta["scope"] = scope
    if probe and (left := unsized(flat)):
        probe_shapes(flat, _feeds(flat, sample), left)
    return flat
