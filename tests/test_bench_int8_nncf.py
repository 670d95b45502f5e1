"""The int8 bench section's NNCF rows: NNCF's quantizer on a real digits model, and the page
with and without nncf installed (the rows, or a line saying nncf is absent)."""

from __future__ import annotations

import importlib.metadata

import pytest

from bench import _int8_nncf as nncf_rows
from bench.int8 import METHODS, _markdown, methods

# NNCF's int8 may lose at most this much top-1 accuracy on lenet5-digits (359 test images:
# one image is 0.28 points, so this allows three)
TOLERANCE = 0.009


def test_nncf_int8_runs_in_onnxruntime_and_keeps_accuracy(tmp_path):
    pytest.importorskip("nncf")
    import hwcc
    from bench._int8_models import accuracy, int8_kernels, kernels, load_split
    from hwcc.ir.onnx_io import to_proto

    src = hwcc.load("zoo:lenet5-digits")
    fp32 = to_proto(src).SerializeToString()
    x_train, _ = load_split("zoo:digits", "train")
    x_test, y_test = load_split("zoo:digits", "test")
    int8 = nncf_rows.nncf_int8(fp32, x_train[:32], src.real_inputs()[0])
    before, after = accuracy(fp32, x_test, y_test), accuracy(int8, x_test, y_test)
    assert after >= before - TOLERANCE, (before, after)
    ran = kernels(int8, str(tmp_path))
    assert int8_kernels(ran) > 0, ran  # onnxruntime fused NNCF's Q/DQ pairs into int8 kernels
    assert ran.get("QuantizeLinear", 0) > 0


def _family(rows: tuple[str, ...]) -> dict:
    def row(i: int) -> dict:
        return {
            "latency_s": 1e-4 * (1 + i),
            "speedup": 1 / (1 + i),
            "accuracy": 0.98,
            "accuracy_change": 0.0 if i == 0 else -0.0028,
            "bytes": 4096,
            "int8_kernels": 0 if i == 0 else 2,
            "qdq": 0 if i == 0 else 4,
            "kernels": {"Conv": 2} if i == 0 else {"QLinearConv": 2, "BatchNormalization": 1},
        }

    return {"model": "lenet5-digits", "rows": {m: row(i) for i, m in enumerate(rows)}}


NOISE = {"median": 0.01, "max": 0.02, "rounds": 3}


def test_page_has_the_nncf_rows_when_nncf_is_installed():
    rows = methods("3.4.0")
    assert rows == METHODS + nncf_rows.METHODS
    page = _markdown([_family(rows)], rows, "", NOISE, "3.4.0")
    for m in nncf_rows.METHODS:
        assert f"| {m} |" in page
    assert "NNCF int8 runs at 0.17x the fp32 speed" in page
    assert "BatchNormalization nodes stay" in page
    assert "not installed" not in page
    assert "nncf 3.4.0" in nncf_rows.what(32, "3.4.0")


def test_page_says_nncf_is_absent_when_it_is_not_installed(monkeypatch):
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert nncf_rows.version() is None
    rows = methods(None)
    assert rows == METHODS
    page = _markdown([_family(rows)], rows, "", NOISE, None)
    assert "NNCF" in page and "nncf is not installed" in page
    assert "| NNCF int8 |" not in page
    assert "nncf is not installed" in nncf_rows.what(32, None)


def test_float_layers_counts_float_conv_gemm_matmul_fused_or_not():
    counts = {"Conv": 2, "FusedConv": 3, "Gemm": 1, "FusedMatMul": 1, "QLinearConv": 4, "Relu": 2}
    assert nncf_rows.float_layers(counts) == 7
    assert nncf_rows.float_layers({"QLinearConv": 2, "QGemm": 1}) == 0
