"""Turn an already quantized model into its float equivalent, for the search.

The search fine-tunes in torch and prunes float weights, so a model that arrives
quantized (QDQ, operator format, or dynamically quantized) is first rewritten into the
float model it was quantized from, as far as the quantized one tells: weights become
``(q − zero_point)·scale`` (exactly what onnxruntime computes for them), biases
``bias·scale``, and the rounding of activations is dropped. What remains differs from
the quantized model by that rounding only, and equals the float model wherever the
quantizer kept the float weights (biases of older tools, QDQ weights given as floats).

A quantization range that starts exactly at zero clamps negative values; quantizers use
it to absorb a ``Relu`` into the quantization, so such an activation gets its ``Relu``
back. The upper end of a calibrated range is not kept (it is a property of the
calibration data, not of the network).

Anything quantized that the pass does not recognise is refused, naming the node: the
user is asked for the float model instead. :func:`dequantize_for_search` is what the
compile path calls.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from hwcc.ir import Graph, Node
from hwcc.ir.transform import Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.dequant_common import dequantize_array, qrange, refuse
from hwcc.passes.lib.dequant_dynamic import DYNAMIC_OPS, rewrite_dynamic
from hwcc.passes.lib.dequant_qop import QOPERATOR_OPS, rewrite_qoperator
from hwcc.passes.lib.edits import add_constant, constant_value, drop_unused_initializers

__all__ = ["Dequantize", "dequantize_for_search", "is_quantized"]

_QDQ_DOMAINS = ("", "ai.onnx", "com.microsoft")
_OTHERS = {
    "QGemm",
    "QAttention",
    "MatMulNBits",
    "MatMulBnb4",
    "QEmbedLayerNormalization",
    "GatherBlockQuantized",
    "QuantizeWithOrder",
    "DequantizeWithOrder",
}


def is_quantized(node: Node) -> bool:
    """Whether ``node`` is a quantization op or computes on quantized integers."""
    op = node.op_type
    return (
        op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
        or op.startswith(("QLinear", "QOrdered", "DynamicQuantize"))
        or "Integer" in op
        or op in _OTHERS
    )


def _key(node: Node) -> tuple[str, str]:
    return ("" if node.domain == "ai.onnx" else node.domain, node.op_type)


@register_pass
class Dequantize(Pass):
    """Rewrite a quantized model into its float equivalent (weights dequantized,
    activation rounding dropped).

    Rewrite cases:

    1. ``DequantizeLinear`` of a constant (a weight, or an int32 bias) becomes the float
       constant ``(q − zero_point)·scale``, per-axis scales included.
    2. ``QuantizeLinear -> DequantizeLinear`` with the same scale and zero point: the
       float value flows through, with a ``Relu`` when the range starts at zero.
    3. ``DynamicQuantizeLinear -> ConvInteger/MatMulInteger -> Cast -> Mul(scales)``,
       with an integer bias (older tools) or a float bias ``Add`` after it, becomes a
       float ``Conv`` (bias folded in) or ``MatMul`` on the dequantized weight.
    4. ``DynamicQuantizeLSTM`` becomes an ``LSTM`` with float weights in ONNX layout;
       ``DynamicQuantizeMatMul`` and ``MatMulIntegerToFloat`` a ``MatMul`` (+ ``Add``).
    5. ``QLinearConv``, ``QLinearMatMul``, ``QGemm``, ``QLinearAdd``, ``QLinearMul``,
       ``QLinearSigmoid``, ``QLinearLeakyRelu``, ``QLinearGlobalAveragePool`` become
       the float op between a dequantize and a quantize, which cases 1 and 2 remove.

    Must not fire (the model is left alone) when:

    6. the graph has no quantized operator.

    Refuses, naming the node and asking for the float model, when:

    7. a scale or zero point, or a quantized weight, is not a constant; a quantize and
       dequantize pair disagree on them; blocked quantization is used;
    8. a quantized op's surroundings are not the patterns above (an integer result read
       by something else, a quantized graph input or output), or the op is one the pass
       does not know (``QAttention``, ``MatMulNBits``, ...).
    """

    name = "dequantize"
    exact = False

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        found = [n for n in graph.nodes if is_quantized(n)]
        if not found:
            return PassResult(graph, False, "the graph has no quantized operator")
        g = graph.copy()
        dead_before = {n.name for n in g.nodes if _dead(g, n)}
        for node in [n for n in g.nodes if _key(n) in QOPERATOR_OPS]:
            rewrite_qoperator(g, node)
        for node in [n for n in g.nodes if _key(n) in DYNAMIC_OPS]:
            rewrite_dynamic(g, node)
        relus: dict[str, str] = {}
        for node in [n for n in g.nodes if _is_qdq(n, "DequantizeLinear")]:
            _dequantize(g, node, relus)
        _sweep(g, dead_before)
        left = [n for n in g.nodes if is_quantized(n)]
        if left:
            users = (
                ", ".join(u.name for o in left[0].outputs for u in g.users(o)) or "a graph output"
            )
            raise refuse(
                left[0],
                f"the pass has no float rewrite for it here (its result is read by {users})",
            )
        drop_unused_initializers(g, list(graph.initializers))
        counts = Counter(n.op_type for n in found)
        details = {"dequantized": dict(counts.most_common()), "relus_restored": len(relus)}
        return PassResult(g, True, None, details)


def _is_qdq(node: Node, op: str) -> bool:
    return node.op_type == op and node.domain in _QDQ_DOMAINS


def _dead(g: Graph, node: Node) -> bool:
    return all(not o or (not g.users(o) and not g.is_graph_output(o)) for o in node.outputs)


def _sweep(g: Graph, keep: set[str]) -> None:
    """Erase the nodes the rewrites left without readers (scale products, quantizers)."""
    changed = True
    while changed:
        changed = False
        for node in reversed(g.nodes):
            if node.name not in keep and _dead(g, node):
                g.erase_node(node)
                changed = True


def _params(g: Graph, node: Node) -> tuple[np.ndarray, np.ndarray | None]:
    ins = list(node.inputs) + [""] * (3 - len(node.inputs))
    scale = constant_value(g, ins[1])
    zp = constant_value(g, ins[2]) if ins[2] else None
    if scale is None or (ins[2] and zp is None):
        raise refuse(node, "its scale or zero point is not a constant")
    if node.attr("block_size", 0):
        raise refuse(node, "blocked quantization (block_size) is not supported")
    return scale, zp


def _dequantize(g: Graph, dq: Node, relus: dict[str, str]) -> None:
    scale, zp = _params(g, dq)
    x, out = dq.inputs[0], dq.outputs[0]
    q = constant_value(g, x)
    if q is not None:  # case 1: a quantized constant
        axis = int(dq.attr("axis", 1)) % max(q.ndim, 1) if scale.size > 1 else None
        g.erase_node(dq, force=True)
        add_constant(g, out, dequantize_array(q, scale, zp, axis))
        return
    quant = g.producer(x)
    if quant is None or not _is_qdq(quant, "QuantizeLinear"):
        source = f"the {quant.op_type} node {quant.name!r}" if quant else "a graph input"
        raise refuse(dq, f"its integer input {x!r} comes from {source}, not a QuantizeLinear")
    q_scale, q_zp = _params(g, quant)
    same_zp = (zp is None and q_zp is None) or (
        zp is not None and q_zp is not None and zp.dtype == q_zp.dtype and np.array_equal(zp, q_zp)
    )
    if not (np.array_equal(scale, q_scale) and same_zp) or (
        scale.size > 1 and dq.attr("axis", 1) != quant.attr("axis", 1)
    ):
        raise refuse(dq, f"its scale or zero point differ from those of {quant.name!r}")
    src = quant.inputs[0]
    if constant_value(g, src) is None and _clamps_at_zero(zp):
        if quant.name not in relus:
            relus[quant.name] = g.add_node("Relu", [src], 1, name=f"{quant.name}_relu").outputs[0]
        src = relus[quant.name]
    g.replace_all_uses_with(out, src)
    if not g.is_graph_output(out):
        g.erase_node(dq)


def _clamps_at_zero(zp: np.ndarray | None) -> bool:
    """A range starting at zero: the zero point is the smallest integer of its type."""
    if zp is None:  # uint8 with zero point 0
        return True
    bounds = qrange(zp.dtype)
    return bounds is not None and bool(np.all(zp == bounds[0]))


def dequantize_for_search(graph: Graph, source: str = "the model") -> tuple[Graph, str | None]:
    """The float equivalent of ``graph`` and a one-line notice, or ``(graph, None)`` when
    nothing in it is quantized.

    Raises:
        PassError: a quantized node has no float rewrite; the message names it and asks
            for the float model.
    """
    result = Dequantize()(graph, PassContext(verify=False))
    if not result.modified:
        return graph, None
    counts = result.details["dequantized"]
    ops = ", ".join(f"{n} {op}" for op, n in counts.items())
    return result.graph, (
        f"{source} is quantized ({ops}): the search works on its float equivalent"
    )
