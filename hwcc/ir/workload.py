"""The workload view: what each node of a graph asks of the hardware, for cost models.

:func:`analyze` turns a shape-inferred :class:`~hwcc.ir.Graph` into one :class:`Layer` per
node, in graph order. Dims use the Eyeriss/Timeloop letters: ``N`` batch, ``C`` input
channels, ``H×W`` the *unpadded* input (padding is kept apart in ``pads``, ONNX order
``[h_begin, w_begin, h_end, w_end]``), ``M`` output channels, ``R×S`` filter, ``P×Q``
output. Convolutions with one spatial dim have ``H = R = P = 1``; with three, the leading
two are folded into ``H``, ``R``, ``P`` (so the products below stay exact).

Conventions, all per inference of the graph's batch:

1. ``macs`` counts multiply-accumulates of the linear algebra only:

   * Conv: ``N·M·P·Q·(C/groups)·R·S``; ConvTranspose: ``N·C·H·W·(M/groups)·R·S``.
   * Gemm, MatMul: ``rows·K·cols`` with ``rows`` including broadcast batch dims.
   * LSTM / GRU / RNN: ``T·N·directions·gates·hidden·(input + hidden)`` with 4, 3 and 1
     gates; their gate nonlinearities and gating products go to ``ops`` (9, 8 and 1 per
     hidden unit and step).
   * Bias additions are folded into the accumulators and not counted.

2. ``ops`` counts everything that is not a MAC, one per operation: pooling does one
   comparison or addition per window element and output (``out·R·S``; global pooling one
   per input element); element-wise, normalization and softmax ops one per output
   element; reductions one per input element. ``flops = 2·macs + ops``.
3. ``params`` counts the elements of a layer's constant operands (initializers, Constant
   nodes, and weights behind DequantizeLinear); ``weight_density`` is the fraction of
   non-zero weights (biases excluded; a quantized weight is zero where it equals its
   zero point), 1.0 where the values cannot be read.
4. Bit widths come from element types (float32 32, int8 8); a tensor produced by
   DequantizeLinear, or only read by QuantizeLinear, has the quantized width. The
   ``weight_bits`` / ``act_bits`` arguments override them.
5. Nodes that only compute constants (Constant, Shape of a static tensor, DequantizeLinear
   of a weight, ...) are kind ``constant`` with nothing to price. A node the view does
   not know, or whose shapes are unknown, is ``known=False`` with a ``reason``; it is
   listed, never dropped and never a crash.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hwcc.ir import dtypes
from hwcc.errors import HwccError
from hwcc.ir import Graph, Node

__all__ = ["KINDS", "Layer", "Workload", "analyze", "constant_tensors", "format_table", "handler", "summary_json"]

KINDS = ("conv", "depthwise_conv", "grouped_conv", "conv_transpose", "gemm", "matmul", "lstm",
         "gru", "rnn", "pool", "elementwise", "norm", "softmax", "data_movement", "other",
         "constant", "unknown")
_HIDDEN_KINDS = ("data_movement", "constant")
_STANDARD = ("", "ai.onnx")
_PASS_THROUGH = ("Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten")
_NOT_FOLDABLE = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                 "Multinomial", "Bernoulli", "If", "Loop", "Scan")
_NOT_FLAGS = ("onnx_name", "doc_string", "metadata_props", "overload", "act_density", "weight_bits", "act_bits")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One node as a cost model sees it. Dims that do not apply are ``None``.

    Recurrent layers use ``N`` batch, ``C`` input size, ``M`` hidden size, ``seq_len``,
    ``directions`` and ``gates``; Gemm/MatMul use ``N`` rows, ``C`` = K, ``M`` columns
    and ``batch`` for MatMul's broadcast batch dims (already folded into ``N``).
    """

    name: str
    op_type: str
    kind: str
    domain: str = ""
    known: bool = True
    reason: str = ""
    N: int | None = None
    C: int | None = None
    H: int | None = None
    W: int | None = None
    M: int | None = None
    R: int | None = None
    S: int | None = None
    P: int | None = None
    Q: int | None = None
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    groups: int = 1
    batch: tuple[int, ...] = ()
    seq_len: int | None = None
    directions: int | None = None
    gates: int | None = None
    macs: int = 0
    ops: int = 0
    params: int = 0
    weight_bits: int | None = None
    act_bits: int | None = None
    weight_bytes: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    weight_density: float = 1.0
    act_density: float = 1.0
    in_shape: tuple | None = None
    out_shape: tuple | None = None
    flags: tuple[str, ...] = ()

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.ops

    def to_dict(self) -> dict[str, Any]:
        """The layer as JSON-ready plain values (tuples become lists in JSON)."""
        return {**dataclasses.asdict(self), "flops": self.flops}


@dataclasses.dataclass
class Workload:
    """All layers of a graph in graph order, with totals.

    Attributes:
        layers: one per node.
        activation_bytes: every activation tensor (graph inputs and computed values)
            counted once, at its bit width.
        name: the graph's name.
    """

    layers: list[Layer]
    activation_bytes: int = 0
    name: str = ""

    macs = property(lambda self: sum(x.macs for x in self.layers))
    ops = property(lambda self: sum(x.ops for x in self.layers))
    flops = property(lambda self: sum(x.flops for x in self.layers))
    params = property(lambda self: sum(x.params for x in self.layers))
    weight_bytes = property(lambda self: sum(x.weight_bytes for x in self.layers))

    @property
    def unknown(self) -> list[Layer]:
        """Layers the view could not price."""
        return [x for x in self.layers if not x.known]

    def layer(self, name: str) -> Layer:
        for x in self.layers:
            if x.name == name:
                return x
        raise KeyError(f"no layer named {name!r}")

    def totals(self) -> dict[str, int]:
        return {"macs": self.macs, "ops": self.ops, "flops": self.flops, "params": self.params,
                "weight_bytes": self.weight_bytes, "activation_bytes": self.activation_bytes}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "totals": self.totals(), "layers": [x.to_dict() for x in self.layers]}


# ---------------------------------------------------------------------- registry
class _Unpriced(Exception):
    """The node cannot be priced; the message is the reason the user sees."""


_Handler = Callable[..., dict[str, Any]]
_HANDLERS: dict[tuple[str, str], tuple[_Handler, str, dict[str, Any]]] = {}


def handler(*op_types: str, kind: str, domain: str = "", **bound: Any) -> Callable[[_Handler], _Handler]:
    """Register ``fn(graph, node, **bound) -> fields`` as the pricing of ``op_types``.

    ``fields`` are :class:`Layer` fields (dims, ``macs``, ``ops``, a finer ``kind``) plus
    ``weights`` and ``biases``: indices of the inputs whose constant values are parameters
    (weights are the ones whose density is measured). Decorators stack, with ``bound``
    keyword arguments telling op variants apart (``QLinearConv``'s weight is input 3).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown layer kind {kind!r}")

    def register(fn: _Handler) -> _Handler:
        for op in op_types:
            _HANDLERS[("" if domain in _STANDARD else domain, op)] = (fn, kind, bound)
        return fn

    return register


def _static(g: Graph, name: str) -> tuple[int, ...]:
    t = g.tensors.get(name)
    if t is None or not t.is_static:
        raise _Unpriced(f"shape of {name!r} unknown ({_shape_str(t.shape if t else None)})")
    return tuple(int(d) for d in t.shape)


def _spatial(dims: tuple[int, ...]) -> tuple[int, int]:
    """Spatial dims as (height, width): leading dims folded into height."""
    return (math.prod(dims[:-1]), dims[-1]) if dims else (1, 1)


def _window(node: Node, in_hw: tuple[int, ...], out_hw: tuple[int, ...], k: tuple[int, ...]) -> dict:
    """Stride, dilation and pads of a convolution or pooling window (``auto_pad`` resolved)."""
    n = len(k)
    s, d = tuple(node.attr("strides") or [1] * n), tuple(node.attr("dilations") or [1] * n)
    pads = tuple(node.attr("pads") or [0] * 2 * n)
    if node.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        tot = [max(0, (o - 1) * si + (ki - 1) * di + 1 - i) for o, si, ki, di, i in zip(out_hw, s, k, d, in_hw)]
        lo = [t // 2 if node.attr("auto_pad") == "SAME_UPPER" else (t + 1) // 2 for t in tot]
        pads = tuple(lo) + tuple(t - b for t, b in zip(tot, lo))
    (H, W), (R, S), (P, Q) = _spatial(in_hw), _spatial(k), _spatial(out_hw)
    return dict(H=H, W=W, R=R, S=S, P=P, Q=Q, stride=s, dilation=d, pads=pads)


# ---------------------------------------------------------------------- handlers
@handler("Conv", kind="conv")
@handler("ConvInteger", kind="conv", b=None, wz=3)
@handler("QLinearConv", kind="conv", x=0, w=3, b=8, wz=5)
def _conv(g: Graph, node: Node, x: int = 0, w: int = 1, b: int | None = 2, wz: int | None = None) -> dict:
    (n, c, *hw), (m, cg, *k) = _static(g, node.inputs[x]), _static(g, node.inputs[w])
    out = _static(g, node.outputs[0])[2:]
    groups = int(node.attr("group", 1))
    kind = "conv" if groups == 1 else "depthwise_conv" if groups == c else "grouped_conv"
    return dict(kind=kind, N=n, C=c, M=m, groups=groups, **_window(node, tuple(hw), out, tuple(k)),
                macs=n * m * math.prod(out) * cg * math.prod(k), weights=(w,), biases=() if b is None else (b,),
                zero_point=(wz, 0))


@handler("ConvTranspose", kind="conv_transpose")
def _conv_transpose(g: Graph, node: Node) -> dict:
    (n, c, *hw), (_, mg, *k) = _static(g, node.inputs[0]), _static(g, node.inputs[1])
    y = _static(g, node.outputs[0])
    groups = int(node.attr("group", 1))
    win = _window(node, tuple(hw), y[2:], tuple(k))
    win["pads"] = tuple(node.attr("pads") or ())  # output-side cropping, not input padding
    return dict(N=n, C=c, M=y[1], groups=groups, **win, macs=n * c * math.prod(hw) * mg * math.prod(k),
                weights=(1,), biases=(2,))


@handler("Gemm", kind="gemm")
def _gemm(g: Graph, node: Node) -> dict:
    a, b = _static(g, node.inputs[0]), _static(g, node.inputs[1])
    rows, k = a[::-1] if node.attr("transA", 0) else a
    cols = b[0] if node.attr("transB", 0) else b[1]
    return dict(N=rows, C=k, M=cols, macs=rows * k * cols, weights=(0, 1), biases=(2,))


@handler("MatMul", kind="matmul")
@handler("MatMulInteger", kind="matmul", bz=3)
@handler("QLinearMatMul", kind="matmul", a=0, b=3, bz=5)
def _matmul(g: Graph, node: Node, a: int = 0, b: int = 1, bz: int | None = None) -> dict:
    sa, sb = _static(g, node.inputs[a]), _static(g, node.inputs[b])
    sa, sb = ((1,) + sa if len(sa) == 1 else sa), (sb + (1,) if len(sb) == 1 else sb)
    batch = tuple(int(d) for d in np.broadcast_shapes(sa[:-2], sb[:-2]))
    rows = math.prod(batch) * sa[-2]
    return dict(N=rows, C=sa[-1], M=sb[-1], batch=batch, macs=rows * sa[-1] * sb[-1], weights=(a, b),
                zero_point=(bz, -1))


@handler("LSTM", kind="lstm", gates=4, step_ops=9)
@handler("GRU", kind="gru", gates=3, step_ops=8)
@handler("RNN", kind="rnn", gates=1, step_ops=1)
def _recurrent(g: Graph, node: Node, gates: int, step_ops: int) -> dict:
    x, w = _static(g, node.inputs[0]), _static(g, node.inputs[1])
    t, n, i = (x[1], x[0], x[2]) if node.attr("layout", 0) else x
    dirs, h = w[0], int(node.attr("hidden_size") or w[1] // gates)
    return dict(N=n, C=i, M=h, seq_len=t, directions=dirs, gates=gates,
                macs=t * n * dirs * gates * h * (i + h), ops=t * n * dirs * h * step_ops,
                weights=(1, 2), biases=(3, 7))


@handler("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", kind="pool")
def _pool(g: Graph, node: Node) -> dict:
    x, y = _static(g, node.inputs[0]), _static(g, node.outputs[0])
    k = tuple(node.attr("kernel_shape") or x[2:])  # a global pool's window is its whole input
    return dict(N=x[0], C=x[1], M=y[1], **_window(node, x[2:], y[2:], k), ops=math.prod(y) * math.prod(k))


_ARITHMETIC = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where")
_POINTWISE = ("Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu",
              "Clip", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Elu", "Selu", "Celu",
              "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Floor", "Ceil", "Round", "Sign",
              "Sin", "Cos", "Mod", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
              "And", "Or", "Xor", "Not", "IsNaN", "IsInf", "BitShift", "QuantizeLinear",
              "DequantizeLinear")
_NORMS = ("BatchNormalization", "LayerNormalization", "InstanceNormalization", "LRN",
          "GroupNormalization", "LpNormalization", "MeanVarianceNormalization")


@handler(*_ARITHMETIC, kind="elementwise", params_from=0)
@handler(*_POINTWISE, kind="elementwise")
@handler("Softmax", "LogSoftmax", "Hardmax", kind="softmax")
@handler(*_NORMS, kind="norm", params_from=1)
def _per_output_element(g: Graph, node: Node, params_from: int | None = None) -> dict:
    y = _static(g, node.outputs[0])
    dims = dict(N=y[0], C=y[1], H=y[2], W=y[3], M=y[1], P=y[2], Q=y[3]) if len(y) == 4 else {}
    # Constant operands are parameters (a bias, a BN scale), scalars are immediates.
    const = () if params_from is None else tuple(
        i for i, t in enumerate(node.inputs) if i >= params_from and t and math.prod(_static(g, t)) > 1)
    return dict(**dims, ops=math.prod(y), biases=const)


@handler("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
         "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "TopK", "CumSum",
         kind="other")
def _reduction(g: Graph, node: Node) -> dict:
    return dict(ops=math.prod(_static(g, node.inputs[0])))


@handler("Reshape", "Transpose", "Concat", "Flatten", "Squeeze", "Unsqueeze", "GatherElements",
         "GatherND", "Slice", "Pad", "Resize", "Upsample", "Split", "Expand", "Tile", "Identity",
         "Dropout", "Cast", "CastLike", "Shape", "Size", "DepthToSpace", "SpaceToDepth",
         "ScatterND", "ScatterElements", "Range", "ConstantOfShape", "Constant", "NonZero",
         kind="data_movement")
@handler("Gather", kind="data_movement", weights=(0,))  # a constant table is an embedding
def _data_movement(g: Graph, node: Node, weights: tuple[int, ...] = ()) -> dict:
    _static(g, node.outputs[0])
    return dict(weights=weights)


# ---------------------------------------------------------------------- analysis
def constant_tensors(g: Graph) -> set[str]:
    """Tensors whose values are known before run time (computed by foldable nodes)."""
    const = {n for n, t in g.tensors.items() if t.data is not None}
    for node in g.nodes:
        ins = [t for t in node.inputs if t]
        if node.domain not in _STANDARD or node.op_type in _NOT_FOLDABLE or node.implicit_inputs:
            continue
        static_shape = node.op_type in ("Shape", "Size") and ins and g.tensors[ins[0]].is_static
        if static_shape or all(t in const for t in ins):
            const.update(t for t in node.outputs if t)
    return const


def _source(g: Graph, name: str) -> tuple[np.ndarray | None, int, Node | None]:
    """A constant's stored values, their element type, and the DequantizeLinear on the way."""
    dq = None
    while (p := g.producer(name)) is not None and p.op_type in _PASS_THROUGH + ("DequantizeLinear",):
        dq = p if p.op_type == "DequantizeLinear" else dq
        name = p.inputs[0]
    t = g.tensors[name]
    if p is not None and p.op_type == "ConstantOfShape":
        v = p.attr("value")
        return (np.ones(1) if v is not None and np.any(v) else np.zeros(1)), t.elem_type, dq  # default 0
    if p is not None and p.op_type == "Constant" and isinstance(p.attr("value"), np.ndarray):
        return p.attr("value"), t.elem_type, dq
    return t.data, t.elem_type, dq


def _nonzero(data: np.ndarray | None, zp: np.ndarray | None, axis: int) -> float | None:
    """Fraction of stored values that are not zero (not the zero point, if quantized)."""
    if data is None or data.size == 0 or data.dtype.kind not in "biufc":
        return None
    if zp is not None and zp.size > 1 and data.ndim:  # per channel, along ``axis``
        shape = [1] * data.ndim
        shape[axis % data.ndim] = -1
        zp = zp.reshape(shape) if zp.size == data.shape[axis % data.ndim] else None
    return float(np.count_nonzero(data != (0 if zp is None else zp))) / data.size


# Counting zeros of a large weight is the costliest step of ``analyze``; initializer
# arrays are immutable by the IR's contract, so a count is valid for as long as the
# array lives. Entries leave with their arrays.
_DENSITY_MEMO: dict[int, tuple[weakref.ref, float | None]] = {}


def _nonzero_memo(data: np.ndarray | None, zp: np.ndarray | None, axis: int) -> float | None:
    if data is None or zp is not None:
        return _nonzero(data, zp, axis)
    key = id(data)
    hit = _DENSITY_MEMO.get(key)
    if hit is not None and hit[0]() is data:
        return hit[1]
    value = _nonzero(data, None, axis)
    try:
        _DENSITY_MEMO[key] = (weakref.ref(data, lambda _r, k=key: _DENSITY_MEMO.pop(k, None)), value)
    except TypeError:  # an object without weak references: don't memoise
        pass
    return value


def _bits(elem_type: int) -> int:
    return 8 * dtypes.BYTES.get(elem_type, 4)


class _Context:
    """What :func:`analyze` shares between nodes: options, constants, readers, tensor bytes."""

    def __init__(self, g: Graph, weight_bits: int | None, act_bits: int | None, act_density: Any):
        self.g, self.weight_bits, self.act_bits, self.act_density = g, weight_bits, act_bits, act_density
        self.const = constant_tensors(g)
        self.users: dict[str, list[Node]] = {}  # Graph.users walks every node: index once
        for node in g.nodes:
            for t in set(node.inputs) | set(node.implicit_inputs):
                self.users.setdefault(t, []).append(node)
        self.tensor_bytes: dict[str, int] = {}

    def act_bits_of(self, name: str, *, out: bool = False) -> int:
        """Quantized width behind a DequantizeLinear (inputs) or before QuantizeLinear (outputs)."""
        if self.act_bits:
            return self.act_bits
        p, users = self.g.producer(name), self.users.get(name, [])
        if not out and p is not None and p.op_type == "DequantizeLinear":
            return _bits(self.g.tensors[p.inputs[0]].elem_type)
        if out and users and all(u.op_type == "QuantizeLinear" for u in users):
            return _bits(self.g.tensors[users[0].outputs[0]].elem_type)
        return _bits(self.g.tensors[name].elem_type)

    def act_bytes(self, names: list[str], *, out: bool = False) -> int:
        for t in names:
            bits = self.act_bits_of(t, out=out)
            self.tensor_bytes[t] = math.ceil(math.prod(_static(self.g, t)) * bits / 8)
        return sum(self.tensor_bytes[t] for t in names)

    def params(self, weights: list[str], biases: list[str], zero_point: tuple[str, int],
               stored_bits: int | None = None) -> dict:
        """Parameter count, bytes, bit width and weight density of a node's constants.

        ``zero_point`` is the (tensor, axis) of the weights' zero point in ops that take it
        as an input (QLinearConv); a DequantizeLinear on the weight's way brings its own.
        """
        bits, count, nbytes, nonzero = [], 0, 0, []
        for t in weights + biases:
            data, etype, dq = _source(self.g, t)
            n, b = math.prod(_static(self.g, t)), self.weight_bits or stored_bits or _bits(etype)
            bits, count, nbytes = bits + [b], count + n, nbytes + math.ceil(n * b / 8)
            if t in weights:
                zp, axis = zero_point
                if dq is not None:
                    zp, axis = (dq.inputs[2] if len(dq.inputs) > 2 else ""), int(dq.attr("axis", 1))
                nonzero.append((n, _nonzero_memo(data, self.g.initializer(zp) if zp else None, axis)))
        read = [(n, f) for n, f in nonzero if f is not None]
        density = sum(n * f for n, f in read) / sum(n for n, _ in read) if read else 1.0
        return dict(params=count, weight_bytes=nbytes, weight_bits=bits[0] if bits else None,
                    weight_density=density)

    def priced(self, node: Node, fields: dict[str, Any]) -> dict[str, Any]:
        """A handler's fields completed with parameters and activation bytes."""
        def input_at(i: int | None) -> str:
            return node.inputs[i] if i is not None and i < len(node.inputs) else ""

        weights, biases = ([input_at(i) for i in fields.pop(key, ()) if input_at(i) in self.const]
                           for key in ("weights", "biases"))
        zp_index, zp_axis = fields.pop("zero_point", (None, 0))
        acts = [t for t in node.inputs if t and t not in self.const]
        # Outputs nothing reads (an unused Dropout mask) are never written.
        live = [t for t in node.outputs if t and (t in self.users or self.g.is_graph_output(t))]
        stored = node.meta.get("weight_bits")  # quantize(kmeans|fixed16) keeps float types
        params = self.params(weights, biases, (input_at(zp_index), zp_axis),
                             stored if isinstance(stored, int) else None)
        return dict(**params, **fields,
                    input_bytes=self.act_bytes(acts),
                    output_bytes=self.act_bytes(live or list(node.outputs[:1]), out=True),
                    act_bits=self.act_bits_of(acts[0]) if acts else None)

    def density(self, node: Node) -> float:
        d = node.meta.get("act_density", self.act_density)
        return float(d.get(node.name, 1.0) if isinstance(d, Mapping) else 1.0 if d is None else d)

    def layer(self, node: Node) -> Layer:
        g, domain = self.g, ("" if node.domain in _STANDARD else node.domain)
        ins = [t for t in node.inputs if t and t not in self.const]
        shape = lambda t: g.tensors[t].shape if t in g.tensors else None  # noqa: E731
        flags = tuple(sorted(k for k, v in node.meta.items()
                             if k not in _NOT_FLAGS and v is not None and v is not False))
        base = dict(name=node.name, op_type=node.op_type, domain=node.domain, act_density=self.density(node),
                    in_shape=shape(ins[0]) if ins else None, flags=flags,
                    out_shape=shape(node.outputs[0]) if node.outputs and node.outputs[0] else None)
        if node.outputs and all(t in self.const for t in node.outputs if t):
            return Layer(kind="constant", **base)
        if (domain, node.op_type) not in _HANDLERS:
            reason = f"unknown op: {domain or 'ai.onnx'}::{node.op_type}"
            return Layer(kind="unknown", known=False, reason=reason, **base)
        fn, kind, bound = _HANDLERS[(domain, node.op_type)]
        try:
            return Layer(**base, **{"kind": kind, **self.priced(node, fn(g, node, **bound))})
        except _Unpriced as e:
            return Layer(kind=kind, known=False, reason=str(e), **base)
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as e:  # a malformed node
            return Layer(kind=kind, known=False, reason=f"cannot price {node.op_type}: {e}", **base)


def analyze(graph: Graph, *, weight_bits: int | None = None, act_bits: int | None = None,
            act_density: float | Mapping[str, float] | None = None) -> Workload:
    """The workload of every node of ``graph``, in graph order.

    Args:
        graph: a graph whose shapes have been inferred (``hwcc.load`` does it).
        weight_bits: bits per parameter for every layer; default: each weight's element
            type (int8 behind DequantizeLinear or in QLinearConv gives 8).
        act_bits: bits per activation; default: each tensor's element type.
        act_density: fraction of non-zero activations, one value for all layers or a
            mapping from layer name; a node's ``meta["act_density"]`` wins. Default 1.0.

    Returns:
        The :class:`Workload`.

    Raises:
        HwccError: a bit width or density out of range.
    """
    for label, bits in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        if bits is not None and not (isinstance(bits, int) and 1 <= bits <= 64):
            raise HwccError(f"{label} must be an integer from 1 to 64, got {bits!r}")
    values = act_density.values() if isinstance(act_density, Mapping) else [act_density]
    if any(d is not None and not 0.0 <= float(d) <= 1.0 for d in values):
        raise HwccError(f"act_density must lie in [0, 1], got {act_density!r}")
    ctx = _Context(graph, weight_bits, act_bits, act_density)
    layers = [ctx.layer(n) for n in graph.nodes]
    return Workload(layers, activation_bytes=sum(ctx.tensor_bytes.values()), name=graph.name)


# ---------------------------------------------------------------------- presentation
def _human(n: float, step: int, units: tuple[str, ...]) -> str:
    """Three significant digits and a unit: 1.81 G, 724 M, 233 MiB."""
    for power in range(len(units) - 1, 0, -1):
        if abs(n) >= step**power * 0.9995:
            v = n / step**power
            return f"{v:.3g} {units[power]}" if v < 1000 else f"{v:.0f} {units[power]}"
    return f"{n:g}{units[0]}"


def _si(n: float) -> str:
    return _human(n, 1000, ("", "K", "M", "G", "T"))


def _bytes(n: int) -> str:
    return _human(n, 1024, (" B", "KiB", "MiB", "GiB", "TiB"))


def _shape_str(s: tuple | None) -> str:
    return "rank unknown" if s is None else "×".join("?" if d is None else str(d) for d in s) or "scalar"


def _describe(x: Layer) -> str:
    if not x.known:
        return f"?  {x.reason}"
    if x.kind in ("conv", "depthwise_conv", "grouped_conv", "conv_transpose", "pool"):
        s = x.stride[0] if len(set(x.stride)) == 1 else "×".join(map(str, x.stride))
        text = f"{x.C}×{x.H}×{x.W} → {x.M}×{x.P}×{x.Q} k{x.R}×{x.S}" + (f"/{s}" if x.stride else "")
        text += " dw" if x.kind == "depthwise_conv" else f" g{x.groups}" if x.groups > 1 else ""
        text += f" d{max(x.dilation)}" if x.dilation and max(x.dilation) > 1 else ""
        return (f"N{x.N} " if x.N and x.N > 1 else "") + text
    if x.kind in ("gemm", "matmul"):
        lead = "×".join(map(str, x.batch)) + "·" if x.batch else ""
        n = x.N // max(1, math.prod(x.batch))
        return f"{lead}{n}×{x.C} → {n}×{x.M}"
    if x.kind in ("lstm", "gru", "rnn"):
        text = f"T{x.seq_len} N{x.N} {x.C} → {x.M} ×{x.gates}g"
        return text + (f" ×{x.directions}dir" if x.directions > 1 else "")
    if x.in_shape is not None and x.in_shape != x.out_shape:
        return f"{_shape_str(x.in_shape)} → {_shape_str(x.out_shape)}"
    return _shape_str(x.out_shape)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width - width // 2):]


def format_table(workload: Workload, *, top: int | None = None, show_all: bool = False) -> str:
    """A per-layer text table, for ``hwcc inspect``.

    Args:
        workload: from :func:`analyze`.
        top: show only the ``top`` layers with the most MACs (then ops), in graph order.
        show_all: also list data-movement and constant nodes without parameters (by
            default they are counted on one line, by op type). Unpriced layers are always
            listed, marked ``?``.

    Returns:
        The table; its TOTAL line sums every layer, shown or not.
    """
    w = workload
    listed = [x for x in w.layers if show_all or not x.known or x.params or x.kind not in _HIDDEN_KINDS]
    hidden = Counter(x.op_type for x in set(w.layers) - set(listed))
    cut: set[Layer] = set()
    if top is not None:
        ranked = sorted((x for x in listed if x.known), key=lambda x: (x.macs, x.ops), reverse=True)
        cut = set(ranked[max(0, top):])
        listed = [x for x in listed if x not in cut]
    rows = [(x.name, x.op_type if x.domain in _STANDARD else f"{x.domain}::{x.op_type}", _describe(x),
             _si(x.macs) if x.known else "?", _si(x.ops) if x.known else "?", _si(x.params),
             _bytes(x.weight_bytes), _bytes(x.input_bytes + x.output_bytes),
             f"{x.weight_density:.2f}" if x.params else "-", f"{x.act_density:.2f}")
            for x in listed]
    total = ("TOTAL", f"{len(w.layers)} nodes", "", _si(w.macs), _si(w.ops), _si(w.params), _bytes(w.weight_bytes),
             _bytes(sum(x.input_bytes + x.output_bytes for x in w.layers)), "", "")
    head = ("layer", "op", "shape", "MACs", "ops", "params", "weights", "acts", "w-dens", "a-dens")
    caps = (32, 24, 44) + (9,) * 7
    widths = [min(cap, max(len(r[k]) for r in rows + [head, total])) for k, cap in enumerate(caps)]
    fmt = lambda r: "  ".join(_cut(c, wd).ljust(wd) if k < 3 else c.rjust(wd)  # noqa: E731
                               for k, (c, wd) in enumerate(zip(r, widths))).rstrip()
    rule = "-" * len(fmt(head))
    lines = [fmt(head), rule, *map(fmt, rows), rule, fmt(total)]
    lines.append(f"MACs {w.macs:,} · params {w.params:,} · weights {_bytes(w.weight_bytes)} · "
                 f"activation tensors {_bytes(w.activation_bytes)} (each counted once)")
    if hidden:
        lines.append(f"{sum(hidden.values())} data-movement/constant nodes not listed: "
                     + ", ".join(f"{n} {op}" for op, n in hidden.most_common()))
    if cut:
        lines.append(f"{len(cut)} smaller layers not listed (top={top}): "
                     f"{_si(sum(x.macs for x in cut))} MACs")
    if w.unknown:
        lines.append(f"{len(w.unknown)} node(s) marked ? could not be priced; their MACs count as 0")
    return "\n".join(lines)


def summary_json(workload: Workload) -> dict[str, Any]:
    """The workload for ``hwcc inspect --json``: totals, MACs by kind, unpriced nodes, layers."""
    by_kind: Counter[str] = Counter()
    for x in workload.layers:
        by_kind[x.kind] += x.macs
    return {**workload.to_dict(), "macs_by_kind": {k: v for k, v in by_kind.items() if v},
            "unknown": [{"name": x.name, "op_type": x.op_type, "reason": x.reason} for x in workload.unknown]}
