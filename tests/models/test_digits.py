"""Bundled digits data, the trained digits models, and the training script."""

from __future__ import annotations

import collections
import dataclasses
import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hwcc import models
from hwcc.errors import HwccError
from hwcc.models import digits, train_digits, zoo

TRAINED = ["lenet300-digits", "lenet5-digits", "mobilenet-digits", "resnet-digits"]


def test_raw_data_is_the_uci_digits():
    images, labels = digits.load_raw()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert images.max() == 16 and images.min() == 0
    assert labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert (digits.DATA_DIR / "DIGITS_LICENSE.txt").exists()


def test_split_is_fixed_stratified_and_disjoint():
    _, labels = digits.load_raw()
    split = digits.split_indices(labels)
    assert len(split["train"]) + len(split["test"]) == len(labels)
    assert not set(split["train"]) & set(split["test"])
    per_class = np.bincount(labels[split["test"]]) / np.bincount(labels)
    assert np.allclose(per_class, 0.2, atol=0.01)
    again = digits.split_indices(labels)
    assert all(np.array_equal(split[k], again[k]) for k in split)


def test_load_split():
    x, y = digits.load_split("test")
    assert x.shape == (359, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() == 1.0
    assert digits.load_split("train")[0].shape == (1438, 1, 8, 8)
    with pytest.raises(HwccError, match="unknown digits split 'val'"):
        digits.load_split("val")


def test_write_npz(tmp_path):
    path = digits.write_npz("test", tmp_path / "sub" / "calib.npz", input_name="x")
    with np.load(path) as data:
        assert sorted(data.files) == ["labels", "x"]
        x, y = digits.load_split("test")
        np.testing.assert_array_equal(data["x"], x)
        np.testing.assert_array_equal(data["labels"], y)
    assert [p.name for p in path.parent.iterdir()] == ["calib.npz"]


@pytest.mark.parametrize("name", TRAINED)
def test_trained_accuracy_in_onnxruntime(name):
    live = digits.onnx_accuracy(models.model_path(name), "test")
    record = zoo.read_zoo_json()["models"][name]
    assert live >= 0.95
    assert live == pytest.approx(record["test_accuracy"], abs=1e-12)
    entry = {e.name: e for e in models.list_models()}[name]
    assert entry.kind == "trained" and entry.accuracy == record["test_accuracy"]


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_onnx(name):
    path = models.model_path(name)
    record = zoo.read_zoo_json()["models"][name]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["onnx_sha256"]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    graph = proto.graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["logits"]
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 8, 8]
    weights = {t.name for t in graph.initializer}
    assert weights <= {x for n in graph.node for x in n.input}
    assert not [n for n in graph.node if n.op_type == "Identity"]
    assert record["params"] == sum(p.numel() for p in models.build_torch(name).parameters())


@pytest.mark.parametrize("name", ["mobilenet-digits", "resnet-digits"])
def test_batchnorm_kept_with_initializer_parameters(name):
    graph = onnx.load(str(models.model_path(name))).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    assert ops["BatchNormalization"] >= 5 and ops["Add"] >= 2
    weights = {t.name for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "BatchNormalization":
            assert all(x in weights for x in node.input[1:]), node.name
    if name == "mobilenet-digits":
        assert any(
            a.name == "group" and a.i > 1
            for n in graph.node
            if n.op_type == "Conv"
            for a in n.attribute
        )
    else:
        convs = [n for n in graph.node if n.op_type == "Conv"]
        kernels = [next(a.ints for a in n.attribute if a.name == "kernel_shape") for n in convs]
        assert [1, 1] in [list(k) for k in kernels]  # the projection shortcut


@pytest.mark.parametrize("name", TRAINED)
def test_build_torch_loads_trained_weights(name):
    module = models.build_torch(name)
    assert not module.training
    (x,) = models.example_inputs(name)
    session = ort.InferenceSession(str(models.model_path(name)), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_training_is_deterministic():
    settings = dataclasses.replace(train_digits.default_settings("lenet300-digits"), epochs=1)
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    first = train_digits.train("lenet300-digits", settings).state_dict()
    second = train_digits.train("lenet300-digits", settings).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = train_digits.train(
        "lenet300-digits", dataclasses.replace(settings, seed=1)
    ).state_dict()
    assert not torch.equal(first["1.weight"], other["1.weight"])
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == was_deterministic


def test_trained_export_round_trip(tmp_path):
    settings = dataclasses.replace(train_digits.default_settings("resnet-digits"), epochs=1)
    model = train_digits.train("resnet-digits", settings)
    path = train_digits.export_trained(model, "resnet-digits", tmp_path / "r.onnx")
    (x,) = models.example_inputs("resnet-digits")
    (result,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()}
    )
    with torch.no_grad():
        np.testing.assert_allclose(result, model(x).numpy(), rtol=1e-4, atol=1e-5)
