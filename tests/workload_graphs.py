"""One-node models for the workload view's tests (tests/test_workload*.py), loaded by hwcc.

:func:`graph_of` writes a model with ``onnx.helper`` and loads it with :func:`hwcc.load`;
:func:`one_layer` analyses a single node; :func:`rand` draws weights with no zeros.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import hwcc
from hwcc.ir.workload import Layer, analyze

__all__ = ["F32", "graph_of", "one_layer", "rand"]

F32 = TensorProto.FLOAT


def graph_of(nodes, inputs, inits=(), outputs=("y",), value_info=(), opsets=(("", 17),)):
    """Load a model made of ``nodes``; ``inputs`` maps name -> shape, ``inits`` name -> array."""
    g = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info(n, F32, s) for n, s in dict(inputs).items()],
        [helper.make_tensor_value_info(n, F32, None) for n in outputs],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in dict(inits).items()],
        value_info=list(value_info),
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    return hwcc.load(model)


def one_layer(op, inputs, inits=(), outputs=("y",), **attrs) -> Layer:
    names = list(dict(inputs)) + list(dict(inits))
    node = helper.make_node(op, names, list(outputs), name="n", **attrs)
    w = analyze(graph_of([node], inputs, inits, outputs))
    return w.layer("n")


def rand(*shape, dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype) + 3  # no zeros
