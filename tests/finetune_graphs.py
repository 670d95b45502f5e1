"""Graphs and tolerances for the finetune tests (tests/test_finetune_*.py): a zoo model,
its outputs in onnxruntime one sample at a time, random weights, and a one-graph model
made with ``onnx.helper`` (float, or typed after its inputs), and the check that the torch
executor agrees with onnxruntime on one."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from hwcc.ir import Graph, onnx_io
from hwcc.ir.verify import Session, run_onnx
from hwcc.models import model_path
from hwcc.train.graph_module import to_torch

RTOL, ATOL = 1e-4, 1e-5


def zoo(name: str) -> Graph:
    return onnx_io.load(model_path(name))


def ort_per_sample(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The first output of ``graph`` in onnxruntime, one sample at a time (batch 1)."""
    session = Session(graph)
    name = graph.real_inputs()[0]
    return np.concatenate([session.run({name: x[i : i + 1]})[0] for i in range(len(x))])


def rand(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def model_of(nodes, inputs: dict, inits: dict, outputs: list[str], opset: int = 17) -> Graph:
    g = helper.make_graph(
        nodes,
        "case",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return onnx_io.from_proto(model)  # onnxruntime, the reference, checks the model itself


def typed_model(nodes, feeds: dict, inits: dict, outputs: dict, opset: int = 17) -> Graph:
    """A one-graph model whose inputs have ``feeds``' dtypes and shapes; ``inits`` name ->
    array, ``outputs`` name -> dtype (for ops whose operands are not all float)."""

    def info(name, dtype, shape):
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), shape)

    g = helper.make_graph(
        nodes,
        "case",
        [info(n, v.dtype, list(v.shape)) for n, v in feeds.items()],
        [info(n, np.dtype(t), None) for n, t in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    return onnx_io.from_proto(m)


def check_against_ort(nodes, feeds, inits, outputs, *, opset: int, rtol: float, atol: float):
    """The torch executor's outputs equal onnxruntime's on :func:`typed_model`: shape,
    dtype and values, to ``rtol``/``atol``."""
    graph = typed_model(nodes, feeds, inits, outputs, opset)
    ref = run_onnx(graph, feeds)
    out = to_torch(graph)(**feeds)
    assert len(out) == len(outputs)
    for name, o, r in zip(outputs, out, ref):
        o = o.detach().numpy()
        assert o.shape == r.shape, name
        assert o.dtype == r.dtype, name
        np.testing.assert_allclose(o, r, rtol=rtol, atol=atol, err_msg=name)
