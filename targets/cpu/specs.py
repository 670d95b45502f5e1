"""Kernel specs: the lookup-table key of each kernel onnxruntime runs, and its bytes.

A kernel spec is a JSON-ready dict naming a kernel as onnxruntime executes it: op (with
its domain: ``nchwc.Conv``, ``com.microsoft.FusedGemm``, ...), dims as executed (NCHWc
channel counts padded), attributes, fused activation and "Sum" input, and batch; its
canonical JSON text is the table key (:func:`spec_key`). The builders here turn the
fused ops of the planner (:mod:`.kernels`) into :class:`Kernel` records: the spec, and
the weight, input and output bytes the kernel touches, padded as executed.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc.ir import Node, dtypes

__all__ = [
    "IN_PLACE",
    "spec_inputs",
    "Clock",
    "same_scope",
    "Kernel",
    "NCHWC_POOLS",
    "STANDARD_DOMAINS",
    "op_kernel",
    "pad_channels",
    "reorder_kernel",
    "spec_key",
]

STANDARD_DOMAINS = ("", "ai.onnx")
IN_PLACE = frozenset(
    ("Clip", "Elu", "HardSigmoid", "LeakyRelu", "Relu", "Selu", "Sigmoid", "Softplus")
    + ("Softsign", "Tanh", "ThresholdedRelu")
)
"""Kernels of onnxruntime's CPU provider that may write their output over input 0
(``MayInplace(0, 0)`` in its kernel registrations: the float activations and ``Clip``);
its element-wise arithmetic (``Add``, ``Mul``, ...) does not."""
_VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
NCHWC_POOLS = ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")
_SMALL_CONST = 4096  # integer constants up to this many elements are copied into kernel models
# Float constants are copied only up to this many (an exponent, Clip's bounds, Resize's
# scales): larger ones are weights (a bias, a scale) whose values do not change the time,
# and a copy would tie the kernel to them: every fine-tune would ask for a new measurement.
_SMALL_FLOAT = 4


def same_scope(a: Node, b: Node) -> bool:
    """Whether two nodes ran in the same graph before control flow was inlined
    (:mod:`hwcc.ir.workload_flow` tags a taken branch's nodes with ``meta["scope"]``):
    onnxruntime optimizes each branch of an ``If`` as a graph of its own, so its fusions
    never join a node inside a branch with one outside."""
    return a.meta.get("scope") == b.meta.get("scope")


def spec_key(spec: dict[str, Any]) -> str:
    """The lookup-table key of a kernel spec: its canonical JSON text."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def pad_channels(c: int, block: int) -> int:
    """``c`` channels as NCHWc stores them: rounded up to a whole block (``block`` 0: as is)."""
    return -(-c // block) * block if block else c


@dataclass
class Kernel:
    """One kernel onnxruntime executes.

    Attributes:
        head: the node that carries the kernel's cost.
        members: other nodes fused into it (priced at zero).
        spec: the lookup-table key (JSON-ready): op, dims, attributes, as executed.
        weight_bytes: constant bytes the kernel reads, as executed (padded).
        in_bytes: activation bytes it reads; out_bytes: that it writes (as executed).
        moves: a data-movement kernel onnxruntime inserts around another (an NCHWc reorder,
            the Reshapes around a Gemm of a 3-D input), charged to that one's node.
        reads: ``(bytes, distance)`` per activation it reads: the tensor's size and the
            distinct bytes touched since it was written (:class:`Clock`; ``None``: a graph
            input, last touched an inference ago, like the weights). Set by the planner.
    """

    head: str
    members: tuple[str, ...]
    spec: dict[str, Any]
    weight_bytes: int = 0
    in_bytes: int = 0
    out_bytes: int = 0
    moves: bool = False
    reads: tuple[tuple[int, int | None], ...] = ()

    @property
    def is_reorder(self) -> bool:
        return self.moves or self.spec["op"].startswith("nchwc.Reorder")


class Clock:
    """Bytes touched so far in one inference, and where each tensor's buffer lives: sets the
    ``reads`` of each kernel the planner ``p`` emits, in execution order, once
    :meth:`finish` knows how many bytes the activations occupy.

    A read's distance is the distinct bytes touched since its tensor was written, as LRU
    counts them: the weights read since (each read once an inference) plus the activation
    bytes touched since, at most the activations' footprint. onnxruntime's memory planner
    gives a tensor a buffer that an earlier tensor, now dead, had (its memory pattern
    places every buffer in one block), so an inference touches about as many activation
    bytes as are live at once at its peak, not the sum of every tensor it writes: ppocr's
    text-line classifier writes 14.2 MB of activations per inference, of which at most
    0.5 MB are live at once.
    """

    def __init__(self, p: Any):
        self.p, self.weights, self.acts = p, 0, 0  # bytes touched so far
        # per buffer: [bytes, first kernel, last kernel, weights and activation bytes
        # touched when it was written]; by tensor, the buffer it holds now
        self.buffers: list[list[int]] = []
        self.buffer: dict[str, list[int]] = {}
        self.pending: list[tuple[Kernel, list[tuple[int, tuple[int, int] | None]]]] = []

    def __call__(self, k: Kernel, reads: list[str], writes: str) -> Kernel:
        """``k``, which reads tensors ``reads`` and writes ``writes`` (a new buffer, even
        over a tensor of the same name: a reorder's copy)."""
        size = lambda t: math.prod(self.p.shape(t)) * dtypes.BYTES.get(self.p.dtype(t), 4)  # noqa: E731
        i, raw = len(self.pending), []
        for t in filter(None, dict.fromkeys(reads)):
            b = self.buffer.get(t)
            raw.append((size(t), None if b is None else (self.weights - b[3], self.acts - b[4])))
            if b is not None:
                b[2] = i
        self.pending.append((k, raw))
        self.weights += k.weight_bytes
        self.acts += k.in_bytes + k.out_bytes
        if writes:
            self.buffer[writes] = [k.out_bytes, i, i, self.weights, self.acts]
            self.buffers.append(self.buffer[writes])
        return k

    def finish(self, outputs: list[str]) -> int:
        """Set every kernel's ``reads`` and return the activations' footprint: the most
        bytes of buffers live at once (a buffer from its write to its last read; the graph
        ``outputs``' to the end)."""
        end = len(self.pending)
        for t in outputs:
            if t in self.buffer:
                self.buffer[t][2] = end
        delta = [0] * (end + 2)
        for size, first, last, *_ in self.buffers:
            delta[first] += size
            delta[last + 1] -= size
        peak = max(itertools.accumulate(delta), default=0)
        for k, raw in self.pending:
            k.reads = tuple((s, None if d is None else d[0] + min(d[1], peak)) for s, d in raw)
        return peak


def reorder_kernel(p: Any, op: Any, kind: str, t: str) -> Kernel:
    """The NCHW to NCHWc reorder of tensor ``t`` (``kind`` "in") or back ("out"), charged to
    ``op``; ``p`` is the planner (its shapes and block)."""
    n, c, *hw = p.shape(t)
    size = n * math.prod(hw) * 4
    padded = pad_channels(c, p.block)
    if kind == "in":
        spec = {"op": "nchwc.ReorderInput", "N": n, "C": c, "x": hw}
        return Kernel(op.head.name, (), spec, 0, size * c, size * padded)
    spec = {"op": "nchwc.ReorderOutput", "N": n, "C": c, "x": hw}
    return Kernel(op.head.name, (), spec, 0, size * padded, size * c)


def op_kernel(p: Any, op: Any, members: tuple[str, ...]) -> Kernel:
    """The kernel of the planner's fused ``op`` (a conv, a Gemm or any other node), with
    ``members`` the nodes fused into it."""
    if op.kind in ("conv", "bn_conv"):
        spec = _conv_spec(p, op)
        c, m, g = spec["C"], spec["M"], spec["group"]
        n, x, y = spec["N"], math.prod(spec["x"]), math.prod(spec["y"])
        weights = 4 * (m * (c // g) * math.prod(spec["k"]) + (m if op.bias else 0))
        reads = 4 * n * (c * x + (m * y if op.sum_input else 0))
        return Kernel(op.head.name, members, spec, weights, reads, 4 * n * m * y)
    if op.kind == "gemm":
        spec = _gemm_spec(p, op)
        n, k, m = spec["N"], spec["K"], spec["M"]
        weights = 4 * (k * m + (m if op.bias else 0))
        return Kernel(op.head.name, members, spec, weights, 4 * n * k, 4 * n * m)
    spec = _generic_spec(p, op)
    sizes = [math.prod(s[2]) * dtypes.BYTES.get(s[1], 4) for s in spec["inputs"] if s]
    consts = sum(z for s, z in zip([s for s in spec["inputs"] if s], sizes) if s[0] != "x")
    outs = sum(math.prod(s[1]) * dtypes.BYTES.get(s[0], 4) for s in spec["outputs"] if s)
    return Kernel(op.head.name, members, spec, consts, sum(sizes) - consts, outs)


def _conv_spec(p: Any, op: Any) -> dict[str, Any]:
    node, B = op.head, p.block
    xs, ys = p.shape(op.inputs[0]), p.shape(op.output)
    if op.kind == "bn_conv":
        m, cg, ks, groups = xs[1], 1, [1, 1], xs[1]
        win = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1]}
    else:
        m, cg, *ks = p.shape(node.inputs[1])
        groups = int(node.attr("group", 1))
        layer = p.layers[node.name]
        win = {
            "strides": list(layer.stride),
            "pads": list(layer.pads),
            "dilations": list(layer.dilation),
        }
    if op.nchwc and groups > 1 and cg == 1 and m == groups:
        c = mm = g = pad_channels(m, B)
    elif op.nchwc and groups == 1:
        c, mm, g = (xs[1] if op.nchw_in else pad_channels(xs[1], B)), pad_channels(m, B), 1
    else:
        c, mm, g = xs[1], m, groups
    fused = op.act or op.sum_input
    name = "nchwc.Conv" if op.nchwc else "com.microsoft.FusedConv" if fused else "Conv"
    return {
        "op": name,
        "N": xs[0],
        "C": c,
        "M": mm,
        "group": g,
        "x": list(xs[2:]),
        "k": list(ks),
        "y": list(ys[2:]),
        **win,
        "bias": op.bias,
        "act": op.act,
        "act_params": op.act_params,
        "sum": bool(op.sum_input),
    }


def _gemm_spec(p: Any, op: Any) -> dict[str, Any]:
    node = op.head
    a, b = p.shape(node.inputs[0]), p.shape(node.inputs[1])
    if len(a) != 2:  # a MatMul of a [B, S, K] input: onnxruntime reshapes it to 2-D
        a = (math.prod(a[:-1]), a[-1])
    ta, tb, alpha, beta = 0, 0, 1.0, 1.0  # a MatMul (+ Add) run as a Gemm
    if node.op_type == "Gemm":
        ta, tb = int(node.attr("transA", 0)), int(node.attr("transB", 0))
        alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    return {
        "op": "com.microsoft.FusedGemm" if op.act else "Gemm",
        "N": a[1] if ta else a[0],
        "K": a[0] if ta else a[1],
        "M": b[0] if tb else b[1],
        "transA": ta,
        "transB": tb,
        "alpha": alpha,
        "beta": beta,
        "bias": op.bias,
        "b_const": node.inputs[1] in p.const,
        "act": op.act,
        "act_params": op.act_params,
    }


def spec_inputs(p: Any, op: Any, tensors: list[str]) -> tuple[list[list | None], Any]:
    """The ``inputs`` entries of a generic spec for ``tensors`` (data inputs fed, small
    constants copied, NCHWc tensors of ``op`` padded), and the shape function used."""

    def shape(t: str) -> list[int]:
        s = list(p.shape(t))
        return [s[0], pad_channels(s[1], p.block), *s[2:]] if t in op.padded else s

    inputs: list[list | None] = []
    for t in tensors:
        rt = p.resolve(t) if t else ""
        if not t:
            inputs.append(None)
        elif t in p.const:
            v = p.value(t)
            most = _SMALL_FLOAT if v is not None and v.dtype.kind in "fc" else _SMALL_CONST
            small = v is not None and v.size <= most
            values = [v.ravel().tolist()] if small else []
            inputs.append(["c" if small else "r", p.dtype(t), shape(t)] + values)
        else:
            inputs.append(["x", p.dtype(rt), shape(rt)])
    return inputs, shape


def _generic_spec(p: Any, op: Any) -> dict[str, Any]:
    """Any other node, rebuilt as it is: data inputs fed, small constants copied."""
    node = op.head
    inputs, shape = spec_inputs(p, op, list(node.inputs))
    live = [o if o and (o in p.users or p.g.is_graph_output(o)) else "" for o in node.outputs]
    outputs = [[p.dtype(o), shape(o)] if o else None for o in live]
    while outputs and outputs[-1] is None:
        outputs.pop()
    domain = (
        "nchwc."
        if op.nchwc and node.op_type in NCHWC_POOLS
        else ("" if node.domain in STANDARD_DOMAINS else node.domain + ".")
    )
    spec = {
        "op": domain + node.op_type,
        "inputs": inputs,
        "outputs": outputs,
        "attrs": _attrs(node),
    }
    if not domain and "" in p.g.opset_imports:  # rebuilt at its own opset: attributes such
        spec["opset"] = p.g.opset_imports[""]  # as Squeeze's axes moved to inputs over time
    if _in_place(p, node):
        spec["inplace"] = True
    return spec


def _in_place(p: Any, node: Node) -> bool:
    """Whether onnxruntime writes ``node``'s output over its input: a kernel that declares
    it may (``MayInplace(0, 0)``: :data:`IN_PLACE`) whose input buffer dies there. Its
    allocation planner reuses the buffer of an input that this node is the last to read,
    of the output's size and type, that is not a graph input, a constant or a graph
    output. An input that is a view of another tensor (``Reshape``, ``Flatten``,
    ``Squeeze``, ``Unsqueeze`` alias their input) is left out: whether its buffer dies
    here depends on the other tensor's readers."""
    if node.op_type not in IN_PLACE or node.domain not in STANDARD_DOMAINS or not node.inputs:
        return False
    x, y = p.resolve(node.inputs[0]), node.outputs[0]
    producer = p.g.producer(x)
    return (
        producer is not None
        and producer.op_type not in _VIEWS
        and x not in p.const
        and p.sole_user(x) is node
        and not p.g.is_graph_output(y)
        and p.dtype(x) == p.dtype(y)
        and p.shape(x) == p.shape(y)
    )


def _attrs(node: Node) -> dict[str, Any]:
    """Attributes as JSON values; ``ValueError`` for ones a kernel model cannot carry."""
    out: dict[str, Any] = {}
    for k, v in sorted(node.attrs.items()):
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, (list, tuple)):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        if isinstance(v, list) and not v:
            continue
        if not isinstance(v, (int, float, str, list)):
            raise ValueError(
                f"node {node.name}: attribute {k!r} cannot be rebuilt in a kernel model"
            )
        out[k] = v
    return out
