"""finetune's clear errors for what it cannot run: an unsupported op named at construction,
before any training step; unsupported attributes and outputs refused; bad arguments.

Torch runs on one thread (the ``one_thread`` fixture in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import model_of as _model
from finetune_graphs import rand as _rand
from finetune_graphs import zoo
from onnx import helper

from hwcc.errors import HwccError
from hwcc.train.finetune import finetune
from hwcc.train.graph_module import to_torch

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- errors
def test_unsupported_op_is_named_at_construction():
    N = helper.make_node
    graph = _model(
        [N("Relu", ["x"], ["r"]), N("RandomNormalLike", ["r"], ["y"], name="head")],
        {"x": [1, 4]},
        {},
        ["y"],
    )
    with pytest.raises(HwccError) as err:
        to_torch(graph)
    text = str(err.value)
    assert (
        "RandomNormalLike" in text and "'head'" in text and "hint" in text and "Conv" in text
    )  # what, where, what to do
    with pytest.raises(HwccError, match="RandomNormalLike"):  # before any training step
        finetune(graph, np.zeros((4, 4), np.float32), np.zeros(4, np.int64), steps=5)


def test_unsupported_attribute_and_output_are_refused_at_construction():
    N = helper.make_node
    r = np.random.default_rng(0)
    ceiled = _model(
        [N("LpPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], ceil_mode=1)],
        {"x": [1, 2, 5, 5]},
        {},
        ["y"],
        opset=18,
    )
    with pytest.raises(HwccError, match="'pool'.*ceil_mode"):
        to_torch(ceiled)
    stats = {n: np.abs(_rand(r, 2)) for n in ("s", "b", "m", "v")}
    outs = ["y", "mean", "var", "saved_mean", "saved_var"]
    saved = _model(
        [N("BatchNormalization", ["x", "s", "b", "m", "v"], outs, name="bn")],
        {"x": [1, 2, 3]},
        stats,
        outs,
        opset=9,
    )
    with pytest.raises(HwccError, match="'bn'.*saved_mean"):
        to_torch(saved)


def test_bad_arguments_are_clear_errors(digits):
    (x, y), _ = digits
    graph = zoo("lenet300-digits")
    with pytest.raises(HwccError, match="labels or a teacher"):
        finetune(graph, x, steps=1)
    with pytest.raises(HwccError, match="labels for"):
        finetune(graph, x, y[:10], steps=1)
    with pytest.raises(HwccError, match="no data for input"):
        finetune(graph, {"image": x}, y, steps=1)
    with pytest.raises(HwccError, match="optimizer"):
        finetune(graph, x, y, steps=1, optimizer="lbfgs")
