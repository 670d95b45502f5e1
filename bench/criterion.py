"""Which channels go: the filters' L2 norm against mean activations on the data.

The compile's pruning criterion (``SearchConfig.criterion``) decides which channels a
step removes. NetAdapt removes the filters of smallest L2 norm; ``activation`` removes
the channels whose mean |activation| on the fine-tune data is smallest, which also sees
the folded bias a channel carries through its activation. Each trained zoo model is
searched twice with the same seed, once per criterion, on its own bundled data set
(``hwcc.compile(model, "cpu", "35%", data=...)``, 20 iterations of 30 fine-tune steps,
no long-term fine-tune, no accuracy floor, so that both run the whole path), and the
held-out accuracy the search measured is read off its history: after the first step,
and at the first iteration predicted at or below 75, 50 and 35 % of the input's latency.

Each search's history is saved in the work folder (``$HWCC_BENCH_CRITERION_WORK`` or a
temporary one) as ``MODEL.CRITERION.json``; a search already there is not run again, so a
killed run loses only the search in hand.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import md_table
from bench._width_common import data_of

TITLE = "Pruning criterion: filter norm against mean activation"
ORDER = 58
CRITERIA = ("l2", "activation")
MARKS = (0.75, 0.5, 0.35)
FULL = {
    "models": ("resnet-glyphs", "mobilenet-glyphs", "resnet-digits", "mobilenet-digits"),
    "max_iterations": 20,
}
QUICK = {"models": ("lenet5-digits",), "max_iterations": 2}


def search(model: str, criterion: str, iterations: int) -> dict[str, Any]:
    """One search of ``model`` with ``criterion``: its wall time, input and history."""
    import hwcc  # the section's process only: discovering sections must not load torch

    t0 = time.monotonic()
    result = hwcc.compile(
        f"zoo:{model}",
        "cpu",
        f"{MARKS[-1] * 100:g}%",
        data=data_of(model),
        seed=0,
        max_iterations=iterations,
        short_term_steps=30,
        long_term_steps=0,
        max_accuracy_drop=None,
        criterion=criterion,
    )
    s = result.summary.to_json()
    return {
        "model": model,
        "criterion": criterion,
        "wall_s": time.monotonic() - t0,
        "original": s["original"],
        "history": s["history"],
    }


def path_points(run: dict[str, Any]) -> list[tuple[float, float]]:
    """``(predicted latency / input's, held-out accuracy)`` after every iteration."""
    r0 = run["original"]["latency_s"]
    return [(h["metrics"]["latency_s"] / r0, h["metrics"]["accuracy"]) for h in run["history"]]


def at_mark(points: list[tuple[float, float]], mark: float) -> tuple[float, float] | None:
    """The first point at or below ``mark`` of the input's latency, or None."""
    return next((p for p in points if p[0] <= mark + 1e-9), None)


def run(quick: bool, out: Path) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    given = os.environ.get("HWCC_BENCH_CRITERION_WORK")
    with tempfile.TemporaryDirectory(prefix="hwcc-bench-criterion-") as tmp:
        work = Path(given) if given else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs, reused = [], 0
        for model in plan["models"]:
            for criterion in CRITERIA:
                saved = work / f"{model}.{criterion}.json"
                reused += saved.exists()
                if not saved.exists():
                    result = search(model, criterion, plan["max_iterations"])
                    saved.write_text(json.dumps(result, indent=1, default=str))
                runs.append(json.loads(saved.read_text()))
                print(f"[criterion] {model} {criterion}: {runs[-1]['wall_s']:.0f} s", flush=True)
    what = (
        f"`hwcc.compile(zoo:MODEL, 'cpu', '{MARKS[-1] * 100:g}%', data=zoo:glyphs or zoo:digits, "
        f"seed=0, max_iterations={plan['max_iterations']}, short_term_steps=30, "
        "long_term_steps=0, max_accuracy_drop=None, criterion=C)` for each model and "
        "criterion, one process at a time; accuracy is the search's own held-out top-1 "
        "after each iteration (the proposal's short fine-tune only), at the first iteration "
        "predicted at or below each share of the input's latency."
    )
    if reused:
        what += (
            f" {reused} of the {len(runs)} searches were read from the work folder "
            "(`HWCC_BENCH_CRITERION_WORK`), where they ran earlier on a machine shared with "
            "other work: their wall times are not comparable with one another."
        )
    return {"title": TITLE, "what": what, "markdown": _body(runs), "data": runs}


def _cell(point: tuple[float, float] | None) -> str:
    return "not reached" if point is None else f"{point[1]:.1%} ({point[0]:.2f}x)"


def _body(runs: list[dict[str, Any]]) -> str:
    head = ["model", "criterion", "input", "after the first step"]
    head += [f"at {m * 100:g} %" for m in MARKS] + ["search"]
    rows = []
    for r in runs:
        points = path_points(r)
        first = _cell(points[0]) if points else "no step"
        rows.append(
            [r["model"], r["criterion"], f"{r['original']['accuracy']:.1%}", first]
            + [_cell(at_mark(points, m)) for m in MARKS]
            + [f"{r['wall_s'] / 60:.1f} min"]
        )
    return md_table(head, rows)
