"""The learning-rate check of a compile that distils its input alone
(hwcc.search.finetuning.probed): the default rate kept where ten steps at it leave the
unchanged model agreeing with itself, cut tenfold until they do where the network is sharp,
a notice either way the rate had to move, and nothing checked where labels or a rate were
given."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwcc
from hwcc.data.evaluate import Dataset
from hwcc.data.metrics import METRICS
from hwcc.search.config import SearchConfig
from hwcc.search.finetuning import PROBE_CUTS, PROBE_FLOOR, probed, teacher_outputs
from hwcc.train.finetune import default_lr
from tests.finetune_graphs import model_of, ort_per_sample

TOP1 = METRICS["top1"]


def _mlp(w1_scale: float = 0.25):
    """16 -> 32 (LayerNormalization, ReLU) -> 10 classes, fixed random weights: a
    classifier whose sharpness is the size of its first weights. The normalisation makes
    the function independent of that size, while Adam moves every weight by about ``lr``
    a step, whatever its size: by ``lr / w1_scale`` relative to it."""
    r = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["n"], axis=-1),
        helper.make_node("Relu", ["n"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["y"]),
    ]
    inits = {
        "w1": (r.standard_normal((16, 32)) * w1_scale).astype(np.float32),
        "gamma": np.ones(32, np.float32),
        "beta": np.zeros(32, np.float32),
        "w2": (r.standard_normal((32, 10)) / 6).astype(np.float32),
    }
    return model_of(nodes, {"x": [1, 16]}, inits, ["y"])


def _data(labels: bool = False) -> Dataset:
    r = np.random.default_rng(1)
    x = r.standard_normal((96, 16)).astype(np.float32)
    return Dataset({"x": x}, r.integers(0, 10, 96) if labels else None, "test")


def _probe(w1_scale: float, **options):
    src, tune = _mlp(w1_scale), _data()
    config = SearchConfig(**options)
    return probed(config, src, tune, teacher_outputs(src, tune, config), TOP1)


def test_the_default_rate_is_kept_where_the_model_stays_itself():
    config, notice = _probe(0.25)
    assert config.lr == default_lr("adam", labels=False) == 1e-4
    assert notice is None


def test_a_sharp_model_gets_a_lower_rate_and_a_notice():
    """First weights of size 1e-3: a step of 1e-4 on each changes them by a tenth."""
    config, notice = _probe(1e-3)
    assert config.lr is not None and config.lr <= 1e-5
    assert "the default learning rate moves this model off itself" in notice
    assert f"fine-tunes at {config.lr:.0e}".replace("e-0", "e-") in notice
    # the rate it chose does keep the model itself, checked here independently
    src, tune = _mlp(1e-3), _data()
    moved = hwcc.train.finetune.finetune(
        src,
        tune.inputs,
        teacher=teacher_outputs(src, tune, config),
        steps=10,
        lr=config.lr,
        batch_size=32,
        optimizer="adam",
        schedule="constant",
    ).graph
    x = tune.inputs["x"][:64]
    agree = TOP1(ort_per_sample(moved, x), ort_per_sample(src, x), None)
    assert agree >= PROBE_FLOOR


def _scripted(*agreements):
    """A metric that answers ``agreements`` in turn, one per rate tried."""
    answers = iter(agreements)
    return lambda out, ref, labels: next(answers)


def _probe_scripted(*agreements):
    src, tune = _mlp(0.25), _data()
    config = SearchConfig()
    teacher = teacher_outputs(src, tune, config)
    return probed(config, src, tune, teacher, _scripted(*agreements))


def test_the_cuts_stop_where_a_smaller_rate_keeps_no_more():
    """71.9 % at 1e-4, 85.9 % at 1e-5, 98.4 % at 1e-6 and at 1e-7 (smart-turn): one
    decision on the edge flips whatever the rate, so 1e-6 is kept, and said."""
    config, notice = _probe_scripted(0.719, 0.859, 0.984, 0.984)
    assert config.lr == pytest.approx(1e-6)
    assert "at any rate" in notice and "fine-tunes at 1e-6" in notice


def test_when_every_cut_still_gains_but_none_passes_the_smallest_is_used_and_said():
    config, notice = _probe_scripted(0.5, 0.6, 0.7, 0.8)
    assert config.lr == pytest.approx(1e-4 / 10**PROBE_CUTS)
    assert "no learning rate tried keeps the model itself" in notice and "--lr" in notice


def test_a_model_no_rate_keeps_is_said():
    """First weights of 1e-10: every rate tried scrambles it."""
    config, notice = _probe(1e-10)
    assert notice is not None and "--lr" in notice


@pytest.mark.parametrize(
    "options, labels",
    [({"lr": 3e-3}, False), ({}, True), ({"short_term_steps": 0, "long_term_steps": 0}, False)],
)
def test_nothing_is_checked_where_a_rate_or_labels_are_given_or_nothing_is_tuned(options, labels):
    src, tune = _mlp(1e-3), _data(labels=labels)
    config = SearchConfig(**options)
    got, notice = probed(config, src, tune, teacher_outputs(src, tune, config), TOP1)
    assert got == config and notice is None


def test_a_compile_records_the_rate_and_says_why():
    src, tune = _mlp(1e-3), _data()
    result = hwcc.compile(
        src,
        "eie",
        "90%",
        data=dict(tune.inputs),
        max_iterations=1,
        short_term_steps=2,
        long_term_steps=0,
    )
    summary = result.summary.to_json()
    assert summary["options"]["lr"] <= 1e-5
    assert any("moves this model off itself" in w for w in summary["warnings"])
