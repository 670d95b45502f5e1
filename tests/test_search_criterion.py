"""The search's pruning criterion (SearchConfig.criterion): a step applied with the
``activation`` criterion and a network's activations measured once picks the channels
that pruning on the data itself picks, unlike ``l2``; a compile measures each
network it steps from once and records the criterion; an unknown one is refused."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwcc
from hwcc.errors import HwccError
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.transform import PassContext
from hwcc.passes.lib import importance
from hwcc.search.config import SearchConfig
from hwcc.search.space import apply_step, units
from tests.finetune_graphs import model_of


def _constant_channel():
    """Conv 2 -> 6 (ReLU) -> Conv 6 -> 3, channel 2 with the smallest filter and a bias
    of 3: a constant the second conv needs."""
    r = np.random.default_rng(0)
    w1 = r.uniform(0.3, 0.6, (6, 2, 1, 1)).astype(np.float32)
    w1[2] = 0.01
    b1 = r.uniform(0.0, 0.1, 6).astype(np.float32)
    b1[2] = 3.0
    w2 = r.uniform(-1, 1, (3, 6, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Conv", ["a", "w2"], ["y"]),
    ]
    return model_of(nodes, {"x": [1, 2, 3, 3]}, {"w1": w1, "b1": b1, "w2": w2}, ["y"])


def _data():
    return {"x": np.random.default_rng(1).uniform(0, 1, (8, 2, 3, 3)).astype(np.float32)}


def test_a_step_with_the_activation_criterion_prunes_as_the_data_does():
    g, data = _constant_channel(), _data()
    unit = units(g, ["prune_channels"])[0]
    step = unit.steps[0]  # remove one channel
    knobs = SearchConfig(criterion="activation").pass_knobs()
    got = apply_step(g, unit, step, knobs, importance.activation_means(g, data))
    ctx = PassContext(knobs={"prune_channels": {**step.knobs, **knobs}}, data=data)
    want = PassManager(["prune_channels"], ctx).run(g).graph
    by_l2 = apply_step(g, unit, step, SearchConfig(criterion="l2").pass_knobs())
    assert np.array_equal(got.initializer("w1"), want.initializer("w1"))
    assert np.any(got.initializer("w1")[:, 0] == np.float32(0.01))  # the constant stayed
    assert not np.any(by_l2.initializer("w1")[:, 0] == np.float32(0.01))  # l2 took it


def test_an_unknown_criterion_is_refused():
    with pytest.raises(HwccError, match="not a pruning criterion"):
        SearchConfig(criterion="largest")


def _compile(criterion: str, iterations: int):
    """lenet5-digits for Eyeriss at 90 %, channel pruning alone, a few short steps."""
    return hwcc.compile(
        "zoo:lenet5-digits",
        "eyeriss",
        "90%",
        data="zoo:digits",
        criterion=criterion,
        passes=("prune_channels",),
        max_iterations=iterations,
        short_term_steps=iterations,
        long_term_steps=0,
    )


def test_a_compile_measures_each_network_once_and_records_the_criterion(monkeypatch):
    calls = []
    real = importance.activation_means
    monkeypatch.setattr(hwcc.api, "activation_means", lambda g, d: calls.append(g) or real(g, d))
    result = _compile("activation", 2)
    summary = result.summary.to_json()
    assert summary["options"]["criterion"] == "activation"
    # one measurement per network the loop stepped from (a halved step reuses it)
    tried = {p["iteration"] for p in summary["proposals"]}
    assert len(calls) == len(tried) >= 1
    assert len({id(g) for g in calls}) == len(calls)


def test_activation_is_the_default_and_l2_measures_nothing(monkeypatch):
    assert SearchConfig().criterion == "activation"
    calls = []
    monkeypatch.setattr(hwcc.api, "activation_means", lambda g, d: calls.append(g))
    result = _compile("l2", 1)
    assert result.summary.options["criterion"] == "l2" and calls == []
