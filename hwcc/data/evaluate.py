"""Data for a compile run, and accuracy on held-out data measured in onnxruntime.

A data set is one array per model input and optionally ``labels`` (integer class per
sample). Each array holds samples on axis 0, a stack of whole runs, or one run fed to
every run (:mod:`hwcc.data.layout` has the rule). ``--data D.npz`` is split with the seed
into a fine-tune set and a held-out set by whole runs (``holdout`` of the runs,
stratified by label when a run holds one labelled sample, in contiguous blocks when
unlabelled: :func:`split_dataset`); ``--holdout H.npz`` gives the held-out set explicitly
instead.

Accuracy of a model ``f`` on held-out samples ``x_i`` compares its first output with the
labels ``y_i`` (top-1 accuracy) or, without labels, with the original model's ``f0(x_i)``,
by the metric that fits the output (:mod:`hwcc.data.metrics`): top-1 agreement for a
classifier, per-step agreement for sequences, decision agreement for one probability per
sample, cosine similarity for embeddings and dense maps; or the metric the user names.

Without any data, random inputs stand in (standard normal floats, samples on axis 0, or
stacked runs when the inputs' axes 0 differ); accuracy is then
fidelity to the original model on noise, which says little about real inputs, and the
caller warns loudly.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hwcc.data.activations import (
    check_data_array,
    feeds_layout,
    input_shapes,
    load_feeds,
    read_npz,
    split_batches,
)
from hwcc.data.layout import SAMPLES, InputLayout, Layout
from hwcc.data.metrics import Metric, accuracy_interval, describe, resolve_metric
from hwcc.data.noise import noise_warning
from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.dtypes import numpy_dtype
from hwcc.ir.onnx_io import zoo_name
from hwcc.ir.verify import Session

__all__ = [
    "Dataset",
    "Evaluator",
    "load_dataset",
    "random_dataset",
    "split_dataset",
    "resolve_data",
    "zoo_dataset",
]


@dataclass
class Dataset:
    """Samples for a model: ``inputs`` by input name, ``labels`` or None.

    Attributes:
        inputs: model input name -> array, in a layout of :mod:`hwcc.data.layout`.
        labels: ``[N]`` integer classes (one per sample, runs in order), or None.
        source: where the samples came from (a path, ``zoo:digits``, ``random``).
        sha256: digest of the arrays (names, shapes, bytes), for the artifact's manifest.
        layout: how the arrays hold the model's runs; None: samples on axis 0 of every
            array, one sample per run.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str
    sha256: str = ""
    layout: Layout | None = None

    def __post_init__(self) -> None:
        if self.layout is None:
            n = min(len(a) for a in self.inputs.values())
            self.layout = Layout(dict.fromkeys(self.inputs, InputLayout(SAMPLES)), n)
        if not self.sha256:
            h = hashlib.sha256()
            for k in sorted(self.inputs):
                a = np.ascontiguousarray(self.inputs[k])
                h.update(f"{k}{a.shape}{a.dtype}".encode())
                h.update(a.tobytes())
            if self.labels is not None:
                h.update(np.ascontiguousarray(self.labels).tobytes())
            self.sha256 = h.hexdigest()

    def __len__(self) -> int:
        """The number of samples."""
        return self.layout.samples

    @property
    def runs(self) -> int:
        """The number of runs of the model the data makes."""
        return self.layout.runs

    def take(self, index: np.ndarray, source: str) -> Dataset:
        """The runs ``index``, in that order, as a data set of their own."""
        labels = None
        if self.labels is not None:
            per_run = self.labels.reshape(self.runs, -1, *self.labels.shape[1:])
            labels = per_run[index].reshape(-1, *self.labels.shape[1:])
        inputs = self.layout.take(self.inputs, index)
        return Dataset(inputs, labels, source, layout=self.layout.with_runs(len(index)))

    def head(self, samples: int) -> dict[str, np.ndarray]:
        """The first runs holding at most ``samples`` samples (at least one run), each
        input's runs joined along its axis 0: calibration data in the layout that readers
        knowing only samples on axis 0 accept (see :meth:`Layout.joined`)."""
        runs = min(self.runs, max(1, samples // self.layout.samples_per_run))
        return self.layout.joined(self.inputs, runs)


def load_dataset(graph: Graph, data: str | os.PathLike | Mapping[str, np.ndarray]) -> Dataset:
    """Read ``data`` (an ``.npz`` path or a mapping) for ``graph``'s inputs.

    The model's declared shapes make one run; each array holds any number of runs in a
    layout of :mod:`hwcc.data.layout` (samples on axis 0, stacked runs, or one run for
    all), and all agree on the number of runs.

    Raises:
        HwccError: a missing or unreadable file, a missing input array, an array that is
            not numbers or fits no layout, arrays that disagree on the runs, labels that
            are not one integer per sample or name a class the model's output does not have.
    """
    from_file = isinstance(data, (str, os.PathLike))
    source = os.fspath(data) if from_file else "arrays"
    raw = read_npz(data) if from_file else data
    if not from_file:  # read_npz checked a file's arrays
        for name in graph.real_inputs():
            if name in raw:
                check_data_array(source, name, np.asarray(raw[name]))
    feeds = load_feeds(graph, raw, source)
    layout = feeds_layout(graph, feeds, source)
    labels = raw.get("labels")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise HwccError(
                f"{source}: 'labels' must be a 1-D integer array (one class per sample), "
                f"got {labels.dtype} of shape {labels.shape}"
            )
        _check_classes(source, labels, graph)
        if len(labels) != layout.samples:
            raise HwccError(
                f"{source}: arrays hold different numbers of samples: the inputs "
                f"{layout.samples} ({layout.runs} runs of {layout.samples_per_run}), "
                f"'labels' {len(labels)}",
                "give one label per sample, the runs in order",
            )
    return Dataset(feeds, labels, source, layout=layout)


def _check_classes(source: str, labels: np.ndarray, graph: Graph) -> None:
    """Refuse labels the model cannot predict: accuracy compares them with the argmax of
    the first output (flattened per sample), and the fine-tuner indexes that output with them.
    """
    if not len(labels):
        return
    low, high = labels.min(), labels.max()
    shape = graph.tensors[graph.outputs[0]].shape or ()
    known = len(shape) >= 2 and all(isinstance(d, int) for d in shape[1:])
    classes = int(np.prod(shape[1:])) if known else None
    if low < 0 or (classes is not None and high >= classes):
        bad = low if low < 0 else high
        which = f"0 to {classes - 1}" if classes is not None else "0 or more"
        raise HwccError(
            f"{source}: label {bad} is out of range: the model's output {graph.outputs[0]!r} "
            f"has classes {which}",
            "labels are class indices, one per sample",
        )


def random_dataset(graph: Graph, n: int, seed: int) -> Dataset:
    """About ``n`` standard-normal samples per input (no labels): the stand-in when no data
    is given. Samples on axis 0 when every input has the same axis 0 (or a free one);
    otherwise stacked runs (``n`` samples' worth, at least two runs)."""
    rng = np.random.default_rng(seed)
    shapes = input_shapes(graph, graph.real_inputs())
    firsts = {s[0] if s and isinstance(s[0], int) else None for s in shapes.values()}
    if all(shapes.values()) and len(firsts) == 1:  # samples on axis 0, whole runs of them
        step = firsts.pop() or 1
        lead = lambda shape: (max(1, n // step) * step, *shape[1:])  # noqa: E731
    else:
        fixed = [s[0] for s in shapes.values() if s and isinstance(s[0], int) and s[0] > 0]
        runs = max(2, n // (fixed[0] if fixed else 1))
        lead = lambda shape: (runs, *shape)  # noqa: E731
    inputs = {
        name: rng.standard_normal(lead(shape)).astype(numpy_dtype(graph.tensors[name].elem_type))
        for name, shape in shapes.items()
    }
    return Dataset(inputs, None, "random", layout=feeds_layout(graph, inputs, "random"))


HOLDOUT_BLOCKS = 4
"""Contiguous blocks an unlabelled held-out set is drawn in (see :func:`split_dataset`)."""


def split_dataset(data: Dataset, holdout: float, seed: int) -> tuple[Dataset, Dataset]:
    """Fine-tune and held-out sets by whole runs: ``holdout`` of the runs.

    Labelled samples (one per run) are drawn at random per class. Unlabelled runs are drawn
    as :data:`HOLDOUT_BLOCKS` contiguous blocks, one at a seeded offset in each quarter of
    the data: consecutive samples of a stream (a recording's frames) are alike, and a
    random split holds out the neighbours of fine-tune samples (silero-vad reported 98.7 %
    agreement on such a split and measured 91.7 % on a fresh recording). On samples in no
    particular order the blocks are as good as a random draw.

    Raises:
        HwccError: either part would be empty.
    """
    n = data.runs
    rng = np.random.default_rng(seed)
    if data.labels is not None and len(data.labels) == n:
        held = []
        for c in np.unique(data.labels):
            idx = np.flatnonzero(data.labels == c)
            rng.shuffle(idx)
            held.append(idx[: int(round(holdout * len(idx)))])
        held_idx = np.sort(np.concatenate(held))
    else:
        held_idx = _blocks(n, int(round(holdout * n)), rng)
    tune_idx = np.setdiff1d(np.arange(n), held_idx)
    if len(held_idx) == 0 or len(tune_idx) == 0:
        what = "samples" if data.layout.samples_per_run == 1 else "runs"
        raise HwccError(
            f"{data.source}: {n} {what} cannot be split into fine-tune and held-out sets",
            "give more samples, or a held-out set of its own (--holdout)",
        )
    return data.take(tune_idx, f"{data.source} (fine-tune part)"), data.take(
        held_idx, f"{data.source} (held-out part)"
    )


def _blocks(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` of ``range(n)`` as up to :data:`HOLDOUT_BLOCKS` contiguous blocks, block ``i``
    at a random offset inside the ``i``-th of as many equal strides."""
    k = max(1, min(HOLDOUT_BLOCKS, m))
    sizes = np.full(k, m // k) + (np.arange(k) < m % k)
    edges = np.linspace(0, n, k + 1).astype(int)
    parts = []
    for size, lo, hi in zip(sizes, edges[:-1], edges[1:]):
        start = lo + int(rng.integers(0, max(1, hi - lo - size + 1)))
        parts.append(np.arange(start, min(start + size, n)))
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def zoo_dataset(graph: Graph, name: str, split: str) -> Dataset:
    """One split of a bundled data set (``zoo:digits``) for ``graph``'s one input.

    Raises:
        HwccError: an unknown name (the message lists the bundled ones), a model with
            several inputs, or samples the model does not take.
    """
    from hwcc.models import load_data  # the zoo imports torch: only for zoo: data

    x, y = load_data(name, split)
    if len(graph.real_inputs()) != 1:
        raise HwccError(f"{name} feeds one input, the model has several")
    data = load_dataset(graph, {graph.real_inputs()[0]: x, "labels": y})
    data.source = f"{name} ({split} split)"
    return data


def _is_zoo(data) -> bool:
    return isinstance(data, str) and zoo_name(data) is not None


def resolve_data(
    graph: Graph, data, holdout_data, seed: int, *, holdout: float = 0.2, random_samples: int = 512
) -> tuple[Dataset, Dataset, str | None]:
    """The fine-tune and held-out sets a compile run uses, and a warning if any.

    ``data`` is a path, a mapping, bundled data such as ``zoo:digits`` (its train split
    to fine-tune, its test split held out) or None (random inputs, with a warning).
    ``holdout_data``, when given, is the held-out set instead (bundled data: its test split).
    """
    if data is None:
        if holdout_data is not None:
            raise HwccError("--holdout needs --data (the fine-tune set)")
        full = random_dataset(graph, random_samples, seed)
        tune, held = split_dataset(full, holdout, seed)
        return (
            tune,
            held,
            (
                "no --data given: fine-tuning distils the original model on random inputs, and "
                "'accuracy' is only agreement with the original model on noise, not accuracy on "
                "real inputs; give --data D.npz for a meaningful number"
            ),
        )
    if holdout_data is not None:
        held = (
            zoo_dataset(graph, holdout_data, "test")
            if _is_zoo(holdout_data)
            else load_dataset(graph, holdout_data)
        )
        full = zoo_dataset(graph, data, "train") if _is_zoo(data) else load_dataset(graph, data)
        return full, held, _warnings(noise_warning(full.inputs, full.source), _few(held))
    if _is_zoo(data):
        return zoo_dataset(graph, data, "train"), zoo_dataset(graph, data, "test"), None
    full = load_dataset(graph, data)
    tune, held = split_dataset(full, holdout, seed)
    return tune, held, _warnings(noise_warning(full.inputs, full.source), _few(held))


MIN_HELD_OUT = 30
"""Fewer held-out samples than this draw a warning (:func:`_few`)."""


def _few(held: Dataset) -> str | None:
    """A warning when the held-out set is too small to measure fidelity: with ``n``
    samples one sample is ``100/n`` points, and below 30 that is more than a 3-point move
    (smart-turn, 13 held out: 100 % reported, 70 % on 64 fresh inputs)."""
    n = len(held)
    if n >= MIN_HELD_OUT:
        return None
    return (
        f"only {n} held-out samples ({held.source}): one sample is {100 / n:.1f} points, so "
        "the fidelity the run reports, and the accuracy floor it keeps, rest on a handful of "
        f"inputs; give at least {MIN_HELD_OUT} (more --data, or --holdout H.npz)"
    )


def _warnings(*texts: str | None) -> str | None:
    return "; ".join(t for t in texts if t) or None


class Evaluator:
    """Accuracy of models on one held-out set, against labels or the original model.

    Args:
        original: the input model (the reference when there are no labels).
        held_out: the held-out samples.
        metric: a name of :data:`hwcc.data.metrics.METRICS`, ``"auto"``/None (chosen from
            the original's output, :func:`hwcc.data.metrics.auto_metric`), or a callable
            ``f(output, reference, labels) -> float``.
    """

    def __init__(self, original: Graph, held_out: Dataset, metric: str | Metric | None = None):
        self.data = held_out
        self.batches = split_batches(original, held_out.inputs)
        first = self.outputs(original)
        self.original_outputs = first
        self.reference = None if held_out.labels is not None else first
        self.metric_name, self.metric = resolve_metric(metric, first, held_out.labels)

    @property
    def kind(self) -> str:
        """What :meth:`accuracy` measures, on how many samples, for the report."""
        return describe(self.metric_name, self.data.labels is not None, len(self.data))

    def outputs(self, graph: Graph) -> np.ndarray:
        """The first output of ``graph`` on every held-out sample, stacked ``[N, ...]``
        (the last graph's are kept: accuracy and distortion of one graph run it once)."""
        last = getattr(self, "_last", None)
        if last is not None and last[0]() is graph:
            return last[1]
        out = self._run(graph)
        self._last = (weakref.ref(graph), out)
        return out

    def _run(self, graph: Graph) -> np.ndarray:
        session = Session(graph)
        runs = [np.atleast_1d(session.run(feed)[0]) for feed in self.batches]
        out = np.concatenate(runs)
        if len(out) == len(self.data):
            return out
        if len(runs) == len(self.data):  # one sample per run, its batch not on axis 0 of the
            return np.stack(runs)  # output (a time-major [T, 1, C]): one row per run
        return out.reshape(len(self.data), -1)

    def distortion(self, graph: Graph) -> float:
        """How far ``graph``'s first output is from the original model's on the held-out
        set: ``Σ (y − y₀)² / Σ y₀²``. A continuous measure where accuracy is a count (13
        held-out decisions change in steps of 7.7 %): the one-shot start ranks by it."""
        y0 = self.original_outputs.astype(np.float64)
        y = self.outputs(graph).astype(np.float64).reshape(y0.shape)
        return float(((y - y0) ** 2).sum() / max((y0**2).sum(), 1e-30))

    def accuracy(self, graph: Graph) -> float:
        """Accuracy of ``graph`` (see :mod:`hwcc.data.metrics` for what it means here)."""
        return float(self.metric(self.outputs(graph), self.reference, self.data.labels))

    def interval(self, graph: Graph) -> tuple[float, float] | None:
        """The 95 % interval of :meth:`accuracy` over the held-out samples."""
        return accuracy_interval(self.metric, self.outputs(graph), self.reference, self.data.labels)
