"""A layer alone, rebuilt from its workload as a one-node graph: how the CPU prices a layer
for an accelerator whose host it is.

Convolutions, pooling, Gemm/MatMul and recurrent layers are rebuilt from their dims;
layers whose workload does not say enough (data movement, element-wise ops, norms) become
a stand-in of the same size, named in the note (:func:`layer_graph`).
"""

from __future__ import annotations

import math

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.onnx_io import infer_shapes
from hwcc.ir.workload import MAC_KINDS, Layer

__all__ = ["BUILT_FROM_DIMS", "layer_graph"]

BUILT_FROM_DIMS = (*MAC_KINDS, "pool")  # rebuilt from their dims, batch included
_BINARY = (
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "Mod",
    "And",
    "Or",
    "Xor",
    "BitShift",
    "PRelu",
)
_UNARY = (
    "LayerNormalization",
    "Softmax",
    "LogSoftmax",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Sqrt",
    "Abs",
    "Neg",
    "Erf",
    "Reciprocal",
    "Clip",
    "LeakyRelu",
    "HardSigmoid",
    "HardSwish",
    "Elu",
    "Softplus",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Selu",
    "Celu",
    "Softsign",
)
_ALIASING = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")


def layer_graph(layer: Layer) -> tuple[Graph, str]:
    """A one-node graph rebuilt from ``layer``'s workload, and a note if it is a stand-in.

    Raises:
        HwccError: the workload does not say enough to rebuild the layer (unknown op or shapes).
    """
    if not layer.known or layer.kind in ("unknown", "constant"):
        raise HwccError(
            f"cannot measure {layer.name} ({layer.op_type}) on the CPU: "
            f"{layer.reason or layer.kind}",
            "fix the shapes, or price the model as a whole graph",
        )
    g, k, note = Graph(layer.name), layer.kind, ""
    rnd = lambda *s: np.random.default_rng(0).standard_normal(s).astype(np.float32)  # noqa: E731
    two_d = lambda v, d: list(v)[-2:] if len(v) >= 2 else [d] * (2 - len(v)) + list(v)  # noqa: E731
    if k in ("conv", "depthwise_conv", "grouped_conv", "conv_transpose", "pool"):
        g.add_input("x", 1, [layer.N, layer.C, layer.H, layer.W])
        pads = list(layer.pads) if len(layer.pads) == 4 else [0, 0, 0, 0]
        if len(layer.pads) == 2:  # one spatial dim, rebuilt as H = 1: its pads go on W
            pads = [0, layer.pads[0], 0, layer.pads[1]]
        attrs = {
            "kernel_shape": [layer.R, layer.S],
            "strides": two_d(layer.stride, 1),
            "pads": pads,
        }
        if k == "pool":
            ins = ["x"]
            attrs = {} if layer.op_type.startswith("Global") else attrs
        else:
            attrs.update(group=layer.groups, dilations=two_d(layer.dilation, 1))
            shape = (
                [layer.C, layer.M // layer.groups]
                if k == "conv_transpose"
                else [layer.M, layer.C // layer.groups]
            ) + [layer.R, layer.S]
            ins = ["x", g.add_initializer("w", rnd(*shape)).name]
            if layer.params > math.prod(shape):
                ins.append(g.add_initializer("b", rnd(layer.M)).name)
            if k == "conv_transpose":
                attrs.pop("pads")
        g.add_node(layer.op_type if layer.op_type in _POOL_OR_CONV else "Conv", ins, ["y"], attrs)
    elif k in ("gemm", "matmul"):
        g.add_input("a", 1, [layer.N, layer.C])
        ins = [
            "a",
            g.add_initializer("b", rnd(layer.C, layer.M)).name
            if layer.params
            else g.add_input("b", 1, [layer.C, layer.M]).name,
        ]
        if k == "gemm" and layer.params > layer.C * layer.M:
            ins.append(g.add_initializer("c", rnd(layer.M)).name)
        g.add_node("Gemm" if k == "gemm" else "MatMul", ins, ["y"])
    elif k in ("lstm", "gru", "rnn"):
        d, gm = layer.directions, layer.gates * layer.M
        g.add_input("x", 1, [layer.seq_len, layer.N, layer.C])
        ins = [
            "x",
            g.add_initializer("w", rnd(d, gm, layer.C)).name,
            g.add_initializer("r", rnd(d, gm, layer.M)).name,
        ]
        if layer.params > d * gm * (layer.C + layer.M):
            ins.append(g.add_initializer("b", rnd(d, 2 * gm)).name)
        direction = "bidirectional" if d == 2 else "forward"
        g.add_node(layer.op_type, ins, ["y"], {"hidden_size": layer.M, "direction": direction})
    else:
        note = _stand_in(g, layer)
    g.outputs.append("y")
    infer_shapes(g)
    return g, note


_POOL_OR_CONV = (
    "Conv",
    "ConvTranspose",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
)


def _stand_in(g: Graph, layer: Layer) -> str:
    """Element-wise, normalization, softmax, reductions and data movement from shapes alone."""
    op, shape = layer.op_type, list(layer.in_shape or layer.out_shape or [1])
    out = list(layer.out_shape or shape)
    g.add_input("x", 1, shape)
    if layer.kind == "data_movement":
        if op in _ALIASING:
            g.add_initializer("s", np.array(out, np.int64))
            g.add_node("Reshape", ["x", "s"], ["y"])
            return f"{op} priced as a Reshape of the same shape"
        g.inputs.clear()
        g.add_input("x", 1, out)
        g.add_node("Concat", ["x"], ["y"], {"axis": 0})
        return f"{op} priced as a copy of its output"
    if op in _BINARY and op not in ("Mod", "And", "Or", "Xor", "BitShift", "PRelu"):
        g.add_input("x2", 1, shape)
        g.add_node(op, ["x", "x2"], ["y"])
        return "" if op not in ("Sum", "Mean") else f"{op} priced with two inputs"
    if op == "BatchNormalization":
        ps = [g.add_initializer(f"p{i}", np.ones(shape[1], np.float32)).name for i in range(4)]
        g.add_node(op, ["x", *ps], ["y"])
        return ""
    if op in _UNARY:
        ins = ["x"] + (
            [g.add_initializer("sc", np.ones(shape[-1], np.float32)).name]
            if op == "LayerNormalization"
            else []
        )
        g.add_node(op, ins, ["y"])
        return ""
    g.add_node(
        "ReduceSum" if layer.kind == "other" else "Relu",
        ["x"],
        ["y"],
        {"keepdims": 1} if layer.kind == "other" else {},
    )
    return f"{op} priced as a {'ReduceSum' if layer.kind == 'other' else 'Relu'} of the same input"
