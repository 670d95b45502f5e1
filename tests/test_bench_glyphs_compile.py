"""The glyphs compile section's pure pieces: what it reads from a compile's summary, and
the verdict against the issue's 10 minutes."""

from __future__ import annotations

import json

from bench.glyphs_compile import _body, _summary


def _row(model: str, wall_s: float, met: bool = True) -> dict:
    return {
        "model": model, "wall_s": wall_s, "exit": 0 if met else 3, "iterations": 14,
        "budget_met": met, "phases_s": {"pricing": 10.0, "fine-tuning": 62.0},
        "ratio": 0.48, "accuracy": 0.92, "accuracy0": 0.926, "long_term_steps": 750,
    }  # fmt: skip


def test_summary_reads_the_compiles_own_record(tmp_path):
    path = tmp_path / "hwcc.json"
    path.write_text(
        json.dumps(
            {
                "history": [{}, {}, {}],
                "budget_met": True,
                "exit_reason": "every budget met",
                "timing": {"phases_s": {"pricing": 1.5}},
                "measured": {"original_latency_s": 2e-4, "final_latency_s": 1e-4},
                "final": {"accuracy": 0.9},
                "original": {"accuracy": 0.93},
                "options": {"long_term_steps": 750},
            }
        )
    )
    s = _summary(path)
    assert s["iterations"] == 3 and s["ratio"] == 0.5 and s["long_term_steps"] == 750
    assert s["accuracy"] == 0.9 and s["budget_met"] is True
    assert "no summary" in _summary(tmp_path / "missing.json")["error"]


def test_the_verdict_names_the_slowest_compile_and_the_bar():
    fast = _body([_row("a", 190.0), _row("b", 290.0)])
    assert fast.startswith("Every compile took at most 4 min 50 s (`b`), within")
    slow = _body([_row("a", 190.0), _row("b", 700.0, met=False)])
    assert "`b` took 11 min 40 s, over the issue's 10 minutes" in slow
    assert "Budget not met: `b`." in slow
    assert "| `a` | 3 min 10 s | 0 | 14 | 0.48x | 92.0% (92.6%) |" in fast
