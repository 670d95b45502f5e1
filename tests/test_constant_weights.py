"""Weights held in ``Constant`` nodes (as paddle2onnx writes them: PP-OCRv4's detector has
342 Constant nodes and no initializer): the compile fine-tunes them, and the fine-tuner
says plainly when a graph has no weights at all."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwcc
from hwcc.errors import HwccError
from hwcc.ir import onnx_io
from hwcc.train.finetune import finetune


def _constant_weights_model():
    rng = np.random.default_rng(0)
    values = {
        "w": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),
        "b": rng.normal(0, 0.1, (8,)).astype(np.float32),
        "fw": rng.normal(0, 0.3, (4, 8)).astype(np.float32),
        "fb": np.zeros(4, np.float32),
    }
    nodes = [
        helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v, k))
        for k, v in values.items()
    ]
    nodes += [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx_io.load(model)


def test_a_model_whose_weights_are_constant_nodes_compiles(tmp_path):
    g = _constant_weights_model()
    assert not g.initializers
    data = tmp_path / "d.npz"
    x = np.random.default_rng(1).uniform(0, 1, (64, 3, 8, 8)).astype(np.float32)
    np.savez(data, x=x)
    result = hwcc.compile(
        g, "eyeriss", "90%", data=str(data), max_iterations=1, short_term_steps=2,
        long_term_steps=2, max_accuracy_drop=None,
    )  # fmt: skip
    assert result.summary.options["lr"] is not None  # the rate check fine-tuned the weights
    assert result.graph.initializers


def test_a_graph_without_weights_is_a_clear_error():
    g = _constant_weights_model()
    x = np.zeros((4, 3, 8, 8), np.float32)
    with pytest.raises(HwccError, match="no weights to fine-tune") as e:
        finetune(g, {"x": x}, steps=1, teacher=np.zeros((4, 4), np.float32))
    assert "fold_constants" in e.value.hint
