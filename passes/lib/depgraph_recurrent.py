"""Channel rules of the recurrent layers (LSTM, GRU, RNN): their hidden size as a group.

A recurrent layer with ``H`` hidden units is, for channel pruning, a layer that creates a
channel space of ``H`` channels (shared by both directions of a bidirectional one) and
consumes the channels of its input ``X`` along its last axis, as a MatMul would. What
makes it different is that hidden unit ``j`` is indexed in several places at once:

* ``W [dirs, G·H, in]`` and ``R [dirs, G·H, H]`` stack the ``G`` gates along axis 1
  (``G = 4`` for LSTM: i, o, f, c; 3 for GRU: z, r, h; 1 for RNN), so unit ``j`` owns rows
  ``j + g·H`` for every gate ``g``; ``B [dirs, 2·G·H]`` stacks the ``W`` and ``R`` biases of
  every gate, ``2·G`` blocks of ``H``; LSTM peepholes ``P [dirs, 3·H]`` are 3 blocks;
* ``R``'s axis 2 is the previous hidden state, indexed plainly by ``j``: removing a unit
  removes what it feeds back into every other unit;
* the initial states ``initial_h``/``initial_c`` (``[dirs, B, H]``, or ``[B, dirs, H]``
  with ``layout = 1``) hold one value per unit on axis 2.

The gate blocks are recorded as sites with ``tile = G`` (or ``2·G``, 3): position ``p`` of
the space stands for ``p + g·n`` for each of the ``tile`` blocks of ``n`` entries. The
``hidden_size`` attribute is a site of its own, set to the number of units kept.

A unit removed this way takes nothing else with it: every gate of every unit is an
element-wise function of the unit's own rows, so the surviving units compute what they
computed before except for the removed units' contribution through ``R``'s columns (none
when their hidden state is zero). GRU's ``linear_before_reset`` moves where the reset gate
multiplies, not what is indexed, so it needs nothing here.

An initial state computed at run time as zeros (``ConstantOfShape`` with value 0, as
exporters write ``torch.zeros(dirs, x.size(1), H)``) is what the op assumes without one:
the rewrite omits that input rather than resizing the shape computation behind it.

A streaming model passes its state in and out: ``initial_h``/``initial_c`` are fed by the
caller (graph inputs, or computed from them) and ``Y_h``/``Y_c`` are returned as graph
outputs for the next call, so the state's size is part of the model's interface. The
layer shrinks behind that interface, with ``K`` the kept units of ``H``:

* on the way in, a ``select`` site: ``h₀' = Gather(h₀, K, axis=2)`` is inserted before
  the input (a state that already is such a Gather, read by this layer only, keeps the
  entries ``K`` of its indices instead, so pruning again composes);
* on the way out, a ``scatter`` site where the returned state reaches a graph output
  (directly or through ops that carry its units: reshapes, element-wise ops with
  constants): ``h = h' · P`` with ``P = I_H[K]`` (``|K| × H``, row ``k`` one-hot at unit
  ``K_k``), which puts unit ``K_k`` back at position ``K_k`` and zeros everywhere else.
  The product of a finite state with a 0/1 matrix holding one 1 per row is exact, and
  the MatMul is an ordinary consumer of the state's units, so a later pruning cuts rows
  of ``P``.

Fed back, the zeros of the removed units are dropped again by the ``select``: the round
trip is exact, and so is the whole pruned model when the removed units contribute
nothing (zero filters, as for any pruning). A returned state whose units do not lie on
the last axis of the graph output, a state output of a layer whose initial state is not
fed by the caller (then it is the model's result, not its state), a state that is not
one value per unit, and a weight that is not a constant still keep the hidden size.
"""

from __future__ import annotations

import numpy as np

from hwcc.ir import Node
from hwcc.passes.lib.depgraph import ChannelAnalysis, Layout, make_layout, rule
from hwcc.passes.lib.depgraph_rules import _where  # the shared helper of the rules

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
"""Gate blocks stacked along axis 1 of W and R, per op (B holds twice as many)."""

_X, _W, _R, _B, _LENS, _H0, _C0, _P = range(8)  # ONNX input order


@rule("LSTM", "GRU", "RNN")
def _recurrent(a: ChannelAnalysis, node: Node) -> None:
    ins = list(node.inputs) + [""] * (8 - len(node.inputs))
    x = ins[_X]
    lay = a.layout.get(x)
    for i, t in enumerate(ins[1:], start=1):
        if t:
            a.block(a.layout.get(t), f"{_where(node)} reads them as input {i} (a weight or state)")
    gates = GATES[node.op_type]
    w, r = a.const(ins[_W]), a.const(ins[_R])
    bias = a.const(ins[_B]) if ins[_B] else None
    if w is None or r is None or (ins[_B] and bias is None) or w.ndim != 3 or r.ndim != 3:
        a.block(lay, f"they reach {_where(node)}, whose weights are not constant")
        return
    dirs, rows, _ = w.shape
    hidden = int(node.attr("hidden_size", 0) or r.shape[2])
    shapes_ok = (
        rows == gates * hidden
        and r.shape == (dirs, gates * hidden, hidden)
        and (bias is None or bias.shape == (dirs, 2 * gates * hidden))
    )
    if not shapes_ok:
        a.block(lay, f"they reach {_where(node)}, whose weights do not match its hidden_size")
        return

    # The input's channels: columns of W, as for a MatMul's right operand.
    if lay is not None:
        shape = a.shape(x)
        if shape is None or lay.axis != len(shape) - 1:
            a.block(lay, f"{_where(node)} does not read them on its input's last axis")
        else:
            a.site(node, _W, 2, x, "consumer")

    # The hidden units: a new space on the last axis of every output.
    s = a.new_space(node, hidden)
    outputs = [t for t in node.outputs if t]
    for i, t in enumerate(node.outputs):
        if t:
            a.set_layout(t, make_layout(3 if i == 0 else 2, 1, [(s, hidden)]))
    if not outputs:
        return
    out = outputs[0]
    a.site(node, -1, 0, out, "hidden_size")
    a.site(node, _W, 1, out, "filter", gates)
    a.site(node, _R, 1, out, "filter", gates)
    a.site(node, _R, 2, out, "consumer")  # h(t-1) feeds every unit through R's columns
    if bias is not None:
        a.site(node, _B, 1, out, "param", 2 * gates)
    space = make_layout(0, 1, [(s, hidden)])
    for index, name in ((_H0, "initial_h"), (_C0, "initial_c")):
        t = ins[index] if index != _C0 or node.op_type == "LSTM" else ""
        if not t:
            continue
        value = a.const(t)
        if value is None and _zero(a, t):
            a.site(node, index, 0, out, "omit")
        elif value is None:
            _fed_state(a, node, index, name, space)
        elif value.ndim != 3 or value.shape[2] != hidden:
            a.block(space, f"{_where(node)} has a {name} {t!r} that is not one value per unit")
        else:
            a.site(node, index, 2, out, "param")
    if node.op_type == "LSTM" and ins[_P]:
        peep = a.const(ins[_P])
        if peep is None or peep.shape != (dirs, 3 * hidden):
            a.block(space, f"{_where(node)} has peepholes {ins[_P]!r} that are not constant")
        else:
            a.site(node, _P, 1, out, "param", 3)


def _zero(a: ChannelAnalysis, tensor: str) -> bool:
    """Whether ``tensor`` is all zeros by construction (a ConstantOfShape of 0)."""
    p = a.graph.producer(tensor)
    if p is None or p.op_type != "ConstantOfShape" or p.domain not in ("", "ai.onnx"):
        return False
    value = p.attrs.get("value")
    return value is None or not np.any(np.asarray(value))


def _fed_state(a: ChannelAnalysis, node: Node, index: int, name: str, space: Layout) -> None:
    """An initial state fed by the caller: selected to the kept units (see the module doc),
    and the matching state output (``Y_h`` for ``initial_h``, ``Y_c`` for ``initial_c``)
    marked as returned to the caller."""
    t, shape, hidden = node.inputs[index], a.shape(node.inputs[index]), space.positions
    if shape is not None and (len(shape) != 3 or shape[2] != hidden and isinstance(shape[2], int)):
        a.block(space, f"{_where(node)} has a {name} {t!r} that is not one value per unit")
        return
    out = next(o for o in node.outputs if o)
    pick = a.graph.producer(t)
    indices = a.const(pick.inputs[1]) if _is_gather(pick) else None
    if (
        indices is not None
        and indices.shape == (hidden,)
        and int(pick.attr("axis", 0)) % 3 == 2
        and [u.name for u in a.graph.users(t)] == [node.name]
        and t not in a.graph.outputs
        and t not in a.layout
    ):
        a.site(pick, 1, 0, out, "param")  # pruned before: cut the selection's indices
        a.set_layout(t, make_layout(2, 1, [(space.segs[0][0], hidden)]))  # and its shape
    else:
        a.site(node, index, 2, out, "select")
    k = 1 if index == _H0 else 2
    if len(node.outputs) > k and node.outputs[k]:
        a.states.add(node.outputs[k])


def _is_gather(node: Node | None) -> bool:
    return node is not None and node.op_type == "Gather" and node.domain in ("", "ai.onnx")


def returns_state(a: ChannelAnalysis, out: str, lay: Layout) -> bool:
    """Whether graph output ``out`` (of layout ``lay``) is state that recurrent layers hand
    back to the caller; if so, a ``scatter`` site puts the removed units back as zeros (or,
    when the units are not on the output's last axis, they are blocked, saying why)."""
    if not _from_states(a, out):
        return False
    shape = a.shape(out)
    if shape is None or lay.axis != len(shape) - 1:
        a.block(
            lay,
            f"they reach the graph output {out!r}, a returned state whose units are not on "
            "its last axis",
        )
        return True
    a.site(a.graph.producer(out), -1, lay.axis, out, "scatter")
    return True


def _from_states(a: ChannelAnalysis, out: str) -> bool:
    """Whether the channels of ``out`` all come from returned states: each tensor on the
    way is one, or its producer carries (never creates) them, and every operand holding
    channels of the same groups comes from returned states too."""
    stack, seen = [out], {out}
    while stack and a.states:
        t = stack.pop()
        if t in a.states:
            continue
        p, own = a.graph.producer(t), set(a.layout[t].spaces)
        roots = {a.find(s) for s in own}
        operands = [
            i for i in (p.inputs if p is not None else ())
            if i in a.layout and roots & {a.find(s) for s in a.layout[i].spaces}
        ]  # fmt: skip
        if not any(own & set(a.layout[i].spaces) for i in operands):
            return False
        stack += [i for i in operands if i not in seen]
        seen.update(operands)
    return bool(a.states)
