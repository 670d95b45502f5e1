"""hwcc's search against a uniform width multiplier, at equal latency measured on this CPU.

NetAdapt (Yang et al., ECCV 2018) reports networks up to 1.7x faster than MobileNet width
multipliers at equal or higher accuracy, latency measured on a phone's CPU and GPU. The
same comparison on the trained zoo models, on this machine's CPU under onnxruntime: the
8x8 digits models on ``zoo:digits`` and the 32x32 glyphs models (the harder task, tested
on unseen fonts) on ``zoo:glyphs``, each model with its own bundled data set:

* **Width multiplier** ``α``: every prunable channel group of ``C`` channels keeps its
  ``⌈α·C⌉`` filters of largest L2 norm (the ``prune_channels`` pass, ``ratio = 1 − α``;
  coupled layers, residual Adds and depthwise convolutions shrink with their group), and
  again with ``α·C`` rounded up to a multiple of 8, as MobileNet's published multipliers
  round it (the pass's ``round_to``; 8 is also a step of the ``cpu`` target's declared
  ``channel_granularity``). The multiplier's curve is the better of the two.
* **hwcc**: ``hwcc.compile(model, "cpu", "P%", data="zoo:digits")`` (``zoo:glyphs`` for
  a glyphs model), the NetAdapt loop priced by the ``cpu`` target's measured kernel
  tables, with no accuracy floor (``max_accuracy_drop=None``) and the default passes
  (channel pruning, weight pruning, low-rank). One search runs to the smallest budget
  ``P_min``; its model after every iteration is kept, and the point for budget ``P`` is
  the first one predicted at or below ``P %`` of the input's latency: the model a run
  with budget ``P`` stops at (that run's last step would aim at exactly ``P``, so it may
  be a little less pruned).
* **Torch-Pruning** (:mod:`bench.peers`, when installed): the library's magnitude pruning
  (L2, the same ratio in every layer) and its global pruning at each of ``peer_ratios``,
  on the zoo's torch definition with the trained weights, exported to ONNX and loaded as
  any model.

Every point of every method is then fine-tuned to the same total number of steps ``T``
(Adam, the compile's default: ``Settings.optimizer``; a search
point has had ``S`` steps per iteration along its path and gets the rest) and scored on its
data set's test split in onnxruntime. All points of a model are
timed together, round-robin, as ``hwcc compile`` times its result on the ``cpu`` target
(:func:`hwcc.targets.cpu.target.measure_models`), and a speed-up is the median over rounds of
the ratio within one round (:func:`by_round`), so that it compares models under the same
state of this shared machine. The speed-up at equal accuracy reads the multiplier's
latency at the hwcc point's accuracy off the multiplier's curve (linear between its
points, after making accuracy non-decreasing in latency).

``HWCC_BENCH_WIDTH_MODELS=mobilenet-glyphs,resnet-glyphs`` runs only the models named
(comma-separated) and carries the others over from the section's saved result
(``<results>/width.json``, read before it is rewritten). ``python -m bench --only width``
removes that file before the section starts, so a restricted run that keeps the other
models' rows runs the section's process directly, ``python -m bench --run-section width
--results bench/results``, and the page is then rendered again from the saved results.

This module holds how much is run; the constants, the settings' type and the pure pieces are
:mod:`bench._width_common`, the points are made and measured in :mod:`bench._width_points`,
and the page is written by :mod:`bench._width_report`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from bench._common import one_torch_thread
from bench._width_common import (
    DEFAULT_PASSES,
    MODELS_ENV,
    PAPER_SPEEDUP,
    SEED,
    TEST_SAMPLES,
    Settings,
    chosen_models,
    data_of,
    merge_models,
)

# The tests and bench.int8 import these from here.
from bench._width_common import accuracy_at_latency as accuracy_at_latency
from bench._width_common import by_round as by_round
from bench._width_common import envelope as envelope
from bench._width_common import first_meeting as first_meeting
from bench._width_common import latency_at_accuracy as latency_at_accuracy
from bench._width_common import measure as measure
from bench._width_common import speedup_at_accuracy as speedup_at_accuracy

TITLE = "hwcc against a uniform width multiplier at equal measured CPU latency"
ORDER = 20

QUICK = Settings(
    models=("lenet5-digits",),
    budgets=(0.7,),
    alphas=(1.0, 0.75, 0.5),
    round_to=(1,),
    max_iterations=2,
    short_term_steps=5,
    total_steps=30,
    rounds=8,
    runs=30,
)
FULL = Settings(
    models=("lenet5-digits", "mobilenet-digits", "resnet-digits"),
    budgets=(0.75, 0.5, 0.35),
    alphas=(1.0, 0.75, 0.5, 0.35, 0.25),
    round_to=(1, 8),
    max_iterations=10,
    short_term_steps=30,
    total_steps=300,
    rounds=30,
    runs=50,
    # Adam, as the compile: with the input model as teacher beside the labels (the compile's
    # fine-tuning), SGD at 0.01 took resnet-digits at half width to chance (10 %: early in a
    # fine-tune the distillation's gradient is up to T = 4 times the labels'), Adam to 97.2 %.
    optimizer="adam",
)
# The harder task's models, in the same full run. SGD at lr 0.01 takes their folded networks
# to chance (10 %) within 300 steps, the input itself included; every point is fine-tuned
# with Adam at 1e-3 instead (the compile's own default optimizer). The multiplier's accuracy
# falls steeply between α = 0.75 and 0.5 here (93 % to 58 %), so two more widths (0.6, 0.4)
# sample its curve where a linear reading between 0.75 and 0.5 would flatter hwcc.
GLYPHS = Settings(
    models=("mobilenet-glyphs", "resnet-glyphs"),
    budgets=(0.75, 0.5, 0.35),
    alphas=(1.0, 0.75, 0.6, 0.5, 0.4, 0.35),
    round_to=(1, 8),
    max_iterations=20,
    short_term_steps=30,
    total_steps=300,
    rounds=20,
    runs=30,
    peer_ratios=(0.2, 0.35, 0.5),
    optimizer="adam",
)


# ---------------------------------------------------------------------- the section
def run(quick: bool, out: Path) -> dict[str, Any]:
    # The points and the page import hwcc (and torch): when the section runs, not with its pure
    # pieces.
    from bench._width_points import model
    from bench._width_report import markdown, plot
    from hwcc.targets.base import load_target  # hwcc only when the section runs

    every = [QUICK] if quick else [FULL, GLYPHS]
    order = tuple(m for s in every for m in s.models)
    names = chosen_models(order, os.environ.get(MODELS_ENV))
    earlier = _earlier(out, quick) if names != order else []
    target = load_target("cpu")
    t0 = time.monotonic()
    with one_torch_thread():
        ran = [model(name, s, target) for s in every for name in s.models if name in names]
    models = merge_models(earlier, ran, order)
    plots = [plot(mod, out) for mod in models]
    data = {
        "settings": dataclasses.asdict(every[0]),
        "settings_glyphs": None if quick else dataclasses.asdict(GLYPHS),
        "models": models,
        "paper_speedup": PAPER_SPEEDUP,
        "threads": target.threads,
        "seconds": time.monotonic() - t0,
        "ran": list(names),
    }
    return {
        "title": TITLE,
        "what": " ".join(_what(s, target) for s in every),
        "markdown": markdown(models, plots),
        "data": data,
    }


def _earlier(out: Path, quick: bool) -> list[dict[str, Any]]:
    """The models of this section's saved result of the same kind (quick or full), if any."""
    try:
        saved = json.loads((out / "width.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if saved.get("quick") != quick or not isinstance(saved.get("data"), dict):
        return []
    return [m for m in saved["data"].get("models", []) if isinstance(m, dict) and "model" in m]


def _what(s: Settings, target) -> str:
    budgets = ", ".join(f"{b * 100:g} %" for b in s.budgets)
    roundings = " and ".join(
        "⌈α·C⌉" if r == 1 else f"α·C rounded up to a multiple of {r}" for r in s.round_to
    )
    by_data: dict[str, list[str]] = {}
    for m in s.models:
        by_data.setdefault(data_of(m), []).append(f"`{m}`")
    models = "; ".join(f"{', '.join(ms)} on `{d}`" for d, ms in by_data.items())
    tests = ", ".join(
        f"`{d}` {TEST_SAMPLES[d]} images, one image = {100 / TEST_SAMPLES[d]:.2g} points"
        for d in by_data
        if d in TEST_SAMPLES
    )
    alphas = ", ".join(f"{a:g}" for a in s.alphas)
    return (
        f"Zoo models {models} (each with its own bundled data set), BatchNormalization folded "
        f"first (as `hwcc compile` does), seed "
        f"{SEED}. hwcc: one `hwcc.compile(model, 'cpu', '{min(s.budgets) * 100:g}%', "
        f"data=<its data set>, seed={SEED}, max_iterations={s.max_iterations}, "
        f"short_term_steps={s.short_term_steps}, long_term_steps=0, max_accuracy_drop=None)` "
        "per model with the default "
        f"passes ({', '.join(DEFAULT_PASSES)}), no accuracy floor; for each budget ({budgets} of "
        "the predicted latency) the first iteration's model predicted within it is a point. "
        "Width multiplier: `prune_channels` with `ratio = 1 - α` (L2-norm filter choice, every "
        f"prunable group keeps {roundings} channels), α in {alphas}, fine-tuned from the pruned "
        "weights, not retrained from scratch."
        + (
            " Torch-Pruning 1.6.1 (`bench.peers`): `MagnitudePruner` with "
            "`MagnitudeImportance(p=2)` at `pruning_ratio` in "
            + ", ".join(f"{r:g}" for r in s.peer_ratios)
            + ", the same ratio in every layer (magnitude) and with `global_pruning=True` "
            "(global, `max_pruning_ratio=0.9`), the classifier's outputs kept, on the zoo's torch "
            "definition with the trained weights, exported to ONNX as the zoo exports."
            if s.peer_ratios
            else ""
        )
        + f" Every point of every method has {s.total_steps} "
        + (
            "SGD steps of fine-tuning in all (batch 32, lr 0.01, momentum 0.9"
            if s.optimizer == "sgd"
            else f"{s.optimizer.capitalize()} steps of fine-tuning in all (batch 32, the "
            "compile's lr, labels and the input model as teacher at equal weight, the rate "
            "held for 70 % of the steps and then decayed along a cosine"
        )
        + ", the data set's train "
        f"split, one torch thread). Accuracy: the data set's test split ({tests}) in "
        "onnxruntime. Latency: all points of one model (the input, every method's) "
        f"timed together in onnxruntime ({target.threads} thread, batch 1, `ORT_ENABLE_ALL`), "
        f"round-robin: {s.rounds} rounds, each timing every model {s.runs} times in turn "
        "(`hwcc.targets.cpu.target.measure_models`, one round per call); a speed-up is the "
        "median over rounds of the input's latency over the point's within the round, and a "
        "latency is the input's median latency over that speed-up. This shared machine switches "
        "between two speeds about 1.8x apart, so absolute latencies are only indicative; ratios "
        "within a round are what is compared."
    )
