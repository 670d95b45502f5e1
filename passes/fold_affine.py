"""Fold per-channel scales and shifts by constants into the convolutions around them.

Exporters often leave an affine map by constants beside a convolution: a BatchNormalization
written out as ``Mul`` and ``Add``, a bias added by a separate ``Add``, or a learnable
scale and shift after an activation (PP-LCNetV3's "learnable affine block"). onnxruntime
runs each of those as a pass over the whole tensor. With ``c`` a constant of one value per
channel (or one value in all), and a Conv ``y = W ⊛ a + B``:

* **into the Conv before it**, channel ``o`` of its output:

      y·c = (W·c_o) ⊛ a + B·c_o,        y + c = W ⊛ a + (B + c_o);

* **into the Convs after it**, input channel ``i`` of each reader (``j`` the channel
  within its group of ``C/G``, ``g = i div (C/G)``):

      W ⊛ (x·c) = W' ⊛ x,     W'[o, j] = W[o, j]·c[g·C/G + j],

  a shift only where the Conv pads nothing (a padded border would carry ``c``, not 0):

      W ⊛ (x + c) = W ⊛ x + B',     B'[o] = Σ_{j,k} W[o, j, k]·c[g·C/G + j].

  A scale followed by a shift that only padded Convs read is reordered,
  ``x·s + t = (x + t/s)·s``, so that the scale folds forward and only the shift is left.

``Sub(x, c)`` is ``Add(x, −c)`` and ``Div(x, c)`` is ``Mul(x, 1/c)``. The new values are
computed in float64 and rounded once to the weights' dtype.
"""

from __future__ import annotations

import numpy as np

from hwcc.ir import Graph, Node
from hwcc.ir.transform import Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.edits import (
    add_constant,
    constant_value,
    drop_unused_initializers,
    set_constant_input,
)

_ONNX = ("", "ai.onnx")
_AFFINE = ("Mul", "Div", "Add", "Sub")


@register_pass
class FoldAffine(Pass):
    """Fold Mul/Div/Add/Sub by per-channel constants into neighbouring Convs.

    Rewrite cases (repeated until none applies):

    1. ``Conv -> Mul|Div|Add|Sub(c)``: the Conv's weights and bias absorb it (the Conv gets
       a bias if it had none).
    2. ``Mul|Div(c) -> Conv...``: every reader's weights absorb the scale.
    3. ``Add|Sub(c) -> Conv...`` where no reader pads: every reader's bias absorbs it.
    4. ``Mul|Div(s) -> Add|Sub(t) -> Conv...`` with padded readers and no zero in ``s``:
       reordered to ``Add(t/s) -> Mul(s)``, which case 2 then folds.

    Must not fire when:

    5. the constant varies along an axis other than the channels (axis 1), or would
       broadcast the tensor to a larger shape;
    6. the Conv's weights or bias are not constant floats, or the tensor between the
       two is read by anything else or is a graph output;
    7. a reader of the tensor is not a Conv, or reads it as weights, not data.
    """

    name = "fold_affine"

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        if not any(_affine(graph, n) for n in graph.nodes):
            return PassResult(graph, False, "no Mul, Div, Add or Sub by a constant")
        g = graph.copy()
        counts = {"into_producer": 0, "into_readers": 0, "reordered": 0}
        changed = True
        while changed:
            changed = False
            for node in list(g.nodes):
                if not g.has_node(node.name) or not _affine(g, node):
                    continue
                kind = _fold_back(g, node) or _fold_forward(g, node) or _reorder(g, node)
                if kind:
                    counts[kind] += 1
                    changed = True
        if not any(counts.values()):
            return PassResult(
                graph, False, "no scale or shift by a constant sits next to a Conv", counts
            )
        return PassResult(g, True, None, counts)


def _affine(g: Graph, node: Node) -> tuple[str, np.ndarray] | None:
    """``(x, c)`` for a Mul/Div/Add/Sub of a tensor ``x`` by a float constant ``c``, with
    Div and Sub turned into Mul and Add (``c`` is then ``1/c`` or ``−c``)."""
    if node.op_type not in _AFFINE or node.domain not in _ONNX or len(node.inputs) != 2:
        return None
    a, b = node.inputs
    cb, ca = constant_value(g, b), constant_value(g, a)
    if cb is not None and ca is None:
        x, c = a, cb
    elif ca is not None and cb is None and node.op_type in ("Mul", "Add"):
        x, c = b, ca
    else:
        return None
    if c.dtype.kind != "f":
        return None
    c = c.astype(np.float64)
    if node.op_type == "Div":
        if np.any(c == 0):
            return None
        c = 1.0 / c
    elif node.op_type == "Sub":
        c = -c
    return x, c


def _scale(node: Node) -> bool:
    return node.op_type in ("Mul", "Div")


def _per_channel(c: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """``c`` as one value per channel of a rank-``rank`` tensor, or None if it varies along
    another axis or would broadcast the tensor larger."""
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if rank < 2 or any(d != 1 for i, d in enumerate(shape) if i != 1):
        return None
    if shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1), (channels,)).astype(np.float64)


def _conv(g: Graph, node: Node | None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The constant float weights and bias (None if absent) of a Conv, or None."""
    if node is None or node.op_type != "Conv" or node.domain not in _ONNX:
        return None
    w = constant_value(g, node.inputs[1]) if len(node.inputs) > 1 else None
    bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
    b = constant_value(g, bias_name) if bias_name else None
    if w is None or w.dtype.kind != "f" or (bias_name and b is None):
        return None
    return w, b


def _bypass(g: Graph, node: Node, to: str) -> None:
    """Point ``node``'s readers at ``to`` and erase it, with its unused constants."""
    consts = [t for t in node.inputs if constant_value(g, t) is not None]
    g.replace_all_uses_with(node.outputs[0], to)
    g.erase_node(node)
    drop_unused_initializers(g, consts)


def _set_conv(g: Graph, conv: Node, w: np.ndarray, b: np.ndarray, dtype: np.dtype) -> None:
    old = [t for t in conv.inputs[1:3] if t]
    set_constant_input(g, conv, 1, w.astype(dtype))
    set_constant_input(g, conv, 2, b.astype(dtype))
    drop_unused_initializers(g, old)


def _fold_back(g: Graph, node: Node) -> str | None:
    x, c = _affine(g, node)
    conv = g.producer(x)
    params = _conv(g, conv)
    if params is None or len(g.users(x)) != 1 or g.is_graph_output(x):
        return None
    w, b = params
    v = _per_channel(c, w.ndim, w.shape[0])
    if v is None:
        return None
    w64 = w.astype(np.float64)
    b64 = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
    if _scale(node):
        w64, b64 = w64 * v.reshape((-1,) + (1,) * (w.ndim - 1)), b64 * v
    else:
        b64 = b64 + v
    _set_conv(g, conv, w64, b64, w.dtype)
    _bypass(g, node, conv.outputs[0])
    return "into_producer"


def _readers(g: Graph, y: str) -> list[tuple[Node, np.ndarray, np.ndarray | None]] | None:
    """The Convs reading ``y`` as data, with their weights and bias, if every reader is one."""
    users = g.users(y)
    if not users or g.is_graph_output(y):
        return None
    out = []
    for u in users:
        params = _conv(g, u)
        if params is None or u.inputs[0] != y or y in u.inputs[1:]:
            return None
        out.append((u, *params))
    return out


def _pads(conv: Node) -> bool:
    auto = conv.attr("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    return auto not in ("NOTSET", "VALID") or any(conv.attr("pads", ()))


def _input_vector(conv: Node, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` (one value per input channel) laid out as ``w``'s ``[o, j]`` axes."""
    groups = int(conv.attr("group", 1))
    out, per = w.shape[0], w.shape[1]
    idx = (np.arange(out) // (out // groups))[:, None] * per + np.arange(per)[None, :]
    return v[idx].reshape(w.shape[:2] + (1,) * (w.ndim - 2))


def _fold_forward(g: Graph, node: Node) -> str | None:
    x, c = _affine(g, node)
    readers = _readers(g, node.outputs[0])
    if readers is None:
        return None
    w0 = readers[0][1]
    channels = w0.shape[1] * int(readers[0][0].attr("group", 1))
    v = _per_channel(c, w0.ndim, channels)
    if v is None or any(w.ndim != w0.ndim for _, w, _ in readers):
        return None
    if not _scale(node) and any(_pads(conv) for conv, _, _ in readers):
        return None
    for conv, w, b in readers:
        vv = _input_vector(conv, w, v)
        w64 = w.astype(np.float64)
        b64 = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
        if _scale(node):
            w64 = w64 * vv
        else:
            b64 = b64 + (w64 * vv).reshape(w.shape[0], -1).sum(axis=1)
        _set_conv(g, conv, w64, b64, w.dtype)
    _bypass(g, node, x)
    return "into_readers"


def _reorder(g: Graph, node: Node) -> str | None:
    """``Mul(s) -> Add(t) -> padded Convs`` becomes ``Add(t/s) -> Mul(s) -> Convs``."""
    if not _scale(node):
        return None
    x, s = _affine(g, node)
    users = g.users(node.outputs[0])
    if len(users) != 1 or g.is_graph_output(node.outputs[0]):
        return None
    shift = users[0]
    match = _affine(g, shift)
    readers = _readers(g, shift.outputs[0])
    if _scale(shift) or match is None or match[0] != node.outputs[0] or readers is None:
        return None
    w0 = readers[0][1]
    channels = w0.shape[1] * int(readers[0][0].attr("group", 1))
    sv, tv = _per_channel(s, w0.ndim, channels), _per_channel(match[1], w0.ndim, channels)
    if sv is None or tv is None or np.any(sv == 0):
        return None
    shape = (1, channels) + (1,) * (w0.ndim - 2)
    dtype = constant_value(g, node.inputs[1] if node.inputs[0] == x else node.inputs[0]).dtype
    mid = g.unique_name(f"{shift.name}_shifted")
    old = [t for t in (*node.inputs, *shift.inputs) if constant_value(g, t) is not None]
    t_name, s_name = g.unique_name(f"{shift.name}_t"), g.unique_name(f"{node.name}_s")
    add_constant(g, t_name, (tv / sv).reshape(shape).astype(dtype))
    add_constant(g, s_name, sv.reshape(shape).astype(dtype))
    add = g.add_node("Add", [x, t_name], [mid], name=f"{shift.name}_first", after=node)
    mul = g.add_node("Mul", [mid, s_name], 1, name=f"{node.name}_last", after=add)
    g.replace_all_uses_with(shift.outputs[0], mul.outputs[0])
    g.erase_node(shift)
    g.erase_node(node)
    drop_unused_initializers(g, old)
    return "reordered"
