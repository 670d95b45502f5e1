"""Calibration data for the int8 and fixed-point passes: knobs, sources, samples, ranges.

Where the data comes from, cut to the model's batch, and running a model over it with
chosen intermediate tensors exposed (for activation ranges).

Sources: ``ctx.data`` (arrays by input name, or the path of an ``.npz`` as ``hwcc apply
--data`` gives it) or the ``data`` knob (an ``.npz`` path), not both; an ``.npz`` holds
one array per model input; other arrays, such as ``labels``, are ignored. Without
either, random inputs (:func:`hwcc.ir.verify.random_feeds`) are used only when the
``random_calibration`` knob allows it, and with a warning, because ranges measured on
noise are not those of real data; otherwise a pass that needs data stops with an error
that says how to give some. The knobs (``data``, ``random_calibration``, ``samples``) are
:data:`KNOBS`; :func:`from_options` reads them.

An array whose shape is the input's shape is one sample; one of shape ``[n·B, ...]`` for
an input of batch ``B`` gives ``n`` samples (a remainder is dropped).
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from hwcc.data.activations import read_npz
from hwcc.errors import HwccError
from hwcc.ir import Graph, onnx_io
from hwcc.ir.dtypes import numpy_dtype
from hwcc.ir.transform import Knob, PassContext
from hwcc.ir.verify import random_feeds

__all__ = ["KNOBS", "Calibration", "Runner", "calibration_feeds", "from_options", "tensor_ranges"]

Feeds = dict[str, np.ndarray]
_RANDOM_SAMPLES = 8

KNOBS = (
    Knob("data", str, "", "calibration .npz, one array per model input"),
    Knob("random_calibration", bool, False, "calibrate on random inputs when no data is given"),
    Knob("samples", int, 256, "most calibration samples used", range=(1, 1_000_000)),
)


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


def from_options(
    graph: Graph,
    opts: Mapping[str, Any],
    ctx: PassContext,
    *,
    who: str,
    required: bool,
    purpose: str,
) -> Calibration:
    """:func:`calibration_feeds` with a pass's :data:`KNOBS` values ``opts`` and ``ctx.data``."""
    return calibration_feeds(
        graph,
        ctx.data,
        opts["data"],
        random_ok=opts["random_calibration"],
        samples=opts["samples"],
        seed=ctx.seed,
        required=required,
        who=who,
        purpose=purpose,
    )


def calibration_feeds(
    graph: Graph,
    data: Mapping[str, np.ndarray] | str | os.PathLike | None,
    path: str,
    *,
    random_ok: bool,
    samples: int,
    seed: int,
    required: bool,
    who: str,
    purpose: str,
) -> Calibration:
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
        who: the pass asking, for messages.
        purpose: what the data is for (``activation ranges``), for messages.

    Returns:
        The :class:`Calibration`: the samples (at most ``samples``), where they came from,
        and whether they are random.

    Raises:
        HwccError: no data where it is required, or data given twice; an unreadable file;
            a missing input; an array that does not fit its input.
    """
    if data is not None and path:
        raise HwccError(
            f"{who}: calibration data given twice (--data or the context's data, and "
            f"the data knob {path!r})",
            "give one of them",
        )
    if isinstance(data, (str, os.PathLike)) or path:
        data = _read_npz(os.fspath(data if data is not None else path), who)
    if data is not None:
        feeds = _cut(graph, data, who)[:samples]
        plural = "s" if len(feeds) != 1 else ""
        return Calibration(feeds, f"{len(feeds)} sample{plural} of the given data")
    if random_ok:
        warnings.warn(
            f"{who}: calibrating {purpose} on RANDOM inputs: the ranges will not match "
            "real data and accuracy may suffer; give data (--data FILE.npz) instead",
            UserWarning,
            stacklevel=3,
        )
        n = min(samples, _RANDOM_SAMPLES)
        return Calibration(
            [random_feeds(graph, seed + i) for i in range(n)], f"{n} random samples (no data)", True
        )
    if required:
        raise HwccError(
            f"{who}: {purpose} needs calibration data and none was given",
            "give an .npz with one array per model input (--data FILE.npz, or "
            "PassContext(data=...)), or --set random_calibration=true to calibrate on "
            "random inputs (inaccurate)",
        )
    return Calibration([], None)


def _read_npz(path: str, who: str) -> dict[str, np.ndarray]:
    """:func:`hwcc.data.activations.read_npz`, with the calibrating pass's own messages."""
    if not Path(path).is_file():
        raise HwccError(
            f"{who}: calibration data {path!r} does not exist",
            "give an .npz file with one array per model input",
        )
    try:
        return read_npz(path)
    except HwccError as e:
        raise HwccError(
            f"{who}: cannot read calibration data {path!r}: {e.args[0]}",
            "write it with numpy.savez, one array per model input",
        ) from None


def _cut(graph: Graph, data: Mapping[str, np.ndarray], who: str) -> list[Feeds]:
    """One feed dict per sample, each array shaped like its input."""
    names = graph.real_inputs()
    missing = [n for n in names if n not in data]
    if missing:
        raise HwccError(
            f"{who}: the calibration data has no array for input(s) {', '.join(missing)}",
            f"it has: {', '.join(sorted(data)) or 'nothing'}; name the arrays after the inputs",
        )
    per_input = {n: _samples_of(graph, n, np.asarray(data[n]), who) for n in names}
    count = min(len(v) for v in per_input.values())
    return [{n: per_input[n][i] for n in names} for i in range(count)]


def _samples_of(graph: Graph, name: str, arr: np.ndarray, who: str) -> list[np.ndarray]:
    t = graph.tensors[name]
    shape = tuple(t.shape or ())
    arr = arr.astype(numpy_dtype(t.elem_type), copy=False)
    if arr.shape == shape:
        return [arr]
    batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
    fits = arr.ndim == len(shape) and arr.shape[1:] == shape[1:]
    if batch is None or not fits or arr.shape[0] < batch:
        raise HwccError(
            f"{who}: calibration array {name!r} has shape {list(arr.shape)}, which "
            f"does not fit the input's shape {list(shape)}",
            "give [N, ...] samples whose other dims are the input's",
        )
    return [arr[i : i + batch] for i in range(0, arr.shape[0] - batch + 1, batch)]


def tensor_ranges(
    graph: Graph, tensors: Sequence[str], feeds: Sequence[Feeds]
) -> dict[str, tuple[float, float]]:
    """``(min, max)`` of each tensor (graph inputs or computed ones) over ``feeds``."""
    lo = dict.fromkeys(tensors, math.inf)
    hi = dict.fromkeys(tensors, -math.inf)
    computed = [t for t in tensors if t not in graph.inputs]
    for feed, values in zip(feeds, Runner(graph, computed).run_all(feeds)):
        values = {**values, **feed}
        for t in lo:
            lo[t], hi[t] = min(lo[t], float(values[t].min())), max(hi[t], float(values[t].max()))
    return {t: (lo[t], hi[t]) for t in tensors}


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
        # A model over protobuf's 2 GB limit goes through a file, kept while in use.
        self._tmp = None
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
