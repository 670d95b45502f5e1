"""Activation density and activation vectors measured on data in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwcc
from hwcc.data.activations import capture_activations, compute_inputs, measure_density
from hwcc.errors import HwccError

W1 = np.array([[1, 0, -1], [0, 1, 0], [0, 0, 1], [1, -1, 0]], dtype=np.float32)
W2 = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
SAMPLES = np.array([[[1, -2, 0, 3]], [[0, 0, 0, 1]]], dtype=np.float32)  # 2 samples of [1, 4]


def mlp(batch: int = 1) -> hwcc.Graph:
    """x[batch,4] -> MatMul fc1 -> Relu -> Gemm fc2 -> y[batch,2]."""
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "W2"], ["y"], name="fc2"),
    ]
    g = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2])],
        [numpy_helper.from_array(W1, "W1"), numpy_helper.from_array(W2, "W2")],
    )
    return hwcc.load(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    )


def test_compute_layers_and_their_inputs():
    assert compute_inputs(mlp()) == {"fc1": "x", "fc2": "r"}


def test_density_by_hand():
    # sample 1: x = [1,-2,0,3] (3 of 4 non-zero)
    #           h = x·W1 = [1+3, -2-3, -1] = [4,-5,-1] -> relu [4,0,0]
    # sample 2: x = [0,0,0,1] (1 of 4)
    #           h = [1, -1, 0]                     -> relu [1,0,0]
    # fc1 input: (3 + 1) / 8 = 0.5; fc2 input: (1 + 1) / 6 = 1/3
    d = measure_density(mlp(), {"x": SAMPLES.reshape(2, 4)})
    assert d == pytest.approx({"fc1": 0.5, "fc2": 1 / 3}, abs=1e-12)


def test_activations_are_the_layer_inputs():
    acts = capture_activations(mlp(), {"x": SAMPLES.reshape(2, 4)})
    np.testing.assert_array_equal(acts["fc1"], SAMPLES.reshape(2, 4))
    np.testing.assert_array_equal(acts["fc2"], np.maximum(SAMPLES.reshape(2, 4) @ W1, 0))


def test_npz_with_labels_and_a_batched_model(tmp_path):
    path = tmp_path / "calib.npz"
    np.savez(path, x=SAMPLES.reshape(2, 4), labels=np.array([0, 1]))
    assert measure_density(mlp(batch=2), path) == pytest.approx({"fc1": 0.5, "fc2": 1 / 3})
    assert measure_density(mlp(), path, max_samples=1) == pytest.approx({"fc1": 0.75, "fc2": 1 / 3})


def test_errors_say_what_to_do(tmp_path):
    with pytest.raises(HwccError, match="no array for model input"):
        measure_density(mlp(), {"y": SAMPLES})
    with pytest.raises(HwccError, match="not found"):
        measure_density(mlp(), tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(HwccError, match="not a readable"):
        measure_density(mlp(), tmp_path / "bad.npz")
    with pytest.raises(HwccError, match="do not split"):
        measure_density(mlp(batch=2), {"x": np.ones((3, 4), np.float32)})
