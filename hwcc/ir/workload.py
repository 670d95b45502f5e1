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

The per-op handlers that count 1 and 2 are in :mod:`.workload_ops` (a new op is one more
handler there); the weight reading behind 3 (constants, stored values, densities) is in
:mod:`.workload_weights`; the text ``hwcc inspect`` prints is in :mod:`hwcc.cli.workload_view`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node, dtypes
from hwcc.ir.workload_ops import (
    KINDS,
    MAC_KINDS,
    STANDARD_DOMAINS,
    Unpriced,
    handler,
    handler_for,
    static,
)
from hwcc.ir.workload_weights import (
    DensityMemo,
    constant_tensors,
    nonzero_fraction,
    weight_source,
)

__all__ = [
    "KINDS",
    "MAC_KINDS",
    "DensityMemo",
    "Layer",
    "Workload",
    "analyze",
    "constant_tensors",
    "handler",
]

_NOT_FLAGS = (
    "onnx_name",
    "doc_string",
    "metadata_props",
    "overload",
    "act_density",
    "weight_bits",
    "act_bits",
    "scope",  # the If branch a node was inlined from (hwcc.ir.workload_flow)
)


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
        return {
            "macs": self.macs,
            "ops": self.ops,
            "flops": self.flops,
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "activation_bytes": self.activation_bytes,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "totals": self.totals(),
            "layers": [x.to_dict() for x in self.layers],
        }


# ---------------------------------------------------------------------- analysis
def _bits(elem_type: int) -> int:
    return 8 * dtypes.BYTES.get(elem_type, 4)


class _Context:
    """What :func:`analyze` shares between nodes: options, constants, readers, tensor bytes."""

    def __init__(
        self,
        g: Graph,
        weight_bits: int | None,
        act_bits: int | None,
        act_density: Any,
        densities: DensityMemo | None,
    ):
        self.g, self.weight_bits, self.act_bits = g, weight_bits, act_bits
        self.act_density, self.densities = act_density, densities
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
            self.tensor_bytes[t] = math.ceil(math.prod(static(self.g, t)) * bits / 8)
        return sum(self.tensor_bytes[t] for t in names)

    def params(
        self,
        weights: list[str],
        biases: list[str],
        zero_point: tuple[str, int],
        stored_bits: int | None = None,
    ) -> dict:
        """Parameter count, bytes, bit width and weight density of a node's constants.

        ``zero_point`` is the (tensor, axis) of the weights' zero point in ops that take it
        as an input (QLinearConv); a DequantizeLinear on the weight's way brings its own.
        """
        bits, count, nbytes, nonzero = [], 0, 0, []
        for t in weights + biases:
            data, etype, dq = weight_source(self.g, t)
            n, b = math.prod(static(self.g, t)), self.weight_bits or stored_bits or _bits(etype)
            bits, count, nbytes = bits + [b], count + n, nbytes + math.ceil(n * b / 8)
            if t in weights:
                zp, axis = zero_point
                if dq is not None:
                    zp, axis = (dq.inputs[2] if len(dq.inputs) > 2 else ""), int(dq.attr("axis", 1))
                zp_data = self.g.initializer(zp) if zp else None
                count_nonzero = (
                    self.densities.nonzero if self.densities is not None else nonzero_fraction
                )
                nonzero.append((n, count_nonzero(data, zp_data, axis)))
        read = [(n, f) for n, f in nonzero if f is not None]
        density = sum(n * f for n, f in read) / sum(n for n, _ in read) if read else 1.0
        return dict(
            params=count,
            weight_bytes=nbytes,
            weight_bits=bits[0] if bits else None,
            weight_density=density,
        )

    def priced(self, node: Node, fields: dict[str, Any]) -> dict[str, Any]:
        """A handler's fields completed with parameters and activation bytes."""

        def input_at(i: int | None) -> str:
            return node.inputs[i] if i is not None and i < len(node.inputs) else ""

        weights, biases = (
            [input_at(i) for i in fields.pop(key, ()) if input_at(i) in self.const]
            for key in ("weights", "biases")
        )
        zp_index, zp_axis = fields.pop("zero_point", (None, 0))
        acts = [t for t in node.inputs if t and t not in self.const]
        # Outputs nothing reads (an unused Dropout mask) are never written.
        live = [t for t in node.outputs if t and (t in self.users or self.g.is_graph_output(t))]
        stored = node.meta.get("weight_bits")  # quantize(kmeans|fixed16) keeps float types
        params = self.params(
            weights,
            biases,
            (input_at(zp_index), zp_axis),
            stored if isinstance(stored, int) else None,
        )
        return dict(
            **params,
            **fields,
            input_bytes=self.act_bytes(acts),
            output_bytes=self.act_bytes(live or list(node.outputs[:1]), out=True),
            act_bits=self.act_bits_of(acts[0]) if acts else None,
        )

    def density(self, node: Node) -> float:
        d = node.meta.get("act_density", self.act_density)
        return float(d.get(node.name, 1.0) if isinstance(d, Mapping) else 1.0 if d is None else d)

    def layer(self, node: Node) -> Layer:
        g, domain = self.g, ("" if node.domain in STANDARD_DOMAINS else node.domain)
        ins = [t for t in node.inputs if t and t not in self.const]
        shape = lambda t: g.tensors[t].shape if t in g.tensors else None  # noqa: E731
        flags = tuple(
            sorted(
                k
                for k, v in node.meta.items()
                if k not in _NOT_FLAGS and v is not None and v is not False
            )
        )
        base = dict(
            name=node.name,
            op_type=node.op_type,
            domain=node.domain,
            act_density=self.density(node),
            in_shape=shape(ins[0]) if ins else None,
            flags=flags,
            out_shape=shape(node.outputs[0]) if node.outputs and node.outputs[0] else None,
        )
        if node.outputs and all(t in self.const for t in node.outputs if t):
            return Layer(kind="constant", **base)
        found = handler_for(domain, node.op_type)
        if found is None:
            reason = f"unknown op: {domain or 'ai.onnx'}::{node.op_type}"
            return Layer(kind="unknown", known=False, reason=reason, **base)
        fn, kind, bound = found
        try:
            return Layer(**base, **{"kind": kind, **self.priced(node, fn(g, node, **bound))})
        except Unpriced as e:
            return Layer(kind=kind, known=False, reason=str(e), **base)
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError) as e:  # malformed
            return Layer(kind=kind, known=False, reason=f"cannot price {node.op_type}: {e}", **base)


def analyze(
    graph: Graph,
    *,
    weight_bits: int | None = None,
    act_bits: int | None = None,
    act_density: float | Mapping[str, float] | None = None,
    densities: DensityMemo | None = None,
) -> Workload:
    """The workload of every node of ``graph``, in graph order.

    Args:
        graph: a graph whose shapes have been inferred (``hwcc.load`` does it).
        weight_bits: bits per parameter for every layer; default: each weight's element
            type (int8 behind DequantizeLinear or in QLinearConv gives 8).
        act_bits: bits per activation; default: each tensor's element type.
        act_density: fraction of non-zero activations, one value for all layers or a
            mapping from layer name; a node's ``meta["act_density"]`` wins. Default 1.0.
        densities: weight densities counted before, kept by the caller; the counts of
            this graph's weights are added to it. Default: count every weight.

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
    ctx = _Context(graph, weight_bits, act_bits, act_density, densities)
    layers = [ctx.layer(n) for n in graph.nodes]
    return Workload(layers, activation_bytes=sum(ctx.tensor_bytes.values()), name=graph.name)
