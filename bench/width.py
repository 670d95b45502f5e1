"""hwcc's search against a uniform width multiplier, at equal latency measured on this CPU.

NetAdapt (Yang et al., ECCV 2018) reports networks up to 1.7x faster than MobileNet width
multipliers at equal or higher accuracy, latency measured on a phone's CPU and GPU. The
same comparison on the digits models, on this machine's CPU under onnxruntime:

* **Width multiplier** ``α``: every prunable channel group of ``C`` channels keeps its
  ``⌈α·C⌉`` filters of largest L2 norm (the ``prune_channels`` pass, ``ratio = 1 − α``;
  coupled layers, residual Adds and depthwise convolutions shrink with their group), and
  again with ``α·C`` rounded up to a multiple of 8, as MobileNet's published multipliers
  round it (the pass's ``round_to``). The multiplier's curve is the better of the two.
* **hwcc**: ``hwcc.compile(model, "cpu", "P%", data="zoo:digits")``, the NetAdapt loop
  priced by the ``cpu`` target's measured kernel tables, with the default passes
  (channel pruning, weight pruning, low-rank). One search runs to the smallest budget
  ``P_min``; its model after every iteration is kept, and the point for budget ``P`` is
  the first one predicted at or below ``P %`` of the input's latency: the model a run
  with budget ``P`` stops at (that run's last step would aim at exactly ``P``, so it may
  be a little less pruned).

Every point of both methods is then fine-tuned to the same total number of SGD steps
``T`` (a search point has had ``S`` steps per iteration along its path and gets the
rest) and scored on the digits test split in onnxruntime. All points of a model are
timed together, round-robin, as ``hwcc compile`` times its result on the ``cpu`` target
(:func:`hwcc.targets.cpu.target.measure_models`), and a speed-up is the median over rounds of
the ratio within one round (:func:`by_round`), so that it compares models under the same
state of this shared machine. The speed-up at equal accuracy reads the multiplier's
latency at the hwcc point's accuracy off the multiplier's curve (linear between its
points, after making accuracy non-decreasing in latency).

This module holds how much is run; the constants, the settings' type and the pure pieces are
:mod:`bench._width_common`, the points are made and measured in :mod:`bench._width_points`,
and the page is written by :mod:`bench._width_report`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from bench._common import one_torch_thread
from bench._width_common import DEFAULT_PASSES, PAPER_SPEEDUP, SEED, Settings

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
)


# ---------------------------------------------------------------------- the section
def run(quick: bool, out: Path) -> dict[str, Any]:
    # The points and the page import hwcc (and torch): when the section runs, not with its pure
    # pieces.
    from bench._width_points import model
    from bench._width_report import markdown, plot
    from hwcc.targets.base import load_target  # hwcc only when the section runs

    s = QUICK if quick else FULL
    target = load_target("cpu")
    t0 = time.monotonic()
    with one_torch_thread():
        models = [model(name, s, target) for name in s.models]
    plots = [plot(mod, out) for mod in models]
    data = {
        "settings": dataclasses.asdict(s),
        "models": models,
        "paper_speedup": PAPER_SPEEDUP,
        "threads": target.threads,
        "seconds": time.monotonic() - t0,
    }
    return {
        "title": TITLE,
        "what": _what(s, target),
        "markdown": markdown(models, plots),
        "data": data,
    }


def _what(s: Settings, target) -> str:
    budgets = ", ".join(f"{b * 100:g} %" for b in s.budgets)
    roundings = " and ".join(
        "⌈α·C⌉" if r == 1 else f"α·C rounded up to a multiple of {r}" for r in s.round_to
    )
    models = ", ".join(f"`{m}`" for m in s.models)
    alphas = ", ".join(f"{a:g}" for a in s.alphas)
    return (
        f"Digits models {models}, BatchNormalization folded first (as `hwcc compile` does), seed "
        f"{SEED}. hwcc: one `hwcc.compile(model, 'cpu', '{min(s.budgets) * 100:g}%', "
        f"data='zoo:digits', seed={SEED}, max_iterations={s.max_iterations}, "
        f"short_term_steps={s.short_term_steps}, long_term_steps=0)` per model with the default "
        f"passes ({', '.join(DEFAULT_PASSES)}), no accuracy floor; for each budget ({budgets} of "
        "the predicted latency) the first iteration's model predicted within it is a point. "
        "Width multiplier: `prune_channels` with `ratio = 1 - α` (L2-norm filter choice, every "
        f"prunable group keeps {roundings} channels), α in {alphas}, fine-tuned from the pruned "
        f"weights, not retrained from scratch. Every point of both methods has {s.total_steps} "
        "SGD steps of fine-tuning in all (batch 32, lr 0.01, momentum 0.9, digits train split, "
        "one torch thread). Accuracy: digits test split (359 images, one image = 0.28 points) in "
        "onnxruntime. Latency: all points of one model (the input, the multiplier's, hwcc's) "
        f"timed together in onnxruntime ({target.threads} thread, batch 1, `ORT_ENABLE_ALL`), "
        f"round-robin: {s.rounds} rounds, each timing every model {s.runs} times in turn "
        "(`hwcc.targets.cpu.target.measure_models`, one round per call); a speed-up is the "
        "median over rounds of the input's latency over the point's within the round, and a "
        "latency is the input's median latency over that speed-up. This shared machine switches "
        "between two speeds about 1.8x apart, so absolute latencies are only indicative; ratios "
        "within a round are what is compared."
    )
