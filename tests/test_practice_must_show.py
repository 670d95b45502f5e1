"""The practice must-show's bookkeeping: extra ``hwcc compile`` flags reach the command
and are recorded with the result, and the table row names them."""

from __future__ import annotations

import subprocess

import numpy as np

from bench.practice import must_show


def test_extra_flags_reach_the_compile_and_its_row(tmp_path, monkeypatch):
    np.savez(tmp_path / "ppocr_cls.npz", x=np.zeros((2, 3, 48, 192), np.float32))
    monkeypatch.setattr(must_show, "model_path", lambda model_id, work: work / "m.onnx")
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 2, "", "bad input")

    monkeypatch.setattr(must_show.subprocess, "run", fake_run)
    flags = ("--criterion", "activation")
    result = must_show.compile_cli("ppocr_cls", "cpu", "70%", tmp_path, flags)
    assert seen[0][-2:] == list(flags) and result["flags"] == list(flags)
    row = {
        "cpu": {
            **result,
            "exit": 0,
            "measured_ratio": 0.69,
            "reported_accuracy": 0.97,
            "held_out_fidelity": 0.95,
            "held_out_kind": "top-1 agreement with the original model on 64 held-out samples",
        }
    }
    assert "(`--criterion activation`)" in must_show.line("ppocr_cls", row)
    del row["cpu"]["flags"]
    assert "`" not in must_show.line("ppocr_cls", row).split("|")[2]


def _row(flags=()):
    return {
        "cpu": {
            "exit": 0,
            "wall_s": 60.0,
            "measured_ratio": 0.69,
            "reported_accuracy": 0.97,
            "held_out_fidelity": 0.95,
            "held_out_kind": "top-1 agreement with the original model on 64 held-out samples",
            **({"flags": list(flags)} if flags else {}),
        }
    }


def test_the_section_reports_other_flags_in_a_table_of_their_own(tmp_path, monkeypatch):
    import json

    from bench import practice_compile

    (tmp_path / "main").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "main" / "results.json").write_text(json.dumps({"ppocr_cls": _row()}))
    flagged = {"ppocr_cls": _row(("--criterion", "activation"))}
    (tmp_path / "other" / "results.json").write_text(json.dumps(flagged))
    monkeypatch.setenv("HWCC_PRACTICE_REPORT_ONLY", "1")
    monkeypatch.setenv("HWCC_PRACTICE_WORK", str(tmp_path / "main"))
    monkeypatch.setenv("HWCC_PRACTICE_ALSO", str(tmp_path / "other"))
    monkeypatch.setenv("HWCC_PRACTICE_ALSO_NOTE", "They ran on another machine.")
    section = practice_compile.run(False, tmp_path)
    first, _, second = section["markdown"].partition("More compiles of the same models")
    assert "data drawn as above. They ran on another machine." in second
    assert "| ppocr_cls | exit 0, 1.0 min |" in first
    assert "| ppocr_cls | exit 0, 1.0 min (`--criterion activation`) |" in second
    assert section["data"]["also"][0]["model"] == "ppocr_cls"


def test_a_row_says_whether_the_fresh_fidelity_falls_in_the_runs_interval():
    row = _row()
    assert "fresh" not in must_show.line("ppocr_cls", row)  # a run without an interval
    row["cpu"]["reported_interval"] = [0.906, 1.0]
    assert "97.0% (90.6% to 100.0%, fresh inside)" in must_show.line("ppocr_cls", row)
    row["cpu"]["held_out_fidelity"] = 0.85
    assert "fresh outside" in must_show.line("ppocr_cls", row)


def test_the_eyeriss_cell_says_met_not_met_or_why_there_is_no_verdict():
    row = _row()
    assert must_show.line("ppocr_cls", row).endswith("| - |")
    row["eyeriss"] = {"exit": 0, "wall_s": 201.0, "budget_met": True}
    assert must_show.line("ppocr_cls", row).endswith("| met (201 s) |")
    row["eyeriss"] = {"exit": 3, "wall_s": 1178.0, "budget_met": False}
    assert must_show.line("ppocr_cls", row).endswith("| not met (1178 s) |")
    row["eyeriss"] = {"exit": None, "wall_s": 1800, "error": "killed after 1800 s"}
    assert must_show.line("ppocr_cls", row).endswith("| failed: killed after 1800 s |")
    row["eyeriss"] = {
        "exit": 3,
        "wall_s": 1177.6,
        "budget_met": False,
        "ratio": 0.519,
        "reported_accuracy": 0.9518,
    }
    assert must_show.line("ppocr_cls", row).endswith("| not met: 0.52x energy, 95.2% (19.6 min) |")


def test_an_eyeriss_only_run_leaves_the_cpu_compiles_alone(tmp_path, monkeypatch):
    """``--eyeriss-only``: only the CNNs' Eyeriss compiles run, with their own time limit,
    and a row without a cpu compile still renders."""
    calls = []

    def fake_compile(model_id, target, budget, work, extra=()):
        calls.append((model_id, target, budget))
        return {
            "exit": 0,
            "wall_s": 60.0,
            "budget_met": True,
            "ratio": 0.5,
            "reported_accuracy": 0.99,
        }

    monkeypatch.setattr(must_show, "compile_cli", fake_compile)
    results = must_show.run(["ppocr_cls", "silero_op15"], tmp_path, cpu=False)
    assert calls == [("ppocr_cls", "eyeriss", "50%")]  # silero is no CNN
    assert must_show.line("ppocr_cls", results["ppocr_cls"]).startswith(
        "| ppocr_cls | (Eyeriss only) |"
    )
    assert must_show.EYERISS_TIMEOUT_S > must_show.TIMEOUT_S
