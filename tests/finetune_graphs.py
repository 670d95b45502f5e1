"""Graphs and tolerances for the finetune tests (tests/test_finetune_*.py): a zoo model,
its outputs in onnxruntime one sample at a time, random weights, and a one-graph model
made with ``onnx.helper``."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from hwcc.ir import Graph, onnx_io
from hwcc.ir.verify import Session
from hwcc.models import model_path

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
