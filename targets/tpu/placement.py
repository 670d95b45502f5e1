"""Where a graph's nodes run on the TPU v1: its op tables, and per-layer flags that say so.

The flags say what the graph tells about each layer: illegal element types, inputs already
on the chip, Activate fusion, which operand is the weight.

:func:`placed` is what :class:`hwcc.targets.tpu.target.TPU` prices and what the payload
(:mod:`hwcc.targets.tpu.payload`) lists; the rules are in the target's module docstring
(Vector unit, Legality).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from hwcc.ir import Graph, Node, dtypes
from hwcc.ir.workload import Layer, Workload

MATRIX = ("conv", "depthwise_conv", "grouped_conv", "gemm", "matmul")
RECURRENT = ("lstm", "gru", "rnn")
VECTOR = ("elementwise", "pool", "norm")
ACTIVATE = frozenset(
    (
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "HardSigmoid",
        "Tanh",
        "Clip",
        "HardSwish",
        "Elu",
        "Selu",
        "Softplus",
        "Softsign",
        "Abs",
        "Neg",
        "Add",
        "Sub",
        "Mul",
        "Max",
        "Min",
        "Sum",
        "QuantizeLinear",
        "DequantizeLinear",
        "BatchNormalization",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
    )
)
FREE = ("DequantizeLinear", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
WALK = ("DequantizeLinear", "Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten")
OPERANDS = {
    "QLinearMatMul": (0, 3),
    "QLinearConv": (0, 3),
    "LSTM": (0, 1, 2),
    "GRU": (0, 1, 2),
    "RNN": (0, 1, 2),
}
FLOATS = {
    dtypes.FLOAT: "float32",
    dtypes.FLOAT16: "float16",
    dtypes.BFLOAT16: "bfloat16",
    dtypes.DOUBLE: "float64",
}
FUSED, ON_CHIP, DTYPE = "tpu.fused=", "tpu.on_chip", "tpu.dtype="
WEIGHT_FIRST, NO_WEIGHTS = "tpu.weight_first", "tpu.no_weights"


def flag(layer: Layer, prefix: str) -> str | None:
    return next((f[len(prefix) :] for f in layer.flags if f.startswith(prefix)), None)


def stored_type(g: Graph, name: str) -> int:
    """The element type a tensor is stored in: behind DequantizeLinear, its quantized type."""
    while (p := g.producer(name)) is not None and p.op_type in WALK:
        if p.op_type == "DequantizeLinear":
            return g.tensors[p.inputs[0]].elem_type
        name = p.inputs[0]
    return g.tensors[name].elem_type


def illegal_type(elem_type: int) -> str | None:
    """The name of an element type the matrix unit cannot take, or None."""
    if elem_type in FLOATS:
        return FLOATS[elem_type]
    bits = 8 * dtypes.BYTES.get(elem_type, 1)
    return f"int{bits}" if bits > 16 else None


def placed(graph: Graph, work: Workload, supports: Callable[[Layer], str | None]) -> list[Layer]:
    """The layers with flags saying what the graph tells about them on the TPU.

    ``tpu.dtype=`` names an illegal element type of an operand; ``tpu.on_chip`` marks a
    vector node whose inputs all come from the TPU; ``tpu.fused=`` names the layer in
    whose Activate pass it runs; ``tpu.weight_first`` marks a ``W·X`` multiply and
    ``tpu.no_weights`` one of two activations. A matrix layer's ``act_bits`` becomes the
    width stored behind reshapes and DequantizeLinear. ``supports`` is the target's own
    check (:meth:`hwcc.targets.tpu.target.TPU.supports`): a node it rejects runs on the
    host, so its outputs are not on the chip.
    """
    const = {n for n, t in graph.tensors.items() if t.data is not None}
    for node, x in zip(graph.nodes, work.layers):
        if x.kind == "constant":
            const.update(node.outputs)
    on_chip: set[str] = set()
    owner: dict[str, str] = {}  # tensor -> the layer whose pass produced it
    out = []
    for node, x in zip(graph.nodes, work.layers):
        acts = [t for t in node.inputs if t and t not in const]
        flags, widths = _flags(graph, node, x, acts, on_chip, owner)
        y = dataclasses.replace(x, flags=x.flags + tuple(flags), **widths) if flags or widths else x
        out.append(y)
        if x.kind == "constant" or supports(y) is not None:
            continue
        # A fused node extends its owner's pass; a free one (DequantizeLinear, a reshape)
        # passes its input's owner on; any other node makes a pass of its own.
        src = flag(y, FUSED) or (owner.get(acts[0]) if node.op_type in FREE and acts else node.name)
        for t in node.outputs:
            on_chip.add(t)
            if src is not None:
                owner[t] = src
    return out


def _flags(
    graph: Graph,
    node: Node,
    x: Layer,
    acts: list[str],
    on_chip: set[str],
    owner: dict[str, str],
) -> tuple[list[str], dict[str, int]]:
    """Flags for one node, and the activation width the matrix unit reads, if known."""
    if x.kind == "constant":
        return [], {}
    if x.kind in MATRIX + RECURRENT:
        operands = [
            node.inputs[i]
            for i in OPERANDS.get(node.op_type, (0, 1))
            if i < len(node.inputs) and node.inputs[i]
        ]
    elif acts and all(t in on_chip for t in acts):
        t = acts[0]
        sole = (
            len(set(acts)) == 1
            and t in owner
            and not graph.is_graph_output(t)
            and len(graph.users(t)) == 1
            and node.op_type in ACTIVATE
        )
        return [ON_CHIP] + ([FUSED + owner[t]] if sole else []), {}
    else:
        operands = [t for t in acts if t not in on_chip]
    types = {t: stored_type(graph, t) for t in operands}
    bad = next((n for e in types.values() if (n := illegal_type(e))), None)
    if bad is not None:
        return [DTYPE + bad], {}
    if x.kind not in MATRIX + RECURRENT or not any(t in acts for t in types):
        return [], {}
    if all(t in acts for t in operands):  # a Gemm whose only constant is its bias
        return [NO_WEIGHTS], {}
    # A constant first operand (W·X) is multiplied as (Xᵀ·Wᵀ): rows and columns swap.
    first = [WEIGHT_FIRST] if x.kind in ("gemm", "matmul") and operands[0] not in acts else []
    # Behind reshapes and DequantizeLinear the matrix unit reads the stored integers.
    return first, {"act_bits": max(8 * dtypes.BYTES.get(types[t], 1) for t in types if t in acts)}
