"""hwcc's int8 quantization against onnxruntime's ``quantize_static`` and NNCF's, on this CPU.

All three produce QDQ models (QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into
int8 kernels such as ``QLinearConv`` when it loads the model), with

    q = clip(round(x / s) + z, −128, 127),        x̂ = (q − z)·s,

weights symmetric (``z = 0``), activations asymmetric with ``[min, max]`` from the same
calibration images (MinMax). What differs, by construction:

* **hwcc** (the ``quantize_int8`` pass, after the cleanups ``hwcc compile`` runs,
  :func:`hwcc.ir.cleanup.cleanup`: BatchNormalization folded, constants folded, dead
  nodes removed) quantizes the
  weights and inputs of Conv, Gemm and MatMul only, weights per output channel; every
  other op (Add, pooling, Flatten) stays float between a DequantizeLinear and the next
  QuantizeLinear.
* **onnxruntime, per-channel**: ``quant_pre_process`` (symbolic shape inference and
  onnxruntime's basic graph optimizations, which fold BatchNormalization), then
  ``quantize_static`` with its default operator set (every op it has an int8 form for:
  Add, pooling, Flatten and Reshape too), weights per output channel.
* **onnxruntime, defaults**: the same with ``quantize_static``'s defaults, weights per tensor.
* **onnxruntime, hwcc's ops**: per-channel, ``op_types_to_quantize`` limited to Conv, Gemm
  and MatMul: what is left of the difference once the operator set is the same.
* **NNCF** (:mod:`bench._int8_nncf`): ``nncf.quantize`` with its defaults (activations
  symmetric too, then bias correction), on the fp32 model as given and on the model after
  ``quant_pre_process``; absent, and said to be, when nncf is not installed.

Each model is calibrated and tested on the data set it was trained on (digits, or glyphs for
the ``-glyphs`` models). Accuracy is top-1 on that test split in onnxruntime; latency is
every model of every family timed together, round-robin (:func:`bench.width.measure`),
each ratio to fp32 taken within one round so that it compares models under the same state
of this shared machine.

This module holds the settings, the run and the page; hwcc's and onnxruntime's quantizers,
accuracy and the kernels onnxruntime runs are :mod:`bench._int8_models`, NNCF's rows
:mod:`bench._int8_nncf`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import _int8_nncf as nncf_rows
from bench._common import md_table, save_svg
from bench._int8_models import (
    accuracy,
    hwcc_int8,
    int8_kernels,
    kernels,
    load_split,
    ort_int8,
    pre_process,
)
from bench._width_common import data_of
from bench.width import measure

TITLE = "hwcc int8 against onnxruntime's quantize_static and NNCF on this CPU"
ORDER = 50

SEED = 0
# the ops hwcc's int8 quantizes (hwcc.passes.lib.weights.LAYER_OPS)
LAYER_OPS = ("Conv", "Gemm", "MatMul")
METHODS = (
    "fp32",
    "hwcc int8",
    "ORT int8 per-channel",
    "ORT int8 defaults",
    "ORT int8 per-channel, Conv/Gemm/MatMul",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much is run.

    Attributes:
        models: zoo models, digits and glyphs ones.
        calibration: calibration images, the first ones of each model's train split.
        rounds: rounds of the round-robin latency measurement (:func:`bench.width.measure`).
        runs: timed runs per model per round.
    """

    models: tuple[str, ...]
    calibration: int
    rounds: int
    runs: int


QUICK = Settings(models=("lenet300-digits", "mobilenet-digits"), calibration=32, rounds=10, runs=30)
FULL = Settings(
    models=(
        "lenet300-digits",
        "lenet5-digits",
        "mobilenet-digits",
        "resnet-digits",
        "mobilenet-glyphs",
        "resnet-glyphs",
    ),
    calibration=256,
    rounds=50,
    runs=50,
)


# ---------------------------------------------------------------------- the models
def methods(nncf_version: str | None) -> tuple[str, ...]:
    """The rows of each model: :data:`METHODS`, and NNCF's when nncf is installed."""
    return METHODS + (nncf_rows.METHODS if nncf_version else ())


def _family(name: str, s: Settings, folder: str, nncf_version: str | None) -> dict[str, Any]:
    import hwcc
    from hwcc.ir.onnx_io import to_proto  # hwcc only when the section runs

    src = hwcc.load(f"zoo:{name}")
    x_train, _ = load_split(data_of(name), "train")
    calib = x_train[: s.calibration]
    fp32 = to_proto(src).SerializeToString()
    input_name = src.real_inputs()[0]
    t0 = time.monotonic()
    models = {"fp32": fp32, "hwcc int8": hwcc_int8(src, calib, SEED)}
    t1 = time.monotonic()
    models["ORT int8 per-channel"] = ort_int8(fp32, calib, input_name, True, folder)
    models["ORT int8 defaults"] = ort_int8(fp32, calib, input_name, False, folder)
    models[METHODS[4]] = ort_int8(fp32, calib, input_name, True, folder, LAYER_OPS)
    t2 = time.monotonic()
    seconds = {"hwcc": t1 - t0, "onnxruntime (three models)": t2 - t1}
    if nncf_version:
        for m, start in zip(nncf_rows.METHODS, (fp32, pre_process(fp32, folder))):
            models[m] = nncf_rows.nncf_int8(start, calib, input_name)
        seconds["nncf (two models)"] = time.monotonic() - t2
    return {"model": name, "data": data_of(name), "models": models, "quantize_s": seconds}


# ---------------------------------------------------------------------- the section
def run(quick: bool, out: Path) -> dict[str, Any]:
    from hwcc.targets.base import load_target  # hwcc only when the section runs

    s = QUICK if quick else FULL
    target = load_target("cpu")
    installed = nncf_rows.version()
    rows = methods(installed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as folder:
        families = [_family(name, s, folder, installed) for name in s.models]
        for f in families:
            x_test, y_test = load_split(f["data"], "test")
            f["test_samples"] = len(y_test)
            f["rows"] = {
                m: {
                    "accuracy": accuracy(b, x_test, y_test),
                    "bytes": len(b),
                    "kernels": kernels(b, folder),
                }
                for m, b in f["models"].items()
            }
    every = [(f, m) for f in families for m in rows]
    got = measure(
        [f["models"][m] for f, m in every],
        target.threads,
        s.rounds,
        s.runs,
        reference=[i - i % len(rows) for i in range(len(every))],  # each family's fp32
    )
    for i, (f, m) in enumerate(every):
        f["rows"][m].update(
            latency_s=got["latency_s"][i],
            speedup=got["speedup"][i],
            spread=got["spread"][i],
            rounds_s=[r[i] for r in got["rounds_s"]],
        )
    for f in families:
        del f["models"]
        base = f["rows"]["fp32"]
        for r in f["rows"].values():
            r["size_ratio"] = base["bytes"] / r["bytes"]
            r["accuracy_change"] = r["accuracy"] - base["accuracy"]
            r["int8_kernels"] = int8_kernels(r["kernels"])
            r["qdq"] = r["kernels"].get("QuantizeLinear", 0) + r["kernels"].get(
                "DequantizeLinear", 0
            )
    plot = _plot(families, rows, out)
    # fp32 is its own reference
    spread = [x for (_, m), x in zip(every, got["spread"]) if m != "fp32"]
    noise = {"median": float(np.median(spread)), "max": max(spread), "rounds": s.rounds}
    data = {
        "spread": noise,
        "settings": dataclasses.asdict(s),
        "methods": list(rows),
        "nncf": installed,
        "families": families,
        "threads": target.threads,
        "seconds": time.monotonic() - t0,
    }
    return {
        "title": TITLE,
        "what": _what(s, target, families, rows, installed),
        "markdown": _markdown(families, rows, plot, noise, installed),
        "data": data,
    }


def _what(s: Settings, target, families: list[dict[str, Any]], rows, installed) -> str:
    models = ", ".join(f"`{m}`" for m in s.models)
    tests = {f["data"]: f["test_samples"] for f in families}
    tested = " and ".join(f"{n} images of `{d}`" for d, n in tests.items())
    return (
        f"Models {models}, each with the data set it was trained on (`zoo:digits`, or "
        "`zoo:glyphs` for the `-glyphs` models). Calibration: the first "
        f"{s.calibration} images of that data set's train split, one at a time (batch 1), the "
        "same for every method; MinMax ranges; int8 activations (per tensor, asymmetric except "
        "in NNCF's rows) and int8 weights (symmetric), QDQ format. *hwcc "
        "int8*: BatchNormalization folded, constants folded, dead nodes removed (as `hwcc "
        "compile` does), then the `quantize_int8` pass with `calibration=minmax, "
        f"samples={s.calibration}`: weights per output channel, Conv/Gemm/MatMul only. *ORT int8 "
        "per-channel*: `quant_pre_process` (defaults: symbolic shape inference and onnxruntime's "
        "basic optimizations) then `quantize_static(quant_format=QDQ, activation_type=QInt8, "
        "weight_type=QInt8, calibrate_method=MinMax, per_channel=True)` with its default "
        "operator set (all it can quantize) and default `extra_options` (weights symmetric, "
        "activations asymmetric). *ORT int8 defaults*: the same with `per_channel=False` (its "
        "default). *ORT int8 per-channel, Conv/Gemm/MatMul*: per-channel with "
        "`op_types_to_quantize=['Conv', 'Gemm', 'MatMul']`, hwcc's scope, to tell the scope's "
        f"effect from the rest. {nncf_rows.what(s.calibration, installed)} Accuracy: top-1 on "
        f"the test split ({tested}) in onnxruntime. Latency: all "
        f"{len(s.models) * len(rows)} models timed together in "
        f"onnxruntime ({target.threads} thread, batch 1, `ORT_ENABLE_ALL`), round-robin: "
        f"{s.rounds} rounds, each timing every model {s.runs} times in turn "
        "(`hwcc.targets.cpu.target.measure_models`, one round per call); a speed-up is the "
        "median over rounds of the fp32 model's latency over the int8 one's within the round, "
        "and a latency is the fp32 model's median latency over that speed-up (this shared "
        "machine switches between two speeds about 1.8x apart: absolute latencies are "
        "indicative, ratios are what is compared). *int8 kernels* counts the ops of the graph "
        "onnxruntime actually runs after its optimizations that compute in int8 (`QLinear*`, "
        "`QGemm`, `*Integer*`), *Q/DQ nodes* the QuantizeLinear and DequantizeLinear nodes left "
        "in it (conversions between float and int8 at run time)."
    )


def _markdown(
    families: list[dict[str, Any]], rows, plot: str, noise: dict[str, float], installed
) -> str:
    table = []
    for f in families:
        for m in rows:
            r = f["rows"][m]
            table.append(
                (
                    f"`{f['model']}`",
                    m,
                    f"{r['latency_s'] * 1e6:.1f} us",
                    f"{r['speedup']:.2f}x",
                    f"{r['accuracy']:.2%}",
                    f"{r['accuracy_change'] * 100:+.2f}",
                    f"{r['bytes'] / 1024:.0f} KiB",
                    r["int8_kernels"],
                    r["qdq"],
                    sum(r["kernels"].values()),
                )
            )
    lines = [
        md_table(
            [
                "model",
                "method",
                "measured latency",
                "speed-up vs fp32",
                "test accuracy",
                "accuracy change (points)",
                "model file",
                "int8 kernels",
                "Q/DQ nodes",
                "kernels in all",
            ],
            table,
            "llrrrrrrrr",
        ),
        "",
    ]
    if installed is None:
        lines += [f"- {nncf_rows.absent()}"]
    lines += _findings(families, rows)
    lines += nncf_rows.findings(families)
    lines.append(
        f"- Noise: the interquartile range of a speed-up's {noise['rounds']} per-round values, "
        f"relative to it, is {noise['median']:.1%} for the median model and at most "
        f"{noise['max']:.1%}."
    )
    lines += ["", plot]
    return "\n".join(lines)


def _findings(families: list[dict[str, Any]], rows) -> list[str]:
    out = []
    for f in families:
        h, o, d, n = (f["rows"][m] for m in METHODS[1:])
        faster = "hwcc's" if h["latency_s"] < o["latency_s"] else "onnxruntime's"
        ratio = max(h["latency_s"], o["latency_s"]) / min(h["latency_s"], o["latency_s"])
        out.append(
            f"- `{f['model']}`: hwcc int8 runs at {h['speedup']:.2f}x the fp32 speed, "
            f"{h['accuracy_change'] * 100:+.2f} points; ORT per-channel {o['speedup']:.2f}x, "
            f"{o['accuracy_change'] * 100:+.2f} points ({faster} model is {ratio:.2f}x faster; "
            f"Q/DQ nodes {h['qdq']} against {o['qdq']}); ORT defaults {d['speedup']:.2f}x, "
            f"{d['accuracy_change'] * 100:+.2f} points; ORT restricted to hwcc's ops "
            f"{n['speedup']:.2f}x, {n['accuracy_change'] * 100:+.2f} points."
        )
    slower = [f["model"] for f in families if all(f["rows"][m]["speedup"] < 1 for m in rows[1:])]
    if slower:
        out.append(
            "- int8 is slower than fp32 here for every method on "
            f"{', '.join(f'`{m}`' for m in slower)}: the layers are so small that "
            "converting activations between float and int8 around the int8 kernels (and the "
            "layout changes onnxruntime inserts for them) costs more than the int8 arithmetic "
            "saves."
        )
    out.append(
        "- hwcc's int8 *is* `quantize_static` underneath (per-channel, MinMax, QDQ); what differs "
        "is what it asks for: only Conv/Gemm/MatMul are quantized, after hwcc's own "
        "BatchNormalization folding, so every op between them (ReLU, Add, pooling) runs in float "
        "behind a DequantizeLinear, where onnxruntime's default operator set keeps those in int8 "
        "too. The restricted ORT row shows how much of the difference that choice explains."
    )
    return out


_SHORT = dict(
    zip(
        METHODS + nncf_rows.METHODS,
        ("fp32", "hwcc", "ORT per-ch.", "ORT defaults", "ORT per-ch., hwcc ops") + nncf_rows.SHORT,
    )
)


def _plot(families: list[dict[str, Any]], rows, out: Path) -> str:
    # hwcc only when the section runs
    from hwcc.report.svg import BLUE, GREEN, GREY, ORANGE, RED, count_labels, hbars, percent_labels

    names = [f["model"] for f in families]
    colors = (RED, BLUE, ORANGE, GREEN, GREY) + nncf_rows.COLORS
    latency = hbars(
        "int8 on this CPU: measured latency relative to fp32 (lower is faster)",
        names,
        [
            (
                _SHORT[m],
                c,
                [f["rows"][m]["latency_s"] / f["rows"]["fp32"]["latency_s"] for f in families],
            )
            for m, c in zip(rows, colors)
        ],
        count_labels,
    )
    tests = {f["data"]: f["test_samples"] for f in families}
    sizes = ", ".join(f"{d.removeprefix('zoo:')} {n} images" for d, n in tests.items())
    error = hbars(
        f"Test error (1 - top-1 accuracy; {sizes})",
        names,
        [
            (_SHORT[m], c, [1 - f["rows"][m]["accuracy"] for f in families])
            for m, c in zip(rows, colors)
        ],
        percent_labels,
    )
    return "\n\n".join(
        (
            save_svg(
                out,
                "int8_latency.svg",
                latency,
                "int8 latency relative to fp32, per model and method",
            ),
            save_svg(out, "int8_error.svg", error, "test error per model and method"),
        )
    )
