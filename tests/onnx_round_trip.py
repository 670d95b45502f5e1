"""Helpers for the ONNX round-trip tests (tests/test_onnx_io_*.py): models onnxruntime
accepts, sessions, random feeds, and the round trip itself, which compares onnxruntime
running the original model with onnxruntime running ``save(load(model))``, to the bit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

import hwcc

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def make_model(graph: onnx.GraphProto, **opsets: int) -> onnx.ModelProto:
    """A model onnxruntime accepts (IR version 10) with opset 17 unless told otherwise."""
    imports = [helper.make_opsetid("", 17)] + [
        helper.make_opsetid(d.replace("_", "."), v) for d, v in opsets.items()
    ]
    return helper.make_model(graph, opset_imports=imports, ir_version=10)


def session(model: onnx.ModelProto | str | os.PathLike) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def random_feeds(sess: ort.InferenceSession, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    types = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    feeds = {}
    for i in sess.get_inputs():
        dt = types[i.type]
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = (
            rng.standard_normal(shape) if dt == np.float32 else rng.integers(0, 10, shape)
        ).astype(dt)
    return feeds


def identical(a, b) -> bool:
    if isinstance(a, list):
        return (
            isinstance(b, list) and len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
        )
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def assert_round_trip(
    model: onnx.ModelProto | Path, tmp_path: Path, feeds=None, **load_kw
) -> hwcc.Graph:
    graph = hwcc.load(model, **load_kw)
    out = tmp_path / "rt.onnx"
    hwcc.save(graph, out)
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    original = session(model)
    feeds = feeds or random_feeds(original)
    ref = original.run(None, feeds)
    got = session(out).run(None, feeds)
    assert identical(ref, got)
    return graph
