"""The fine-tuning speed section: ratios are the median over rounds of ours / plain, and
one quick round trip through the real executor and the real torch module."""

from __future__ import annotations

import pytest

from bench import finetune_speed


def test_the_table_shows_per_step_times_and_the_median_ratio():
    run = {"model": "m", "steps": 10, "ours_s": [1.0, 3.0, 2.0], "plain_s": [1.0, 1.0, 1.0]}
    run["ratio"] = 2.0
    lines = finetune_speed.body([run]).splitlines()
    assert lines[2] == "| m | 200.0 ms | 100.0 ms | 2.00x |"


def test_a_quick_timing_runs_both_sides():
    t = finetune_speed.timings("lenet5-digits", steps=2, rounds=3)
    assert len(t["ours_s"]) == len(t["plain_s"]) == 3
    assert all(s > 0 for s in t["ours_s"] + t["plain_s"])
    ratios = sorted(o / p for o, p in zip(t["ours_s"], t["plain_s"]))
    assert t["ratio"] == pytest.approx(ratios[1])
