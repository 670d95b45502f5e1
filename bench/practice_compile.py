"""Real pretrained models nobody here wrote, compiled as a user would (issue 13's bar).

Each model of the practice set (:mod:`bench.practice`: OCR recognisers, classifiers and
detectors, voice-activity detectors, a turn-taking transformer, and the zoo's
transformer encoder through both torch exporters) is compiled from the command line to
70 % of its cpu latency with realistic inputs, then checked outside the compiler
(:mod:`bench.practice.must_show`): original and compiled timed side by side, each priced
by the cpu target, and the fidelity on fresh held-out inputs (64; for a model that
carries state, as many frames as its compile data) beside the run's own.
The CNNs are compiled for Eyeriss at 50 % as well.

The work folder (models' data, artifacts, ``results.json``) is
``$HWCC_PRACTICE_WORK`` or the cache's ``hwcc/practice-bench``: a model already in its
``results.json`` is not compiled again, so a killed run loses only the model in hand.
With ``HWCC_PRACTICE_REPORT_ONLY=1`` the section compiles nothing and reports what the
work folder holds, listing the models it has no result for. ``HWCC_PRACTICE_ALSO`` names
more work folders (separated by ``os.pathsep``) whose results are reported in a second
table: later compiles of the same models, or compiles with other flags (``must_show
--flag``), each row naming its flags; ``HWCC_PRACTICE_ALSO_NOTE`` is a sentence added to
that table's caption (where and when those ran).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.practice import models, must_show

TITLE = "Real pretrained models: compile to 70 % of cpu latency"
ORDER = 70

QUICK = ("ppocr_cls",)


def work_folder() -> Path:
    given = os.environ.get("HWCC_PRACTICE_WORK")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "hwcc" / "practice-bench"


def run(quick: bool, out: Path) -> dict[str, Any]:
    ids = list(QUICK) if quick else [m.id for m in models.PRACTICE] + list(must_show.ZOO)
    work = work_folder()
    if os.environ.get("HWCC_PRACTICE_REPORT_ONLY") == "1":
        saved = work / "results.json"
        results = json.loads(saved.read_text()) if saved.exists() else {}
    else:
        results = must_show.run(ids, work, eyeriss=not quick)
    rows = [must_show.line(i, results[i]) for i in ids if i in results]
    missing = [i for i in ids if i not in results]
    what = (
        f"`hwcc compile MODEL --target cpu --budget 70% --data D.npz` for {len(ids)} models "
        "(and `--target eyeriss --budget 50%` for the CNNs), one process at a time, then the "
        "original and `OUT/model.onnx` timed side by side in onnxruntime and priced by the "
        "cpu target; fidelity on held-out inputs drawn with another seed (64; for a model "
        "that carries state, as many consecutive frames as its compile data). Prediction "
        "error is predicted / measured − 1 (nn-Meter's bar: ±10 %)."
    )
    if os.environ.get("HWCC_PRACTICE_REPORT_ONLY") == "1":
        what = (
            "Reported from the work folder's results (`HWCC_PRACTICE_REPORT_ONLY=1`): the "
            "compiles ran earlier, one process at a time on this 2-core machine, each model's "
            "wall time in the second column. " + what
        )
    markdown = "\n".join([must_show.HEADER, *rows])
    if missing:
        markdown += f"\n\nNot compiled in this run: {', '.join(missing)}."
    also = _also(ids)
    if also:
        note = os.environ.get("HWCC_PRACTICE_ALSO_NOTE", "")
        markdown += (
            "\n\nMore compiles of the same models, from the work folders "
            "`HWCC_PRACTICE_ALSO` names: later runs, or other flags (named in their row); "
            f"data drawn as above.{' ' + note if note else ''}\n\n"
            + "\n".join([must_show.HEADER, *(must_show.line(i, row) for i, row in also)])
        )
    data = {"results": results, "also": [{"model": i, **row} for i, row in also]}
    return {"title": TITLE, "what": what, "markdown": markdown, "data": data}


def _also(ids: list[str]) -> list[tuple[str, dict]]:
    """``(model id, result row)`` from every work folder ``HWCC_PRACTICE_ALSO`` names."""
    out = []
    for folder in filter(None, os.environ.get("HWCC_PRACTICE_ALSO", "").split(os.pathsep)):
        saved = Path(folder) / "results.json"
        found = json.loads(saved.read_text()) if saved.exists() else {}
        out += [(i, found[i]) for i in ids if i in found]
    return out


if __name__ == "__main__":
    print(json.dumps(run(True, Path("."))["data"], indent=2))
