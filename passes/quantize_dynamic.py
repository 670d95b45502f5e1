"""Dynamic int8 quantization of MatMul and Gemm layers, as onnxruntime's CPU runs it.

Weights are quantized ahead of time, symmetrically, with one scale per layer (or per
output column, ``per_channel``),

    s = max_{k,n} |W[k, n]| / 127,        W_q[k, n] = round(W[k, n] / s)  (int8),

and the activations at run time, per tensor and asymmetrically to uint8, from the
tensor's own range (no calibration data). Each layer becomes one
``com.microsoft.DynamicQuantizeMatMul`` (inputs ``A``, ``W_q``, ``s`` and the float bias),
the kernel onnxruntime's own dynamic quantizer ends up running for a MatMul: what the
cpu target prices is then what runs. On transformer blocks this is where int8 pays on a
CPU: their MatMuls are large and their activations short-lived; on convolutional
networks onnxruntime's integer convolutions are slower than its float ones, so Conv is
not quantized here (``quantize_int8`` quantizes it statically).

``reduce_range`` keeps weights to 7 bits (``±63``), for x86 CPUs without VNNI, whose
u8·s8 instructions saturate 16-bit sums of two products. One scale per layer is the
default because of that saturation: per column, every column's weights fill the int8
range and more pairs saturate. On the smart-turn transformer here (AVX2, no VNNI) its
decision agreement with the float model on 64 inputs was 98.4 % per layer, 90.6 % per
column, 95.3 % per column at 7 bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwcc.ir import Graph, Node
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.edits import add_constant, constant_value, drop_unused_initializers
from hwcc.passes.lib.quantization import LAYERS, choose_layers
from hwcc.passes.lib.weights import WeightedLayer

_ONNX = ("", "ai.onnx")
_MS = "com.microsoft"


@register_pass
class QuantizeDynamic(Pass):
    """MatMul and Gemm layers with constant 2-D weights as int8 ``DynamicQuantizeMatMul``.

    Rewrite cases (the chosen layers: knob ``layers``, ``all`` or node names):

    1. ``MatMul(A, W)`` with ``W`` a constant float ``[K, N]``; a following ``Add`` of a
       constant ``[N]`` (or scalar) that is the MatMul's only reader becomes its bias.
    2. ``Gemm(A, B, C)`` with ``transA = 0``: ``W = α·op(B)``, bias ``β·C`` when ``C`` is a
       constant ``[N]`` or scalar (another ``C`` stays as an ``Add`` after it).

    Must not fire when:

    3. no chosen layer is a MatMul or Gemm with constant float weights;
    4. the weights are not 2-D (a batched constant MatMul) or are the first operand;
    5. a Gemm's ``C`` is computed at run time and ``β ≠ 1``;
    6. a layer has fewer than ``min_weights`` weights (the run-time quantization of its
       input costs more than small products save).

    Errors (never ignored): a layer name that is not a Conv, Gemm or MatMul, or one whose
    weights are not constant.
    """

    name = "quantize_dynamic"
    exact = False
    knobs = (
        LAYERS,
        Knob("reduce_range", bool, False, "7-bit weights, for x86 CPUs without VNNI"),
        Knob("min_weights", int, 4096, "leave layers with fewer weights in float"),
        Knob("per_channel", bool, False, "one weight scale per output column, not per layer"),
    )

    def __init__(self, layers: Sequence[str] | None = None):
        self.layers = None if layers is None else list(layers)

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        knob_set = "layers" in ctx.knobs.get(self.name, {})
        choice = choose_layers(graph, opts["layers"], self.layers, knob_set)
        if choice.why_not:
            return choice.refusal(graph)
        skipped = dict(choice.skipped)
        todo = []
        for lay in choice.chosen:
            why = _unfit(graph, lay, opts["min_weights"])
            if why:
                skipped[lay.name] = why
            else:
                todo.append(lay.name)
        if not todo:
            return PassResult(graph, False, "no chosen layer fits: " + _few(skipped), skipped)
        g = graph.copy()
        g.opset_imports.setdefault(_MS, 1)
        limit = 63 if opts["reduce_range"] else 127
        report = {name: _rewrite(g, g.node(name), limit, opts["per_channel"]) for name in todo}
        return PassResult(g, True, None, {"layers": report, "skipped": skipped})


def _few(reasons: dict[str, str]) -> str:
    items = list(reasons.items())
    text = "; ".join(f"{n}: {r}" for n, r in items[:3])
    return text + (f" (and {len(items) - 3} more)" if len(items) > 3 else "")


def _unfit(g: Graph, lay: WeightedLayer, min_weights: int) -> str | None:
    node, w = lay.node, lay.array
    if node.op_type == "Conv":
        return "a Conv (onnxruntime's integer convolutions are slower than its float ones)"
    if lay.index != 1 or w.ndim != 2:
        return "its weights are not a 2-D second operand"
    if node.op_type == "Gemm" and node.attr("transA", 0):
        return "it has transA=1"
    c = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else ""
    if c and constant_value(g, c) is None and float(node.attr("beta", 1.0)) != 1.0:
        return "its C is computed at run time and scaled by beta"
    if w.size < min_weights:
        return f"{w.size} weights, fewer than min_weights={min_weights}"
    return None


def _rewrite(g: Graph, node: Node, limit: int, per_channel: bool) -> dict[str, float]:
    """Replace ``node`` (and a bias Add it feeds) by one DynamicQuantizeMatMul."""
    w = constant_value(g, node.inputs[1]).astype(np.float64)
    bias, last, c_after = None, node, ""
    if node.op_type == "Gemm":
        w = float(node.attr("alpha", 1.0)) * (w.T if node.attr("transB", 0) else w)
        c = constant_value(g, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if c is not None and c.size in (1, w.shape[1]) and c.ndim <= 1:
            bias = float(node.attr("beta", 1.0)) * np.broadcast_to(c.reshape(-1), (w.shape[1],))
        elif len(node.inputs) > 2 and node.inputs[2]:
            c_after = node.inputs[2]  # added back after the layer, scaled by beta
    else:
        add = _bias_add(g, node, w.shape[1])
        if add is not None:
            last, bias = add
    scale = (
        np.abs(w).max(axis=0) / limit
        if per_channel
        else np.full(w.shape[1], np.abs(w).max() / limit)
    )
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -limit, limit).astype(np.int8)
    err = w - q * scale
    sqnr = 10 * np.log10(max((w**2).sum(), 1e-30) / max((err**2).sum(), 1e-30))
    names = [g.unique_name(f"{node.name}_{s}") for s in ("W_int8", "W_scale", "bias")]
    add_constant(g, names[0], q)
    add_constant(g, names[1], scale.astype(np.float32))
    ins = [node.inputs[0], names[0], names[1], ""]
    if bias is not None:
        add_constant(g, names[2], bias.astype(np.float32))
        ins.append(names[2])
    out = ins_out = g.add_node(
        "DynamicQuantizeMatMul", ins, 1, name=f"{node.name}_int8", domain=_MS, after=last
    ).outputs[0]
    if c_after:
        beta = float(node.attr("beta", 1.0))
        if beta != 1.0:  # a constant C (_unfit refuses a computed one scaled by beta)
            scaled = beta * constant_value(g, c_after)
            c_after = g.unique_name(f"{node.name}_C")
            add_constant(g, c_after, scaled.astype(np.float32))
        out = g.add_node("Add", [out, c_after], 1, name=f"{node.name}_C_add").outputs[0]
    y = g.tensor(last.outputs[0])
    for t in {ins_out, out}:  # onnx's shape inference does not know the contrib op:
        g.tensor(t).shape, g.tensor(t).elem_type = y.shape, y.elem_type  # declared, the type
        g.tensor(t).meta["declared"] = True  # is written into the file and kept on reload
    old = [t for n in {node, last} for t in n.inputs[1:] if t]
    g.replace_all_uses_with(last.outputs[0], out)
    g.erase_node(last)
    if last is not node:
        g.erase_node(node)
    drop_unused_initializers(g, old)
    return {"sqnr_db": float(sqnr), "weights": int(w.size), "bias": bias is not None}


def _bias_add(g: Graph, node: Node, n: int) -> tuple[Node, np.ndarray] | None:
    users = g.users(node.outputs[0])
    if len(users) != 1 or g.is_graph_output(node.outputs[0]):
        return None
    add = users[0]
    if add.op_type != "Add" or add.domain not in _ONNX or len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] == node.outputs[0] else add.inputs[0]
    c = constant_value(g, other)
    if c is None or c.dtype.kind != "f" or c.ndim > 1 or c.size not in (1, n):
        return None
    return add, np.broadcast_to(c.astype(np.float64).reshape(-1), (n,))
