"""The HTML report's axes: tick values chosen by hand and their coverage, and SI labels that
share one prefix. The page itself is in test_report_page.py."""

from __future__ import annotations

import pytest

from hwcc.report.html import nice_ticks
from hwcc.report.svg import si_labels


@pytest.mark.parametrize(
    "lo, hi, ticks",
    [
        (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0, 100, [0, 20, 40, 60, 80, 100]),
        (1.4e-4, 3e-4, [1e-4, 1.5e-4, 2e-4, 2.5e-4, 3e-4]),
        (0.97, 0.99, [0.97, 0.975, 0.98, 0.985, 0.99]),
        (7, -3, [-4, -2, 0, 2, 4, 6, 8]),
        (5, 5, [4, 4.5, 5, 5.5, 6]),
        (0, 0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (2e-3, 2e-3, [1e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3]),
    ],
)
def test_nice_ticks_by_hand(lo, hi, ticks):
    assert nice_ticks(lo, hi) == ticks


def test_nice_ticks_whole_numbers_and_coverage():
    assert nice_ticks(0, 2, integer=True) == [0, 1, 2]
    for lo, hi in [(0.123, 0.9871), (1e-9, 3.3e-9), (250000, 90000), (-1e3, 1e3), (0.983, 0.989)]:
        t = nice_ticks(lo, hi)
        steps = {round(b - a, 15) for a, b in zip(t, t[1:])}
        assert t[0] <= min(lo, hi) and t[-1] >= max(lo, hi) and 3 <= len(t) <= 11
        assert len(steps) == 1 and f"{steps.pop():e}"[0] in "125"


def test_si_labels_share_one_prefix():
    assert si_labels([0, 1e-4, 2e-4], "s") == ["0", "100 us", "200 us"]
    assert si_labels([0, 50000, 100000], "B") == ["0", "50 KB", "100 KB"]
    assert si_labels([0, 5e-4, 1e-3], "J") == ["0", "0.5 mJ", "1 mJ"]
