"""Graphs for the gpu target's tests (tests/targets/test_gpu.py), loaded by hwcc.

:func:`graph_of` writes a model with ``onnx.helper`` and loads it with :func:`hwcc.load`;
:func:`fc`, :func:`matmul` and :func:`conv` are one-node graphs, :func:`small_net` a
five-node one with a view and a repeated Relu.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import hwcc

__all__ = ["conv", "fc", "graph_of", "matmul", "small_net", "vi"]


def graph_of(nodes, inputs, outputs, inits=(), domains=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains]
    return hwcc.load(helper.make_model(g, opset_imports=opsets, ir_version=10))


def vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def fc(rows, cols, batch=1, dtype=np.float32, weights=None):
    """One Gemm b = a·Wᵀ with W (rows=outputs, cols=inputs) a constant, as in EIE Table III."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w = np.ones((rows, cols), dtype) if weights is None else weights.astype(dtype)
    return graph_of(
        [helper.make_node("Gemm", ["a", "W"], ["b"], transB=1)],
        [vi("a", [batch, cols], elem)],
        [vi("b", [batch, rows], elem)],
        [numpy_helper.from_array(w, "W")],
    )


def matmul(n, k, m, elem=TensorProto.FLOAT):
    """Y = A·B with both operands activations (no constant weights)."""
    return graph_of(
        [helper.make_node("MatMul", ["A", "B"], ["Y"])],
        [vi("A", [n, k], elem), vi("B", [k, m], elem)],
        [vi("Y", [n, m], elem)],
    )


def conv(c, m, hw, k, winograd=False):
    w = numpy_helper.from_array(np.ones((m, c, k, k), np.float32), "W")
    g = graph_of(
        [helper.make_node("Conv", ["x", "W"], ["y"], pads=[k // 2] * 4)],
        [vi("x", [1, c, hw, hw])],
        [vi("y", [1, m, hw, hw])],
        [w],
    )
    if winograd:
        g.nodes[0].meta["winograd"] = True
    return g


def small_net():
    """conv 3x3 -> relu -> relu -> flatten -> gemm: a Flatten view and a repeated Relu."""
    w = numpy_helper.from_array(np.full((8, 3, 3, 3), 0.1, np.float32), "W")
    fcw = numpy_helper.from_array(np.full((10, 8 * 8 * 8), 0.01, np.float32), "F")
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r1"]),
        helper.make_node("Relu", ["r1"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", "F"], ["y"], transB=1),
    ]
    return graph_of(nodes, [vi("x", [1, 3, 8, 8])], [vi("y", [1, 10])], [w, fcw])
