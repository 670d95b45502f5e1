"""Calibration data for the quantize pass: where it comes from, cut to the model's batch,
and running a model over it with chosen intermediate tensors exposed.

Sources: ``ctx.data`` (arrays by input name, or the path of an ``.npz`` as ``hwcc apply
--data`` gives it) or the ``data`` knob (an ``.npz`` path), not both; an ``.npz`` holds
one array per model input; other arrays, such as ``labels``, are ignored. Without
either, random inputs (:func:`hwcc.ir.verify.random_feeds`) are used only when the
``random_calibration`` knob allows it, and with a warning, because ranges measured on
noise are not those of real data; otherwise a mode that needs data stops with an error
that says how to give some.

An array whose shape is the input's shape is one sample; one of shape ``[n·B, ...]`` for
an input of batch ``B`` gives ``n`` samples (a remainder is dropped).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from hwcc.ir import onnx_io
from hwcc.data.activations import read_npz
from hwcc.ir.dtypes import numpy_dtype
from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.verify import random_feeds

__all__ = ["Calibration", "Runner", "calibration_feeds"]

Feeds = dict[str, np.ndarray]
_RANDOM_SAMPLES = 8


@dataclass(frozen=True)
class Calibration:
    """Calibration samples and where they came from.

    Attributes:
        feeds: one feed dict per sample (empty when there is no data).
        source: a description for reports (``None`` when there is no data).
        random: the samples are random inputs, not data.
    """

    feeds: list[Feeds]
    source: str | None
    random: bool = False


def calibration_feeds(graph: Graph, data: Mapping[str, np.ndarray] | str | os.PathLike | None, path: str, *,
                      random_ok: bool,
                      samples: int, seed: int, required: bool, purpose: str) -> Calibration:
    """The calibration samples for ``graph`` (see the module docstring).

    Args:
        graph: the model (static input shapes).
        data: ``ctx.data``: arrays by input name, or an ``.npz`` path (``hwcc apply --data``);
            give this or ``path``, not both.
        path: the ``data`` knob, an ``.npz`` file ("" for none).
        random_ok: the ``random_calibration`` knob.
        samples: at most this many samples are used (the first ones).
        seed: seed of random inputs.
        required: without data (and without ``random_ok``), raise instead of returning no
            samples.
        purpose: what the data is for, for messages.

    Returns:
        The :class:`Calibration`: the samples (at most ``samples``), where they came from,
        and whether they are random.

    Raises:
        HwccError: no data where it is required, or data given twice; an unreadable file; a missing input;
            an array that does not fit its input.
    """
    if data is not None and path:
        raise HwccError(f"quantize: calibration data given twice (--data or the context's data, and the "
                        f"data knob {path!r})", "give one of them")
    if isinstance(data, (str, os.PathLike)) or path:
        data = _read_npz(os.fspath(data if data is not None else path))
    if data is not None:
        feeds = _cut(graph, data)[:samples]
        return Calibration(feeds, f"{len(feeds)} sample{'s' if len(feeds) != 1 else ''} of the given data")
    if random_ok:
        warnings.warn(f"quantize: calibrating {purpose} on RANDOM inputs: the ranges will not match real "
                      "data and accuracy may suffer; give data (--data FILE.npz) instead",
                      UserWarning, stacklevel=3)
        n = min(samples, _RANDOM_SAMPLES)
        return Calibration([random_feeds(graph, seed + i) for i in range(n)], f"{n} random samples (no data)", True)
    if required:
        raise HwccError(f"quantize: {purpose} needs calibration data and none was given",
                        "give an .npz with one array per model input (--data FILE.npz, or "
                        "PassContext(data=...)), or --set random_calibration=true to calibrate on "
                        "random inputs (inaccurate)")
    return Calibration([], None)


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """:func:`hwcc.data.activations.read_npz`, with the quantize pass's own messages."""
    if not Path(path).is_file():
        raise HwccError(f"quantize: calibration data {path!r} does not exist",
                        "give an .npz file with one array per model input")
    try:
        return read_npz(path)
    except HwccError as e:
        raise HwccError(f"quantize: cannot read calibration data {path!r}: {e.args[0]}",
                        "write it with numpy.savez, one array per model input") from None


def _cut(graph: Graph, data: Mapping[str, np.ndarray]) -> list[Feeds]:
    """One feed dict per sample, each array shaped like its input."""
    names = graph.real_inputs()
    missing = [n for n in names if n not in data]
    if missing:
        raise HwccError(f"quantize: the calibration data has no array for input(s) {', '.join(missing)}",
                        f"it has: {', '.join(sorted(data)) or 'nothing'}; name the arrays after the inputs")
    per_input = {n: _samples_of(graph, n, np.asarray(data[n])) for n in names}
    count = min(len(v) for v in per_input.values())
    return [{n: per_input[n][i] for n in names} for i in range(count)]


def _samples_of(graph: Graph, name: str, arr: np.ndarray) -> list[np.ndarray]:
    t = graph.tensors[name]
    shape = tuple(t.shape or ())
    arr = arr.astype(numpy_dtype(t.elem_type), copy=False)
    if arr.shape == shape:
        return [arr]
    batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
    if batch is None or arr.ndim != len(shape) or arr.shape[1:] != shape[1:] or arr.shape[0] < batch:
        raise HwccError(f"quantize: calibration array {name!r} has shape {list(arr.shape)}, which does not "
                        f"fit the input's shape {list(shape)}",
                        "give [N, ...] samples whose other dims are the input's")
    return [arr[i:i + batch] for i in range(0, arr.shape[0] - batch + 1, batch)]


class Runner:
    """One onnxruntime session over ``graph`` that also returns the tensors ``extra``.

    Graph optimisations are off, so intermediate tensors are computed as the model says.
    """

    def __init__(self, graph: Graph, extra: Sequence[str] = ()):
        g = graph.copy()
        g.outputs += [t for t in dict.fromkeys(extra) if t not in g.outputs]
        self.outputs = list(g.outputs)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        model = onnx_io.to_proto(g)
        self._tmp = None  # a model over protobuf's 2 GB limit goes through a file, kept while in use
        if model.ByteSize() < 2**31 - 1:
            src: str | bytes = model.SerializeToString()
        else:
            self._tmp = tempfile.TemporaryDirectory()
            src = str(onnx_io.save(g, os.path.join(self._tmp.name, "model.onnx")))
        self._session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Every output and extra tensor, by name."""
        return dict(zip(self.outputs, self._session.run(self.outputs, feeds)))

    def run_all(self, samples: Sequence[Feeds]) -> Iterator[dict[str, np.ndarray]]:
        for feeds in samples:
            yield self.run(feeds)
