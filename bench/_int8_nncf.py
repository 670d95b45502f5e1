"""NNCF's int8 post-training quantization (ONNX backend): the third quantizer of bench.int8.

``nncf.quantize(model, nncf.Dataset(...))`` with its defaults: the ``performance`` preset
(weights and activations symmetric: zero point 0, activations it finds non-negative in uint8,
the others in int8), weights per output channel, MinMax ranges over
``subset_size`` calibration samples, then its fast bias correction; the result is a QDQ model
like the other quantizers'. Two rows: NNCF on the model as given (the fp32 model every other
row starts from), and NNCF on the model after onnxruntime's ``quant_pre_process`` (the start of
onnxruntime's rows), since NNCF's ONNX backend does not fold BatchNormalization itself and a
BatchNormalization left between a Conv and the next QuantizeLinear keeps onnxruntime from
fusing that Conv into an int8 kernel.

nncf is in the ``bench`` extra; where it is not installed these rows are absent and the page
says so (:func:`absent`). nncf is imported only when a model is quantized.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import numpy as np

from bench._int8_models import quiet

METHODS = ("NNCF int8", "NNCF int8 after quant_pre_process")
SHORT = ("NNCF", "NNCF after pre-process")
# matplotlib's tab10 purple and brown: hwcc.report.svg names five colours, all in use
COLORS = ("#9467bd", "#8c564b")
LAYERS = ("Conv", "Gemm", "MatMul")


def version() -> str | None:
    """The installed nncf's version, or None when nncf is not installed."""
    try:
        return importlib.metadata.version("nncf")
    except importlib.metadata.PackageNotFoundError:
        return None


def nncf_int8(model: bytes, calib: np.ndarray, input_name: str) -> bytes:
    """``nncf.quantize`` with its defaults on ``model``, calibrated on every image of ``calib``
    (batch 1, ``subset_size=len(calib)``); the quantized model's bytes.

    Raises:
        ImportError: nncf is not installed.
    """
    # nncf reports usage over the network unless told it runs in CI (its NNCF_CI
    # variable, read when nncf is imported): a benchmark here sends nothing.
    os.environ.setdefault("NNCF_CI", "1")
    import nncf
    import onnx

    proto = onnx.load_from_string(model)
    dataset = nncf.Dataset([{input_name: calib[i : i + 1]} for i in range(len(calib))])
    with quiet():  # its progress bars and warnings, for every model
        out = nncf.quantize(proto, dataset, subset_size=len(calib))
    return out.SerializeToString()


def what(calibration: int, installed: str | None) -> str:
    """The page's description of the NNCF rows (or of their absence)."""
    if installed is None:
        return absent()
    return (
        f"*NNCF int8* (nncf {installed}, ONNX backend): `nncf.quantize(model, "
        f"nncf.Dataset(...), subset_size={calibration})` with every other setting its default "
        "(the `performance` preset: weights and activations symmetric, zero point 0, with "
        "activations it finds non-negative in uint8 and the others in int8; weights per output "
        "channel; MinMax ranges; then its fast bias correction), on the fp32 model as given; "
        "*NNCF int8 after quant_pre_process*: the same on the model `quant_pre_process` made "
        "for the ORT rows (BatchNormalization folded), since NNCF's ONNX backend does not fold "
        "BatchNormalization itself."
    )


def absent() -> str:
    """The page's line for a run without nncf: the NNCF rows are missing, and why."""
    return (
        "*NNCF int8* rows: absent from this run, because nncf is not installed "
        "(`pip install -e '.[bench]'` installs it)."
    )


def findings(families: list[dict[str, Any]]) -> list[str]:
    """The page's findings on the NNCF rows, from the measured rows of each model."""
    out = []
    for f in families:
        r = f["rows"]
        if METHODS[0] not in r:
            continue
        raw, pre, ort = r[METHODS[0]], r[METHODS[1]], r["ORT int8 per-channel"]
        line = (
            f"- `{f['model']}`: NNCF int8 runs at {raw['speedup']:.2f}x the fp32 speed, "
            f"{raw['accuracy_change'] * 100:+.2f} points, int8 kernels {raw['int8_kernels']}, "
            f"float layers {float_layers(raw['kernels'])}; after quant_pre_process "
            f"{pre['speedup']:.2f}x, {pre['accuracy_change'] * 100:+.2f} points, int8 kernels "
            f"{pre['int8_kernels']}, float layers {float_layers(pre['kernels'])} (ORT "
            f"per-channel: {ort['speedup']:.2f}x, int8 kernels {ort['int8_kernels']}, float "
            f"layers {float_layers(ort['kernels'])})."
        )
        bn = raw["kernels"].get("BatchNormalization", 0)
        if bn:
            line += (
                f" On the model as given, {bn} BatchNormalization nodes stay in the graph "
                "onnxruntime runs, each after a Conv that therefore runs in float between "
                "DequantizeLinear nodes."
            )
        out.append(line)
    if out:
        out.append(
            "- *float layers* are the Conv, Gemm and MatMul kernels (fused or not) that "
            "onnxruntime still runs in float in an int8 model: where it cannot fuse a quantized "
            "layer's Q/DQ pattern into an int8 kernel, it dequantizes that layer's int8 weights "
            "on every run and computes in float."
        )
    return out


def float_layers(kernels: dict[str, int]) -> int:
    """Conv, Gemm and MatMul kernels (onnxruntime's fused forms included) that run in float."""
    return sum(n for op, n in kernels.items() if op.removeprefix("Fused") in LAYERS)
