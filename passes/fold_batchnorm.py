"""Fold an inference-mode BatchNormalization into the Conv or Gemm that feeds it.

BatchNormalization normalises channel ``c`` (axis 1) of its input ``x``:

    y = (x − μ)·γ/σ + β,        σ = sqrt(var + ε).

Write ``s = γ/σ``. When ``x = W ⊛ a + B`` is a Conv (output channel ``c`` is row ``c`` of
``W``, whatever the group count), scaling row ``c`` of the weights scales channel ``c``:

    y = W' ⊛ a + B',    W' = W·s  (per output channel),   B' = (B − μ)·s + β,

with ``B = 0`` when the Conv has no bias. When ``x = α·A·op(B) + β_g·C`` is a Gemm, the
channels are the columns of ``op(B)``:

    op(B)' = op(B)·diag(s)   (columns of B if transB = 0, rows of B if transB = 1),
    C'     = (β_g·C − μ)·s + β   (C broadcast against the N channels; C = 0 if absent),

and ``β_g`` becomes 1. The new values are computed in float64 and rounded once to the
weights' dtype, so the rewrite is exact up to one rounding.
"""

from __future__ import annotations

import numpy as np

from hwcc.ir import Graph, Node
from hwcc.ir.transform import Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.edits import constant_value, drop_unused_initializers, set_constant_input

_ONNX = ("", "ai.onnx")


@register_pass
class FoldBatchNorm(Pass):
    """Fold BatchNormalization into the preceding Conv or Gemm.

    Rewrite cases:

    1. ``Conv -> BatchNormalization``, any ``group``, with or without a bias: the Conv's
       weight and bias absorb the normalisation and the BatchNormalization goes.
    2. ``Gemm -> BatchNormalization`` with ``transB`` 0 or 1 and a bias ``C`` of any
       broadcastable shape, or none: ``B`` and ``C`` absorb it, ``beta`` becomes 1.
    3. A BatchNormalization whose output is a graph output: the Conv/Gemm takes over the
       output's name.

    Must not fire when:

    4. the BatchNormalization is in training mode (``training_mode=1``, or more than one
       output in use);
    5. its scale, bias, mean or variance is not a constant initializer, or they are not
       vectors of one value per channel (``spatial=0`` in old opsets);
    6. its input is not computed by a Conv or Gemm;
    7. the Conv/Gemm output has another reader besides the BatchNormalization, or is a
       graph output itself;
    8. the Conv's weight or bias, or the Gemm's ``B`` or ``C``, is not a constant
       initializer, or the Gemm has ``transA=1``.
    """

    name = "fold_batchnorm"

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        bns = [n for n in graph.nodes if n.op_type == "BatchNormalization" and n.domain in _ONNX]
        if not bns:
            return PassResult(graph, False, "the graph has no BatchNormalization")
        g = graph.copy()
        rejected: dict[str, str] = {}
        folded = 0
        for bn in [g.node(n.name) for n in bns]:
            match = _match(g, bn)
            if isinstance(match, str):
                rejected[bn.name] = match
                continue
            _fold(g, bn, *match)
            folded += 1
        details = {"folded": folded, "rejected": rejected}
        if not folded:
            why = "; ".join(f"{n}: {r}" for n, r in list(rejected.items())[:3])
            more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
            return PassResult(
                graph, False, f"no BatchNormalization could be folded: {why}{more}", details
            )
        return PassResult(g, True, None, details)


def _match(g: Graph, bn: Node) -> tuple[Node, np.ndarray, np.ndarray] | str:
    """The producer and the per-channel scale ``s`` and shift ``β − μ·s``, or why not."""
    if sum(1 for o in bn.outputs if o) > 1 or bn.attr("training_mode", 0):
        return "it is in training mode"
    params = [constant_value(g, t) for t in bn.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        return "its scale, bias, mean and variance are not all constant initializers"
    if any(p.ndim != 1 or p.shape != params[0].shape or p.dtype.kind != "f" for p in params):
        return "its parameters are not float vectors of one value per channel"
    x = bn.inputs[0]
    prod = g.producer(x)
    if prod is None or prod.op_type not in ("Conv", "Gemm") or prod.domain not in _ONNX:
        source = f"a {prod.op_type}" if prod else "a graph input or initializer"
        return f"its input comes from {source}, not a Conv or Gemm"
    readers = g.users(x)
    if len(readers) != 1 or g.is_graph_output(x):
        return f"the output of {prod.name} is also read elsewhere"
    why = _producer_problem(g, prod, params[0].size)
    if why:
        return why
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    s = gamma / np.sqrt(var + float(bn.attr("epsilon", 1e-5)))
    return prod, s, beta - mean * s


def _producer_problem(g: Graph, prod: Node, channels: int) -> str | None:
    w = constant_value(g, prod.inputs[1])
    bias = prod.inputs[2] if len(prod.inputs) > 2 else ""
    if w is None or (bias and constant_value(g, bias) is None):
        return f"the weights or bias of {prod.name} are not constant initializers"
    if w.dtype.kind != "f":
        return f"the weights of {prod.name} are not floating point"
    if prod.op_type == "Gemm":
        if prod.attr("transA", 0):
            return f"{prod.name} has transA=1"
        n = w.shape[0] if prod.attr("transB", 0) else w.shape[1]
    else:
        n = w.shape[0]
    if n != channels:
        return f"{prod.name} has {n} output channels but the BatchNormalization {channels}"
    return None


def _fold(g: Graph, bn: Node, prod: Node, s: np.ndarray, shift: np.ndarray) -> None:
    w = constant_value(g, prod.inputs[1])
    bias_name = prod.inputs[2] if len(prod.inputs) > 2 else ""
    bias = constant_value(g, bias_name) if bias_name else None
    b = 0.0 if bias is None else bias.astype(np.float64)
    w64 = w.astype(np.float64)
    if prod.op_type == "Conv":
        new_w = w64 * s.reshape((-1,) + (1,) * (w.ndim - 1))
        new_b = b * s + shift
    else:
        new_w = w64 * (s[:, None] if prod.attr("transB", 0) else s[None, :])
        new_b = float(prod.attr("beta", 1.0)) * b * s + shift
        prod.attrs["beta"] = 1.0
    old = [prod.inputs[1], bias_name, *bn.inputs[1:]]
    set_constant_input(g, prod, 1, new_w.astype(w.dtype))
    set_constant_input(g, prod, 2, new_b.astype(w.dtype))
    g.replace_all_uses_with(bn.outputs[0], prod.outputs[0])
    g.erase_node(bn)
    drop_unused_initializers(g, [t for t in old if t])
