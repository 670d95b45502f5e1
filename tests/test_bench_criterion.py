"""The criterion section: points read off a search's history, and saved searches reused."""

from __future__ import annotations

import json

import pytest

from bench import criterion


def _run(model="lenet5-digits", name="l2", path=((0.9, 0.9), (0.6, 0.8), (0.45, 0.7))):
    return {
        "model": model,
        "criterion": name,
        "wall_s": 90.0,
        "original": {"latency_s": 2.0, "accuracy": 0.95},
        "history": [{"metrics": {"latency_s": 2.0 * r, "accuracy": a}} for r, a in path],
    }


def test_the_accuracy_at_a_mark_is_the_first_iteration_at_or_below_it():
    points = criterion.path_points(_run())
    assert points == [(0.9, 0.9), (0.6, 0.8), (0.45, 0.7)]
    assert criterion.at_mark(points, 0.75) == (0.6, 0.8)
    assert criterion.at_mark(points, 0.5) == (0.45, 0.7)
    assert criterion.at_mark(points, 0.35) is None


def test_saved_searches_are_reported_and_not_run_again(tmp_path, monkeypatch):
    for name in criterion.CRITERIA:
        (tmp_path / f"lenet5-digits.{name}.json").write_text(json.dumps(_run(name=name)))
    monkeypatch.setenv("HWCC_BENCH_CRITERION_WORK", str(tmp_path))
    monkeypatch.setattr(criterion, "search", lambda *a: pytest.fail("a saved search ran again"))
    result = criterion.run(quick=True, out=tmp_path)
    lines = result["markdown"].splitlines()
    assert len(lines) == 2 + len(criterion.CRITERIA)
    assert lines[2].startswith(
        "| lenet5-digits | l2 | 95.0% | 90.0% (0.90x) | 80.0% (0.60x) | 70.0% (0.45x) | "
    )
    assert "not reached | 1.5 min |" in lines[2]
