"""int8's models: hwcc's int8 and onnxruntime's ``quantize_static``, and what onnxruntime runs.

The two quantizers of :mod:`bench.int8`, each from an fp32 model to a QDQ model's bytes
(NNCF's, the third, is :mod:`bench._int8_nncf`), onnxruntime's ``quant_pre_process`` that
onnxruntime's rows (and one NNCF row) start from, the data a model is calibrated and
tested on, and what the section measures of a model in onnxruntime besides its latency:
accuracy and the kernels it runs. hwcc and onnxruntime are imported when the section
runs, not with :func:`int8_kernels`, which the tests import.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

# the data set a zoo model was trained on (bench._width_common.data_of) -> its hwcc module
_DATA_MODULES = {"zoo:digits": "hwcc.models.digits", "zoo:glyphs": "hwcc.models.glyphs"}


def load_split(data: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of one split (``"train"`` or ``"test"``) of a bundled data set, ``data`` being
    ``zoo:digits`` or ``zoo:glyphs``.

    Raises:
        ValueError: ``data`` is neither.
    """
    import importlib

    if data not in _DATA_MODULES:
        raise ValueError(f"no bundled data set {data!r}; known: {', '.join(_DATA_MODULES)}")
    return importlib.import_module(_DATA_MODULES[data]).load_split(split)


def hwcc_int8(src, calib: np.ndarray, seed: int) -> bytes:
    """hwcc's int8: the cleanups ``hwcc compile`` runs, then the ``quantize_int8`` pass
    (MinMax on ``calib``)."""
    from hwcc.ir.cleanup import cleanup  # hwcc only when the section runs
    from hwcc.ir.onnx_io import to_proto  # hwcc only when the section runs
    from hwcc.ir.transform import PassContext, get_pass  # hwcc only when the section runs

    graph = cleanup(src, seed=seed)
    name = graph.real_inputs()[0]
    knobs = {"quantize_int8": {"calibration": "minmax", "samples": len(calib)}}
    ctx = PassContext(knobs=knobs, data={name: calib}, seed=seed, verify=False)
    res = get_pass("quantize_int8")(graph, ctx)
    if not res.modified:
        raise RuntimeError(f"hwcc's int8 quantization did not apply: {res.reason}")
    return to_proto(res.graph).SerializeToString()


def pre_process(fp32: bytes, folder: str) -> bytes:
    """onnxruntime's ``quant_pre_process`` with its defaults (symbolic shape inference and
    onnxruntime's basic graph optimizations, which fold BatchNormalization into Conv)."""
    from onnxruntime.quantization import quant_pre_process

    src, pre = os.path.join(folder, "fp32.onnx"), os.path.join(folder, "pre.onnx")
    Path(src).write_bytes(fp32)
    with quiet():
        quant_pre_process(src, pre)
    return Path(pre).read_bytes()


@contextlib.contextmanager
def quiet():
    """Quantizers' advice and progress (logged and printed for every model) kept off the
    section's output; errors still raise."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def ort_int8(
    fp32: bytes,
    calib: np.ndarray,
    input_name: str,
    per_channel: bool,
    folder: str,
    op_types: tuple[str, ...] | None = None,
) -> bytes:
    """``quant_pre_process`` then ``quantize_static`` (QDQ, MinMax, int8 activations and weights);
    ``op_types``: quantize only these (None: every op it can)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter({input_name: calib[i : i + 1]} for i in range(len(calib)))

        def get_next(self):
            return next(self._it, None)

    pre = os.path.join(folder, "ort-src.onnx")
    Path(pre).write_bytes(pre_process(fp32, folder))
    dst = os.path.join(folder, "int8.onnx")
    options: dict[str, Any] = {"per_channel": True} if per_channel else {}
    if op_types:
        options["op_types_to_quantize"] = list(op_types)
    with quiet():
        quantize_static(
            pre,
            dst,
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            **options,
        )
    return Path(dst).read_bytes()


def _session(model: bytes, optimized: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = 1, 3
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def accuracy(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a batch-1 classifier, run sample by sample in onnxruntime."""
    s = _session(model)
    name = s.get_inputs()[0].name
    hits = sum(int(np.argmax(s.run(None, {name: x[i : i + 1]})[0]) == y[i]) for i in range(len(y)))
    return hits / len(y)


def kernels(model: bytes, folder: str) -> dict[str, int]:
    """Op types of the graph onnxruntime runs (after its optimizations), counted."""
    import onnx

    path = os.path.join(folder, "optimized.onnx")
    _session(model, path)
    return dict(Counter(n.op_type for n in onnx.load(path).graph.node))


def int8_kernels(counts: dict[str, int]) -> int:
    """Kernels that compute in int8 (``QLinear*``, ``QGemm``, ``*Integer*``), counted."""
    return sum(
        n
        for op, n in counts.items()
        if op.startswith("QLinear") or op == "QGemm" or "Integer" in op
    )
