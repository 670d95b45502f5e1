"""The pure pieces of the width-multiplier and int8 bench sections (no model is run here)."""

from __future__ import annotations

import math

import pytest

from bench.int8 import int8_kernels
from bench.width import (
    accuracy_at_latency,
    by_round,
    envelope,
    first_meeting,
    latency_at_accuracy,
    speedup_at_accuracy,
)

# (latency, accuracy): a slower point (3.0) that is less accurate than a faster one (2.0)
CURVE = [(4.0, 0.99), (1.0, 0.90), (2.0, 0.96), (3.0, 0.95)]


def test_envelope_sorts_by_latency_and_never_lets_accuracy_fall():
    assert envelope(CURVE) == [(1.0, 0.90), (2.0, 0.96), (3.0, 0.96), (4.0, 0.99)]
    assert envelope([]) == []


def test_latency_at_accuracy_interpolates_on_the_envelope():
    assert latency_at_accuracy(CURVE, 0.93) == pytest.approx(1.5)  # halfway from 0.90 to 0.96
    assert latency_at_accuracy(CURVE, 0.96) == pytest.approx(2.0)  # exactly a point
    # 3.0 is lifted to 0.96 by the envelope
    assert latency_at_accuracy(CURVE, 0.975) == pytest.approx(3.5)
    # every point reaches it: the fastest
    assert latency_at_accuracy(CURVE, 0.50) == pytest.approx(1.0)
    assert latency_at_accuracy(CURVE, 0.995) is None  # no point reaches it


def test_accuracy_at_latency_interpolates_and_says_when_it_cannot():
    assert accuracy_at_latency(CURVE, 1.5) == pytest.approx(0.93)
    assert accuracy_at_latency(CURVE, 3.5) == pytest.approx(0.975)
    # beyond the slowest: its accuracy
    assert accuracy_at_latency(CURVE, 9.0) == pytest.approx(0.99)
    assert accuracy_at_latency(CURVE, 0.5) is None  # faster than any point
    assert accuracy_at_latency([], 1.0) is None


def test_latency_and_accuracy_lookups_are_inverse_on_a_rising_curve():
    rising = [(1.0, 0.5), (2.0, 0.7), (4.0, 0.8)]
    for lat in (1.0, 1.3, 2.0, 3.1, 4.0):
        assert latency_at_accuracy(rising, accuracy_at_latency(rising, lat)) == pytest.approx(lat)


def test_first_meeting_is_the_first_point_in_search_order_within_the_limit():
    points = [
        {"iteration": 1, "predicted_s": 9.0},
        {"iteration": 2, "predicted_s": 6.0},
        {"iteration": 3, "predicted_s": 4.0},
        {"iteration": 4, "predicted_s": 5.0},
    ]
    assert first_meeting(points, 7.5)["iteration"] == 2
    assert first_meeting(points, 6.0)["iteration"] == 2  # at the limit counts
    assert first_meeting(points, 4.5)["iteration"] == 3
    assert first_meeting(points, 3.0) is None  # the search never got there


def test_int8_kernels_counts_only_int8_compute():
    counts = {
        "QLinearConv": 3,
        "QGemm": 1,
        "MatMulIntegerToFloat": 2,
        "QLinearGlobalAveragePool": 1,
        "QuantizeLinear": 5,
        "DequantizeLinear": 7,
        "Conv": 4,
        "Transpose": 2,
    }
    assert int8_kernels(counts) == 7
    assert int8_kernels({"Conv": 2, "Gemm": 1}) == 0


def test_speedup_at_accuracy_says_when_it_is_only_a_bound():
    assert speedup_at_accuracy(CURVE, 1.0, 0.93) == (pytest.approx(1.5), "")  # 1.5 / 1.0
    # beyond 0.99: taken at 4.0
    assert speedup_at_accuracy(CURVE, 2.0, 0.995) == (pytest.approx(2.0), "at least")
    # below 0.90: taken at 1.0
    assert speedup_at_accuracy(CURVE, 0.5, 0.80) == (pytest.approx(2.0), "at most")
    # the fastest point, exactly
    assert speedup_at_accuracy(CURVE, 4.0, 0.90) == (pytest.approx(0.25), "")


def test_by_round_takes_each_ratio_within_its_round():
    # the machine is twice as slow in round 2: the ratios within rounds do not change
    rounds = [[100.0, 50.0, 20.0], [200.0, 100.0, 40.0], [100.0, 50.0, 20.0]]
    latency, speedup, spread = by_round(rounds)
    assert speedup == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(5.0)]
    assert latency == [pytest.approx(100.0), pytest.approx(50.0), pytest.approx(20.0)]
    assert spread == [pytest.approx(0.0)] * 3


def test_by_round_with_a_reference_per_model_and_noisy_rounds():
    rounds = [[10.0, 20.0, 100.0, 50.0], [10.0, 10.0, 100.0, 100.0], [10.0, 5.0, 100.0, 200.0]]
    latency, speedup, spread = by_round(rounds, reference=[0, 0, 2, 2])
    assert speedup == [
        pytest.approx(1.0),
        pytest.approx(1.0),
        pytest.approx(1.0),
        pytest.approx(1.0),
    ]
    assert latency[1] == pytest.approx(10.0) and latency[3] == pytest.approx(100.0)
    # ratios 0.5, 1, 2: quartiles 0.75 and 1.5
    assert spread[1] == pytest.approx(0.75) and spread[0] == 0.0
    assert all(math.isfinite(x) for x in latency + speedup + spread)
