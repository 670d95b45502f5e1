"""The pure pieces of two bench sections: energy_pruning's allocation and comparison,
published's rows and summary. The sections themselves run under ``python -m bench``."""

from __future__ import annotations

import pytest

from bench.energy_pruning import best_at_floor, greedy_allocation
from bench.published import row, summarize


def test_greedy_prunes_the_layer_saving_most_per_weight():
    # a saves 2 units per weight removed, b 1: keeping 120 of 200 weights removes 80 from a.
    sizes = {"a": 100, "b": 100}
    per_weight = {"a": 2.0, "b": 1.0}
    dens = greedy_allocation(sizes, lambda n, d: per_weight[n] * sizes[n] * d, keep=120)
    assert dens["a"] == pytest.approx(0.2) and dens["b"] == 1.0
    assert sum(sizes[n] * d for n, d in dens.items()) == pytest.approx(120)


def test_greedy_looks_past_a_flat_stretch():
    # c saves nothing from 1.0 down to 0.7, then about 2.9 units per weight; d saves 1 per weight
    # all the way. c's hull slope (to density 0.02: 194 units / 98 weights) beats d's, though its
    # first step saves nothing; removing 50 weights stops c exactly at 0.5.
    sizes = {"c": 100, "d": 100}

    def energy(name, d):
        if name == "d":
            return 100 * d
        return 200.0 if d >= 0.7 else 200.0 * d / 0.7

    dens = greedy_allocation(sizes, energy, keep=150)
    assert dens["d"] == 1.0 and dens["c"] == pytest.approx(0.5)


def test_greedy_respects_the_floor_and_stops_there():
    sizes = {"a": 100, "b": 100}
    dens = greedy_allocation(
        sizes, lambda n, d: (3.0 if n == "a" else 1.0) * 100 * d, keep=20, floor=0.3
    )
    # the floor binds before 20 weights
    assert dens == {"a": pytest.approx(0.3), "b": pytest.approx(0.3)}


def test_best_at_floor():
    points = [
        {"accuracy": 0.99, "reduction_energy_j": 1.0},
        {"accuracy": 0.985, "reduction_energy_j": 2.0},
        {"accuracy": 0.97, "reduction_energy_j": 5.0},
    ]
    assert best_at_floor(points, 0.98, "energy_j")["reduction_energy_j"] == 2.0
    assert best_at_floor(points, 0.995, "energy_j") is None


def test_rows_and_summary():
    rows = [
        row("t", "a", "time", "us", 11.0, 10.0, 0.15),  # +10 %: within 15 %
        row("t", "b", "time", "us", 13.0, 10.0, 0.15),  # +30 %: outside
        row("t", "c", "share", "", 0.30, 0.25, 0.10, absolute=True),  # 5 points: within 10 points
        row("t", "d", "bound", "us", 9.0, 10.0, None, bound=True),
    ]
    assert [r["within"] for r in rows] == [True, False, True, True]
    assert rows[1]["error"] == pytest.approx(0.3)
    s = summarize(rows)
    # the bound is not an estimate
    assert s["rows"] == 3 and s["bounds"] == 1 and s["bounds_hold"] == 1
    assert s["within_10"] == pytest.approx(1 / 3) and s["within_25"] == pytest.approx(2 / 3)
    assert s["median_abs"] == pytest.approx(0.2) and s["within_tolerance"] == 2
