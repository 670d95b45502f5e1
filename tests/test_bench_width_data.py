"""The width section's per-model data sets, model choice, carried-over results and goal."""

from __future__ import annotations

import pytest

from bench._width_common import chosen_models, data_of, merge_models
from bench._width_report import _task_goal, best_at_equal_accuracy
from bench.width import FULL, GLYPHS, QUICK

MODELS = ("lenet5-digits", "mobilenet-glyphs", "resnet-glyphs")


def test_each_model_runs_on_its_own_bundled_data_set():
    assert data_of("lenet5-digits") == "zoo:digits"
    assert data_of("resnet-digits") == "zoo:digits"
    assert data_of("mobilenet-glyphs") == "zoo:glyphs"
    assert {data_of(m) for m in FULL.models} == {"zoo:digits"}
    assert {data_of(m) for m in GLYPHS.models} == {"zoo:glyphs"}
    assert QUICK.models == ("lenet5-digits",)  # the smoke run is unchanged
    assert not QUICK.peer_ratios and not FULL.peer_ratios  # the digits runs are unchanged


def test_chosen_models_keeps_the_settings_order_and_refuses_unknown_names():
    assert chosen_models(MODELS, None) == MODELS
    assert chosen_models(MODELS, "") == MODELS
    assert chosen_models(MODELS, "resnet-glyphs, mobilenet-glyphs") == MODELS[1:]
    with pytest.raises(ValueError, match="alexnet"):
        chosen_models(MODELS, "alexnet")


def test_merge_models_prefers_this_run_and_keeps_the_others():
    earlier = [{"model": "lenet5-digits", "v": 1}, {"model": "resnet-glyphs", "v": 1}]
    ran = [{"model": "resnet-glyphs", "v": 2}, {"model": "mobilenet-glyphs", "v": 2}]
    merged = merge_models(earlier, ran, MODELS)
    assert [(m["model"], m["v"]) for m in merged] == [
        ("lenet5-digits", 1),
        ("mobilenet-glyphs", 2),
        ("resnet-glyphs", 2),
    ]
    assert merge_models([], [], MODELS) == []


def _point(latency, accuracy, **kw):
    return {"latency_s": latency, "accuracy": accuracy, "label": "x", **kw}


def _model(name, hwcc):
    return {
        "model": name,
        "data": "zoo:glyphs",
        "test_samples": 1000,
        "accuracy0": 0.93,
        "original": _point(4.0, 0.93),
        # the multiplier: 0.92 at 3.0, 0.90 at 2.0
        "multiplier": [_point(3.0, 0.92), _point(2.0, 0.90)],
        "hwcc": hwcc,
    }


def test_best_at_equal_accuracy_reads_the_multiplier_curve():
    mod = _model("mobilenet-glyphs", [_point(1.5, 0.92), _point(1.0, 0.80)])
    ratio, p = best_at_equal_accuracy(mod)
    assert ratio == pytest.approx(2.0) and p["accuracy"] == 0.92  # 0.80 is below the floor
    # the multiplier allowed one sample (0.1 point) less: 0.919 at 2.95
    assert best_at_equal_accuracy(mod, 1)[0] == pytest.approx(2.95 / 1.5)
    assert best_at_equal_accuracy(_model("resnet-glyphs", [_point(1.0, 0.5)])) is None


def test_task_goal_says_met_or_by_how_much_it_is_missed():
    met = [_model("mobilenet-glyphs", [_point(1.5, 0.92)])]
    assert "goal met" in _task_goal(met, "zoo:glyphs")[0]
    missed = [_model("resnet-glyphs", [_point(2.5, 0.92)])]
    line = _task_goal(missed, "zoo:glyphs")[0]
    assert "goal missed" in line and "1.20x" in line
    assert _task_goal(met, "zoo:digits") == []
