"""The pure pieces of the one-shot bench section (no model is compiled here)."""

from __future__ import annotations

import pytest

from bench.oneshot import STAGES, compare, split_time


def test_split_time_gives_each_gap_to_the_stage_its_event_starts():
    events = [
        (1.0, "warning"),  # before the search: still the set-up
        (2.0, "one_shot"),
        (3.0, "one_shot"),
        (6.0, "picked"),  # the one-shot step shown as the first iteration
        (6.5, "iteration"),
        (7.0, "proposal"),
        (9.0, "picked"),
        (9.0, "long_term"),
        (10.0, "warning"),  # the measurement missed: the finish goes on until the loop does
        (10.5, "iteration"),
        (12.0, "picked"),
        (12.0, "long_term"),
        (13.0, "done"),
    ]
    got = split_time(events, 13.5)
    assert list(got) == list(STAGES)
    assert got["set-up"] == pytest.approx(2.0)
    assert got["one-shot"] == pytest.approx(4.0)
    assert got["NetAdapt loop"] == pytest.approx(3.0 + 1.5)
    assert got["finish"] == pytest.approx(1.5 + 1.5)
    assert sum(got.values()) == pytest.approx(13.5)


def test_split_time_without_events_is_all_set_up():
    assert split_time([], 4.0) == {
        "set-up": 4.0,
        "one-shot": 0.0,
        "NetAdapt loop": 0.0,
        "finish": 0.0,
    }


def _row(model, budget, one_shot, wall, accuracy, ratio, met, kept=False):
    return {
        "model": model,
        "target": "cpu",
        "budget": budget,
        "one_shot": one_shot,
        "wall_s": wall,
        "accuracy": accuracy,
        "ratio": ratio,
        "met": met,
        "kept": kept,
    }


def test_compare_pairs_each_one_shot_compile_with_netadapt_at_the_same_budget():
    rows = [
        _row("a", 0.5, False, 40.0, 0.95, 0.49, True),
        _row("a", 0.5, True, 10.0, 0.97, 0.45, True, kept=True),
        _row("a", 0.7, True, 8.0, None, 0.60, False),  # no NetAdapt compile: left out
        _row("b", 0.5, False, 20.0, 0.90, 0.55, False),
        _row("b", 0.5, True, 30.0, 0.80, 0.52, False),
    ]
    a, b = compare(rows)
    assert (a["model"], a["budget"], b["model"]) == ("a", 0.5, "b")
    assert a["time_ratio"] == pytest.approx(0.25) and b["time_ratio"] == pytest.approx(1.5)
    assert a["accuracy_delta"] == pytest.approx(0.02) and b["accuracy_delta"] == pytest.approx(-0.1)
    assert a["latency_delta"] == pytest.approx(-0.04)
    assert a["met"] == (True, True) and a["kept"] and not b["kept"]
