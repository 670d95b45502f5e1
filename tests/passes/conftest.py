"""Fixtures shared by the pass tests: real models, torch exports and the digits data. The
check every pass test makes on a rewritten graph (onnx.checker, and numbers in
onnxruntime) is :func:`hwcc.testing.assert_equivalent`."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import onnx
import pytest

import hwcc
from hwcc.ir import Graph, onnx_io
from hwcc.models import digits, model_path

LIGHT_MODELS = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


@pytest.fixture
def light_model():
    """Loads ``light_<name>.onnx`` from onnx's backend test data (weights are
    ConstantOfShape nodes, so the files are small)."""

    def load(name: str) -> Graph:
        path = os.path.join(LIGHT_MODELS, f"light_{name}.onnx")
        if not os.path.exists(path):
            pytest.skip(f"this onnx install has no {path}")
        return hwcc.load(path)

    return load


@pytest.fixture
def export_torch():
    """Exports a torch module in eval mode with the TorchScript exporter, keeping
    BatchNormalization and every constant (``do_constant_folding=False``)."""
    torch = pytest.importorskip("torch")

    def export(module, *args, input_shapes=None, dynamic_axes=None, opset=17) -> Graph:
        names = [f"x{i}" for i in range(len(args))]
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                args,
                buf,
                dynamo=False,
                opset_version=opset,
                training=torch.onnx.TrainingMode.EVAL,
                do_constant_folding=False,
                input_names=names,
                output_names=["y"],
                dynamic_axes=dynamic_axes,
            )
        return hwcc.load(onnx.load_from_string(buf.getvalue()), input_shapes=input_shapes)

    return export


# ---------------------------------------------------------------------- the digits models
@pytest.fixture(scope="module")
def train_x() -> np.ndarray:
    """The digits train split's images."""
    return digits.load_split("train")[0]


@pytest.fixture(scope="module")
def digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The digits test split: images and labels."""
    return digits.load_split("test")


@pytest.fixture(scope="module")
def lenet5() -> Graph:
    return hwcc.load("zoo:lenet5-digits")


@pytest.fixture(scope="module")
def lenet300() -> Graph:
    return onnx_io.load(model_path("lenet300-digits"))


@pytest.fixture
def digits_accuracy():
    """``accuracy(graph, folder, name)``: top-1 on the digits test split, in onnxruntime
    (the model is written to ``folder/name.onnx`` first)."""

    def accuracy(graph: Graph, folder, name: str) -> float:
        return digits.onnx_accuracy(onnx_io.save(graph, folder / f"{name}.onnx"), "test")

    return accuracy


@pytest.fixture
def digits_logits():
    """``logits(graph)``: the logits of every test sample, in onnxruntime (the digits models
    take a batch of 1)."""
    from hwcc.passes.lib.calibration import Runner

    def logits(graph: Graph) -> np.ndarray:
        runner = Runner(graph)
        x = digits.load_split("test")[0]
        return np.concatenate([runner.run({"input": sample[None]})["logits"] for sample in x])

    return logits
