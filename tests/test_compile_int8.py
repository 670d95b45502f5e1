"""The int8 start end to end on this CPU (slow): the zoo's transformer encoder compiled to
80 % of its latency starts with its MatMuls in dynamic int8, and the artifact holds them,
loads again with every shape known, and runs in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import hwcc
from hwcc.ir.verify import run_onnx


@pytest.mark.slow
def test_transformer_encoder_starts_in_int8_on_the_cpu(tmp_path):
    out = tmp_path / "art"
    result = hwcc.compile("zoo:transformer_encoder", "cpu", "80%", output=out, seed=0)
    first = result.summary.history[0]
    assert first["layer"].startswith("int8 start") and first["pass"] == "quantize_dynamic"
    g = hwcc.load(out / "model.onnx")
    assert any(n.op_type == "DynamicQuantizeMatMul" for n in g.nodes)
    tokens = np.zeros((1, 32), np.int64)
    (y,) = run_onnx(g, {g.real_inputs()[0]: tokens})[:1]
    assert np.isfinite(y).all()


@pytest.mark.slow
def test_no_int8_start_keeps_the_model_float(tmp_path):
    out = tmp_path / "art"
    hwcc.compile("zoo:transformer_encoder", "cpu", "80%", output=out, seed=0, int8_start=False)
    g = hwcc.load(out / "model.onnx")
    assert not any(n.op_type == "DynamicQuantizeMatMul" for n in g.nodes)
