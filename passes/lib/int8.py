"""Static int8 quantization in QDQ form, through ``onnxruntime.quantization.quantize_static``.

For a real value ``x``, int8 quantization with scale ``s`` and zero point ``z`` is

    q = clip(round(x / s) + z, −128, 127),        x̂ = (q − z)·s.

Weights are quantized per output channel and symmetrically (``z = 0``,
``s_c = max|W_c| / 127``, so ``q`` lies in ``[−127, 127]``; with ``reduce_range`` 7 bits,
``[−64, 64]``); activations per tensor and
asymmetrically, with ``[min, max]`` measured on calibration data (``minmax``), clipped to
a percentile of the histogram (``percentile``, 99.999 %), or chosen to minimise the KL
divergence between the float and the quantized histograms (``entropy``). Biases become
int32 with ``s_b = s_x·s_w``.

The model goes IR → ONNX → ``quantize_static`` (QuantizeLinear/DequantizeLinear pairs
inserted on the chosen layers' inputs and outputs) → IR. Nodes are named after the IR's
names on the way out so that the chosen layers can be named to onnxruntime, and each
node's ``meta`` (annotations earlier passes attached) is restored on the way back.

``reduce_range`` is for x86 CPUs without VNNI (:func:`saturating_cpu`): there
onnxruntime's int8 kernels multiply u8 by s8 with ``vpmaddubsw``, which sums pairs of
products into 16 bits and saturates, so a full-range model runs less accurately than its
own math (lenet5-digits: 97.5 % fused against 98.9 % with the QDQ math run as written,
on an AVX2-only EPYC). 7-bit weights keep the pair sums in range.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

from hwcc.errors import HwccError
from hwcc.ir import Graph, onnx_io
from hwcc.passes.lib.calibration import Feeds, Runner
from hwcc.passes.lib.weights import LAYER_OPS, WeightedLayer, sqnr_db

__all__ = ["METHODS", "int8_sqnr", "quantize_int8", "saturating_cpu"]

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
# quantize_static builds its entropy calibrator with 128 histogram bins for 128 quantized
# bins, which leaves the KL search one candidate (the full range: minmax again), and has
# no option to change it. So the ranges are computed here, with the 2048-bin histogram of
# the TensorRT calibrator the method comes from (Migacz, GTC 2017), and handed to
# quantize_static as its calibration cache.
_CALIBRATOR = {
    "minmax": {},
    "percentile": {},
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128},
}
_EXTERNAL_THRESHOLD = 1_800_000_000


class _Reader(CalibrationDataReader):
    def __init__(self, feeds: Sequence[Feeds]):
        self._it = iter(feeds)

    def get_next(self) -> Feeds | None:
        return next(self._it, None)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer prints progress and logs advice on the root logger."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


@functools.lru_cache(maxsize=4)  # the TPU's legal form quantizes every proposal
def saturating_cpu(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """This machine is x86 with AVX2 and without VNNI: onnxruntime's int8 kernels saturate
    on it (module docstring). False where it cannot tell."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    flags = set(line.partition(":")[2].split())
    return "avx2" in flags and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def quantize_int8(
    graph: Graph,
    layers: Sequence[WeightedLayer],
    feeds: Sequence[Feeds],
    method: str,
    reduce_range: bool = False,
) -> Graph:
    """The QDQ-quantized copy of ``graph``, with ``layers`` quantized (module docstring).

    Raises:
        HwccError: onnxruntime's quantizer failed on this model.
    """
    opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 0))
    if opset and opset < 10:
        raise HwccError(
            f"the model is at opset {opset}; int8 in QDQ form needs opset 10 or later",
            "re-export the model at opset 13 or later (per-channel int8 needs 13)",
        )
    # Per-channel scales need DequantizeLinear's axis, from opset 13 on: below it the weights
    # are quantized per tensor rather than the model's opset raised under its other ops
    # (an opset-12 Squeeze with axes as an attribute is invalid at 13).
    per_channel = not opset or opset >= 13
    named = graph.copy()
    for node in named.nodes:
        node.meta.pop("onnx_name", None)  # write every node under its (unique) IR name
    big = sum(a.nbytes for a in graph.initializers.values()) > _EXTERNAL_THRESHOLD
    with tempfile.TemporaryDirectory(prefix="hwcc-int8-") as d:
        src, dst = os.path.join(d, "float.onnx"), os.path.join(d, "int8.onnx")
        onnx_io.save(named, src)
        try:
            with _quiet():
                ranges = _calibrate(src, feeds, method, d, big)
                quantize_static(
                    src,
                    dst,
                    None,
                    quant_format=QuantFormat.QDQ,
                    calibration_cache_path=ranges,
                    op_types_to_quantize=list(LAYER_OPS),
                    nodes_to_quantize=[lay.name for lay in layers],
                    per_channel=per_channel,
                    reduce_range=reduce_range,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=METHODS[method],
                    use_external_data_format=big,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
                )
        except Exception as e:  # the quantizer raises many kinds; say which model step failed
            raise HwccError(
                f"quantize_int8: onnxruntime's quantize_static failed on this model: "
                f"{type(e).__name__}: {e}",
                "leave the failing layers out with --set layers=..., or use quantize_fixed16",
            ) from e
        quantized = onnx_io.load(dst)
    quantized.name = graph.name
    for node in quantized.nodes:
        if graph.has_node(node.name):
            node.meta = {**graph.node(node.name).meta}
    return quantized


def _calibrate(src: str, feeds: Sequence[Feeds], method: str, folder: str, big: bool) -> str:
    """Activation ranges of the model in ``src`` on ``feeds``, saved as a calibration cache."""
    calibrator = create_calibrator(
        Path(src),
        list(LAYER_OPS),
        augmented_model_path=os.path.join(folder, "aug.onnx"),
        calibrate_method=METHODS[method],
        use_external_data_format=big,
        extra_options=_CALIBRATOR[method],
    )
    calibrator.collect_data(_Reader(feeds))
    path = os.path.join(folder, "ranges.json")
    save_tensors_data(calibrator.compute_data(), path)
    return path


def dequantized_weight(quantized: Graph, layer: WeightedLayer) -> np.ndarray | None:
    """The weights ``layer`` reads in the quantized graph, as real values: ``(q − z)·s``."""
    if not quantized.has_node(layer.name):
        return None
    node = quantized.node(layer.name)
    dq = quantized.producer(node.inputs[layer.index]) if layer.index < len(node.inputs) else None
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = quantized.initializer(dq.inputs[0])
    s = quantized.initializer(dq.inputs[1])
    z = quantized.initializer(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] else None
    if q is None or s is None:
        return None
    shape = [1] * q.ndim
    if s.size > 1:
        shape[int(dq.attr("axis", 1)) % q.ndim] = -1
    zero = 0.0 if z is None else z.astype(np.float64).reshape(shape if z.size > 1 else ())
    return (q.astype(np.float64) - zero) * s.astype(np.float64).reshape(shape if s.size > 1 else ())


def int8_sqnr(
    graph: Graph, quantized: Graph, layers: Sequence[WeightedLayer], feeds: Sequence[Feeds]
) -> dict[str, Any]:
    """Weight SQNR per layer, and output SQNR per layer and per graph output on ``feeds``.

    A layer's output is compared before any QuantizeLinear that follows it (the layer's
    own float result, computed from quantized inputs and weights).
    """
    weights = {}
    for layer in layers:
        deq = dequantized_weight(quantized, layer)
        weights[layer.name] = sqnr_db(layer.array, deq) if deq is not None else None
    pairs = {
        lay.name: (lay.node.outputs[0], quantized.node(lay.name).outputs[0])
        for lay in layers
        if quantized.has_node(lay.name)
    }
    pairs.update({f"output:{o}": (o, o) for o in graph.outputs})
    ref = Runner(graph, [a for a, _ in pairs.values()])
    test = Runner(quantized, [b for _, b in pairs.values()])
    signal = dict.fromkeys(pairs, 0.0)
    noise = dict.fromkeys(pairs, 0.0)
    for feed in feeds:
        r, t = ref.run(feed), test.run(feed)
        for key, (a, b) in pairs.items():
            x, y = r[a].astype(np.float64), t[b].astype(np.float64)
            signal[key] += float(np.sum(x * x))
            noise[key] += float(np.sum((x - y) ** 2))
    out = {k: _db(signal[k], noise[k]) for k in pairs}
    return {
        "sqnr_db": weights,
        "output_sqnr_db": {k: v for k, v in out.items() if not k.startswith("output:")},
        "model_output_sqnr_db": {
            k[len("output:") :]: v for k, v in out.items() if k.startswith("output:")
        },
    }


def _db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(signal / noise)) if signal > 0 else float("-inf")
