"""practice_width's points: a practice model's width-multiplier models beside its hwcc compile.

For one practice model whose ``hwcc compile --target cpu --budget 70%`` already ran in the
work folder (:mod:`bench.practice.must_show`), the model is loaded, dequantized, specialised
and split from the same ``D.npz`` with the same seed as that compile
(:func:`hwcc.api.compile`), cleaned up as the compile cleans it up
(:func:`hwcc.ir.cleanup.cleanup`), cut by ``prune_channels`` at ``ratio = 1 − α`` and
fine-tuned by the compile's own fine-tuner (:func:`hwcc.search.finetuning.finetuner`:
distilled from the original, the compile's optimizer, batch and metric) for the compile's
long-term steps, the fine-tune kept only if it does not lower the fidelity on the compile's
held-out split (as the compile keeps its own). Every point, the original and the compile's
``model.onnx`` with them, is then scored on must_show's fresh held-out inputs and timed
round-robin; see :mod:`bench.practice_width`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hwcc
from bench._common import save_svg
from bench._width_common import time_points
from bench.practice import must_show
from bench.practice_width import PracticeSettings, against, point_label
from hwcc.data.activations import split_batches
from hwcc.data.evaluate import Evaluator, load_dataset, resolve_data
from hwcc.ir.cleanup import cleanup
from hwcc.ir.specialise import specialise
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.workload import analyze
from hwcc.passes.dequantize import dequantize_for_search
from hwcc.report.svg import BLUE, GREY, ORANGE, Chart, percent_labels, si_labels
from hwcc.search.config import SearchConfig
from hwcc.search.finetuning import finetuner
from hwcc.search.run import long_term_seed


def _config(options: dict[str, Any]) -> SearchConfig:
    """The compile's search options, as recorded in its ``hwcc.json``."""
    fields = set(SearchConfig.__dataclass_fields__)
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k in fields}
    return SearchConfig(**given)


class Practice:
    """One practice model as its compile saw it, and must_show's fresh held-out check."""

    def __init__(self, model_id: str, work: Path):
        self.id = model_id
        self.out = work / f"{model_id}.cpu"
        self.summary = json.loads((self.out / "hwcc.json").read_text(encoding="utf-8"))
        self.config = _config(self.summary["options"])
        metric = "per-step" if model_id in must_show.PER_STEP else None
        path, shapes = must_show.model_path(model_id, work), must_show.shapes(model_id)
        # as hwcc.api.compile: dequantized, split with the seed, specialised on a batch
        src, _ = dequantize_for_search(hwcc.load(path, input_shapes=shapes))
        self.tune, held, _ = resolve_data(
            src, str(work / f"{model_id}.npz"), None, self.config.seed
        )
        src = specialise(src, split_batches(src, self.tune.inputs)[0], self.config.seed).graph
        self.compile_eval = Evaluator(src, held, metric)
        self.finetune = finetuner(src, self.tune, self.config, self.compile_eval.metric_name)
        self.graph = cleanup(src, self.config.seed)
        # as must_show.check_cpu: the original specialised alone, fresh inputs of seed 1
        original, _ = dequantize_for_search(hwcc.load(path, input_shapes=shapes))
        self.original = specialise(original).graph
        fresh = must_show.data(model_id, must_show.held_out(model_id), must_show.HELD_SEED)
        self.fresh = Evaluator(self.original, load_dataset(self.original, fresh), metric)
        self.compiled = hwcc.load(self.out / "model.onnx")

    def search_info(self) -> dict[str, Any]:
        """What the compile did: iterations, its fine-tunes, its wall time, its fidelity."""
        s, opts = self.summary, self.summary["options"]
        tuned = sum(1 for p in s.get("proposals", []) if p.get("finetuned"))
        return {
            "iterations": len(s.get("history", [])),
            "short_term_steps": opts["short_term_steps"],
            "finetuned_proposals": tuned,
            "search_steps": tuned * opts["short_term_steps"],
            "path_steps": len(s.get("history", [])) * opts["short_term_steps"],
            "long_term_steps": opts["long_term_steps"],
            "optimizer": opts["optimizer"],
            "wall_s": s.get("timing", {}).get("wall_s"),
            "reported_fidelity": s["final"].get("accuracy"),
            "compile_metric": s.get("accuracy_kind"),
            "exit_reason": s.get("exit_reason"),
        }

    def multiplier(self, alpha: float, round_to: int, steps: int) -> tuple[Any, dict[str, Any]]:
        """The cleaned-up model at width ``alpha``, fine-tuned as the compile's long term."""
        knobs = {"prune_channels": {"ratio": 1 - alpha, "round_to": round_to}}
        cut = get_pass("prune_channels")(self.graph, PassContext(knobs=knobs, verify=False)).graph
        before = self.compile_eval.accuracy(cut)
        t0 = time.monotonic()
        tuned = self.finetune(cut, steps, long_term_seed(self.config.seed, 0))
        after = self.compile_eval.accuracy(tuned)
        kept = before is None or after is None or after >= before
        return (tuned if kept else cut), {
            "compile_fidelity_before": before,
            "compile_fidelity": after if kept else before,
            "finetune_kept": kept,
            "finetune_s": time.monotonic() - t0,
        }


def model(model_id: str, work: Path, s: PracticeSettings, threads: int) -> dict[str, Any]:
    """Every point of one practice model, scored on fresh inputs and timed together."""
    t0 = time.monotonic()
    m = Practice(model_id, work)
    info = m.search_info()
    steps = min(info["long_term_steps"], s.max_steps) if s.max_steps else info["long_term_steps"]
    points: list[dict[str, Any]] = [
        {"method": "original", "label": "input", "graph": m.original, "steps": 0}
    ]
    for alpha in s.alphas:
        graph, extra = m.multiplier(alpha, s.round_to, steps)
        points.append(
            {
                "method": "width multiplier",
                "label": point_label(alpha, s.round_to),
                "alpha": alpha,
                "graph": graph,
                "steps": steps,
                **extra,
            }
        )
    points.append(
        {
            "method": "hwcc",
            "label": "cpu 70%",
            "graph": m.compiled,
            "steps": info["long_term_steps"],
            "compile_fidelity": info["reported_fidelity"],
        }
    )
    for p in points:
        p["fidelity"] = m.fresh.accuracy(p["graph"])
        p["macs"] = analyze(p["graph"]).macs
    time_points(points, threads, s.rounds, s.runs)
    mod = {
        "model": model_id,
        "metric": m.fresh.kind,
        "fresh_samples": len(m.fresh.data),
        "search": info,
        "finetune_steps": steps,
        "original": points[0],
        "multiplier": points[1:-1],
        "hwcc": points[-1],
        "seconds": time.monotonic() - t0,
    }
    return against(mod)


def _us(t: float) -> str:
    return f"{t * 1e6:.0f} us"


def plot(mod: dict[str, Any], out: Path) -> str:
    """Fidelity on fresh inputs against measured latency: the multiplier's curve, hwcc's point."""
    chart = Chart(
        f"{mod['model']}: fidelity on fresh held-out inputs against measured CPU latency",
        "measured latency (onnxruntime, batch 1)",
        "fidelity (agreement with the original)",
        lambda t: si_labels(t, "s"),
        percent_labels,
    )
    series: Sequence[tuple[list[dict[str, Any]], str, str]] = (
        ([mod["original"], *mod["multiplier"]], ORANGE, "width multiplier (multiples of 8)"),
        ([mod["original"], mod["hwcc"]], BLUE, "hwcc"),
    )
    for pts, color, label in series:
        pts = sorted(pts, key=lambda p: p["latency_s"])
        xs, ys = [p["latency_s"] for p in pts], [p["fidelity"] for p in pts]
        chart.line(xs, ys, color, label)
        tips = [
            f"{p['method']} {p['label']}: {_us(p['latency_s'])}, {p['fidelity']:.1%}" for p in pts
        ]
        names = ["" if p is mod["original"] else p["label"] for p in pts]
        chart.points(xs, ys, color, tips, names)
    chart.vline(mod["original"]["latency_s"], GREY, "original")
    alt = f"{mod['model']}: fidelity against measured latency, hwcc and width multiplier"
    return save_svg(out, f"practice_width_{mod['model']}.svg", chart.render(), alt)
