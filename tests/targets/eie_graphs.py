"""Graphs for the EIE target's tests (tests/targets/test_eie.py), loaded by hwcc.

:func:`graph_of` writes a model with ``onnx.helper`` and loads it with :func:`hwcc.load`;
:func:`fc` is one FC layer (MatMul or Gemm, optionally followed by a Relu).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import hwcc

__all__ = ["fc", "graph_of"]


def graph_of(nodes, inputs, outputs, inits) -> hwcc.Graph:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return hwcc.load(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    )


def fc(
    W: np.ndarray, *, gemm: bool = False, relu: bool = False, batch: int = 1, dtype=np.float32
) -> hwcc.Graph:
    """One FC layer ``y = W x`` named "fc" (W: rows = outputs), as MatMul(x, Wᵀ) or
    Gemm(transB=1)."""
    rows, cols = W.shape
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    if gemm:
        nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1)]
        init = numpy_helper.from_array(W.astype(dtype), "W")
    else:
        nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="fc")]
        init = numpy_helper.from_array(np.ascontiguousarray(W.T).astype(dtype), "W")
    nodes += [helper.make_node("Relu", ["h"], ["y"], name="relu")] if relu else []
    return graph_of(
        nodes,
        [helper.make_tensor_value_info("x", elem, [batch, cols])],
        [helper.make_tensor_value_info("y" if relu else "h", elem, [batch, rows])],
        [init],
    )
