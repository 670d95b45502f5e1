"""The workload view's op handlers: what each ONNX op asks of the hardware.

One handler per family of ops, registered with :func:`handler`, turns a node into
:class:`~hwcc.ir.workload.Layer` fields: its dims in the Eyeriss/Timeloop letters, ``macs``
and ``ops`` as counted by the conventions of :mod:`hwcc.ir.workload`, and which inputs
hold weights and biases. :func:`~hwcc.ir.workload.analyze` completes the fields with
parameter counts, bit widths and bytes. A node whose shapes the handler cannot read raises
:class:`Unpriced` with the reason the user sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hwcc.ir import Graph, Node

__all__ = [
    "KINDS",
    "MAC_KINDS",
    "STANDARD_DOMAINS",
    "Unpriced",
    "handler",
    "handler_for",
    "shape_str",
    "static",
]

# The kinds of layer that multiply and accumulate: what cost models price from dims.
MAC_KINDS = (
    "conv",
    "depthwise_conv",
    "grouped_conv",
    "conv_transpose",
    "gemm",
    "matmul",
    "lstm",
    "gru",
    "rnn",
)
KINDS = (
    *MAC_KINDS,
    "pool",
    "elementwise",
    "norm",
    "softmax",
    "data_movement",
    "other",
    "constant",
    "unknown",
)
STANDARD_DOMAINS = ("", "ai.onnx")


# ---------------------------------------------------------------------- registry
class Unpriced(Exception):
    """The node cannot be priced; the message is the reason the user sees."""


_Handler = Callable[..., dict[str, Any]]
_HANDLERS: dict[tuple[str, str], tuple[_Handler, str, dict[str, Any]]] = {}


def handler(
    *op_types: str, kind: str, domain: str = "", **bound: Any
) -> Callable[[_Handler], _Handler]:
    """Register ``fn(graph, node, **bound) -> fields`` as the pricing of ``op_types``.

    ``fields`` are :class:`~hwcc.ir.workload.Layer` fields (dims, ``macs``, ``ops``, a finer
    ``kind``) plus ``weights`` and ``biases``: indices of the inputs whose constant values are
    parameters (weights are the ones whose density is measured). Decorators stack, with
    ``bound`` keyword arguments telling op variants apart (``QLinearConv``'s weight is
    input 3).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown layer kind {kind!r}")

    def register(fn: _Handler) -> _Handler:
        for op in op_types:
            _HANDLERS[("" if domain in STANDARD_DOMAINS else domain, op)] = (fn, kind, bound)
        return fn

    return register


def static(g: Graph, name: str) -> tuple[int, ...]:
    """The shape of tensor ``name``; :class:`Unpriced` if a dim is unknown."""
    t = g.tensors.get(name)
    if t is None or not t.is_static:
        raise Unpriced(f"shape of {name!r} unknown ({shape_str(t.shape if t else None)})")
    return tuple(int(d) for d in t.shape)


def _spatial(dims: tuple[int, ...]) -> tuple[int, int]:
    """Spatial dims as (height, width): leading dims folded into height."""
    return (math.prod(dims[:-1]), dims[-1]) if dims else (1, 1)


def _window(
    node: Node, in_hw: tuple[int, ...], out_hw: tuple[int, ...], k: tuple[int, ...]
) -> dict:
    """Stride, dilation and pads of a convolution or pooling window (``auto_pad`` resolved)."""
    n = len(k)
    s, d = tuple(node.attr("strides") or [1] * n), tuple(node.attr("dilations") or [1] * n)
    pads = tuple(node.attr("pads") or [0] * 2 * n)
    if node.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        tot = [
            max(0, (o - 1) * si + (ki - 1) * di + 1 - i)
            for o, si, ki, di, i in zip(out_hw, s, k, d, in_hw)
        ]
        lo = [t // 2 if node.attr("auto_pad") == "SAME_UPPER" else (t + 1) // 2 for t in tot]
        pads = tuple(lo) + tuple(t - b for t, b in zip(tot, lo))
    (H, W), (R, S), (P, Q) = _spatial(in_hw), _spatial(k), _spatial(out_hw)
    return dict(H=H, W=W, R=R, S=S, P=P, Q=Q, stride=s, dilation=d, pads=pads)


# ---------------------------------------------------------------------- handlers
@handler("Conv", kind="conv")
@handler("ConvInteger", kind="conv", b=None, wz=3)
@handler("QLinearConv", kind="conv", x=0, w=3, b=8, wz=5)
def _conv(
    g: Graph, node: Node, x: int = 0, w: int = 1, b: int | None = 2, wz: int | None = None
) -> dict:
    (n, c, *hw), (m, cg, *k) = static(g, node.inputs[x]), static(g, node.inputs[w])
    out = static(g, node.outputs[0])[2:]
    groups = int(node.attr("group", 1))
    kind = "conv" if groups == 1 else "depthwise_conv" if groups == c else "grouped_conv"
    return dict(
        kind=kind,
        N=n,
        C=c,
        M=m,
        groups=groups,
        **_window(node, tuple(hw), out, tuple(k)),
        macs=n * m * math.prod(out) * cg * math.prod(k),
        weights=(w,),
        biases=() if b is None else (b,),
        zero_point=(wz, 0),
    )


@handler("ConvTranspose", kind="conv_transpose")
def _conv_transpose(g: Graph, node: Node) -> dict:
    (n, c, *hw), (_, mg, *k) = static(g, node.inputs[0]), static(g, node.inputs[1])
    y = static(g, node.outputs[0])
    groups = int(node.attr("group", 1))
    win = _window(node, tuple(hw), y[2:], tuple(k))
    win["pads"] = tuple(node.attr("pads") or ())  # output-side cropping, not input padding
    return dict(
        N=n,
        C=c,
        M=y[1],
        groups=groups,
        **win,
        macs=n * c * math.prod(hw) * mg * math.prod(k),
        weights=(1,),
        biases=(2,),
    )


@handler("Gemm", kind="gemm")
def _gemm(g: Graph, node: Node) -> dict:
    a, b = static(g, node.inputs[0]), static(g, node.inputs[1])
    rows, k = a[::-1] if node.attr("transA", 0) else a
    cols = b[0] if node.attr("transB", 0) else b[1]
    return dict(N=rows, C=k, M=cols, macs=rows * k * cols, weights=(0, 1), biases=(2,))


@handler("MatMul", kind="matmul")
@handler("MatMulInteger", kind="matmul", bz=3)
@handler("QLinearMatMul", kind="matmul", a=0, b=3, bz=5)
def _matmul(g: Graph, node: Node, a: int = 0, b: int = 1, bz: int | None = None) -> dict:
    sa, sb = static(g, node.inputs[a]), static(g, node.inputs[b])
    sa, sb = ((1,) + sa if len(sa) == 1 else sa), (sb + (1,) if len(sb) == 1 else sb)
    batch = tuple(int(d) for d in np.broadcast_shapes(sa[:-2], sb[:-2]))
    rows = math.prod(batch) * sa[-2]
    return dict(
        N=rows,
        C=sa[-1],
        M=sb[-1],
        batch=batch,
        macs=rows * sa[-1] * sb[-1],
        weights=(a, b),
        zero_point=(bz, -1),
    )


@handler("LSTM", kind="lstm", gates=4, step_ops=9)
@handler("GRU", kind="gru", gates=3, step_ops=8)
@handler("RNN", kind="rnn", gates=1, step_ops=1)
def _recurrent(g: Graph, node: Node, gates: int, step_ops: int) -> dict:
    x, w = static(g, node.inputs[0]), static(g, node.inputs[1])
    t, n, i = (x[1], x[0], x[2]) if node.attr("layout", 0) else x
    dirs, h = w[0], int(node.attr("hidden_size") or w[1] // gates)
    return dict(
        N=n,
        C=i,
        M=h,
        seq_len=t,
        directions=dirs,
        gates=gates,
        macs=t * n * dirs * gates * h * (i + h),
        ops=t * n * dirs * h * step_ops,
        weights=(1, 2),
        biases=(3, 7),
    )


@handler(
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    kind="pool",
)
def _pool(g: Graph, node: Node) -> dict:
    x, y = static(g, node.inputs[0]), static(g, node.outputs[0])
    k = tuple(node.attr("kernel_shape") or x[2:])  # a global pool's window is its whole input
    return dict(
        N=x[0], C=x[1], M=y[1], **_window(node, x[2:], y[2:], k), ops=math.prod(y) * math.prod(k)
    )


_ARITHMETIC = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where")
_POINTWISE = (
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Erf",
    "Gelu",
    "Clip",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Mish",
    "ThresholdedRelu",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Mod",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "IsNaN",
    "IsInf",
    "BitShift",
    "QuantizeLinear",
    "DequantizeLinear",
)
_NORMS = (
    "BatchNormalization",
    "LayerNormalization",
    "InstanceNormalization",
    "LRN",
    "GroupNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
)


@handler(*_ARITHMETIC, kind="elementwise", params_from=0)
@handler(*_POINTWISE, kind="elementwise")
@handler("Softmax", "LogSoftmax", "Hardmax", kind="softmax")
@handler(*_NORMS, kind="norm", params_from=1)
def _per_output_element(g: Graph, node: Node, params_from: int | None = None) -> dict:
    y = static(g, node.outputs[0])
    dims = dict(N=y[0], C=y[1], H=y[2], W=y[3], M=y[1], P=y[2], Q=y[3]) if len(y) == 4 else {}
    # Constant operands are parameters (a bias, a BN scale), scalars are immediates.
    const = (
        ()
        if params_from is None
        else tuple(
            i
            for i, t in enumerate(node.inputs)
            if i >= params_from and t and math.prod(static(g, t)) > 1
        )
    )
    return dict(**dims, ops=math.prod(y), biases=const)


@handler(
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ArgMax",
    "ArgMin",
    "TopK",
    "CumSum",
    kind="other",
)
def _reduction(g: Graph, node: Node) -> dict:
    return dict(ops=math.prod(static(g, node.inputs[0])))


@handler(
    "Reshape",
    "Transpose",
    "Concat",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "GatherElements",
    "GatherND",
    "Slice",
    "Pad",
    "Resize",
    "Upsample",
    "Split",
    "Expand",
    "Tile",
    "Identity",
    "Dropout",
    "Cast",
    "CastLike",
    "Shape",
    "Size",
    "DepthToSpace",
    "SpaceToDepth",
    "ScatterND",
    "ScatterElements",
    "Range",
    "ConstantOfShape",
    "Constant",
    "NonZero",
    kind="data_movement",
)
@handler("Gather", kind="data_movement", weights=(0,))  # a constant table is an embedding
def _data_movement(g: Graph, node: Node, weights: tuple[int, ...] = ()) -> dict:
    static(g, node.outputs[0])
    return dict(weights=weights)


def handler_for(domain: str, op_type: str) -> tuple[_Handler, str, dict[str, Any]] | None:
    """``(fn, kind, bound)`` registered for ``op_type`` of ``domain``, or None."""
    return _HANDLERS.get(("" if domain in STANDARD_DOMAINS else domain, op_type))


def shape_str(s: tuple | None) -> str:
    """A shape as ``1×3×224×224`` (``?`` for an unknown dim)."""
    if s is None:
        return "rank unknown"
    return "×".join("?" if d is None else str(d) for d in s) or "scalar"
