"""Activations measured on data: each compute layer's input, and how dense it is.

Sparse accelerators skip zero activations (EIE broadcasts only the non-zero ones), so
their cost depends on the data. This module runs the model in onnxruntime (through
:func:`hwcc.ir.verify.run_onnx`) on a copy of the graph whose compute layers' input
activations are exposed as extra graph outputs, and reports:

* :func:`capture_activations`: the input activation tensor of every compute layer
  (convolutions, Gemm/MatMul, recurrent layers), all samples stacked on axis 0;
* :func:`measure_density`: for each such layer, the fraction of non-zero elements of that
  tensor over all samples, ready for ``CostContext(act_density=...)``.

Data is a mapping from input name to array, or an ``.npz`` with one array per model input
(same names; a ``labels`` array is ignored). Each array holds samples on axis 0, a stack of
whole runs, or one run fed to every run (:mod:`hwcc.data.layout`); the model is run once
per run, on the input shapes it declares.
"""

from __future__ import annotations

import os
import tokenize
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hwcc.data.layout import SAME, Layout, data_layout
from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.dtypes import numpy_dtype
from hwcc.ir.onnx_io import zoo_name
from hwcc.ir.verify import run_onnx
from hwcc.ir.workload import MAC_KINDS, analyze, constant_tensors

__all__ = [
    "COMPUTE_KINDS",
    "read_npz",
    "check_data_array",
    "load_feeds",
    "input_shapes",
    "feeds_layout",
    "split_batches",
    "compute_inputs",
    "capture_activations",
    "measure_density",
]

COMPUTE_KINDS = MAC_KINDS  # the layers whose input activations are captured
Feeds = Mapping[str, np.ndarray] | str | os.PathLike


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of a data ``.npz`` file, by name, each checked to hold numbers.

    A data file holds one array per model input (in a layout of :mod:`hwcc.data.layout`,
    checked against the model by :func:`load_feeds`), and optionally ``labels``; each
    array must be numeric (bool, integer or float). Checking here turns a bad file into
    one message naming the file and the array, instead of a failure deep in onnxruntime
    or the fine-tuner.

    Raises:
        HwccError: the path is missing, a folder or a ``zoo:`` name; the file is not a
            readable ``.npz`` (truncated, a failed CRC, a corrupt member, a lone ``.npy``,
            pickled objects); or an array breaks the rules above.
    """
    if zoo_name(path) is not None:
        from hwcc.models import data_set  # the zoo imports torch: only for a zoo: name

        data_set(os.fspath(path))  # an unknown name lists the bundled ones
        raise HwccError(
            f"{os.fspath(path)} is bundled data, not an .npz file",
            "the command line reads it (--data zoo:NAME); in Python, use hwcc.models.load_data",
        )
    path = Path(path)
    if path.is_dir():
        raise HwccError(f"{path} is a folder, not an .npz data file", "give the .npz file itself")
    if not path.is_file():
        raise HwccError(f"data file not found: {path}", _NPZ_HINT)
    arrays = _npz_arrays(path)
    for name, a in arrays.items():
        check_data_array(path, name, a)
    return arrays


_NPZ_HINT = "save the data with numpy.savez(path, input_name=array, ..., labels=labels)"
# How reading a damaged or hostile zip, or one of its members, fails: a bad CRC or header, a cut
# stream, pickled objects, an encrypted member, a compression numpy cannot read, an
# unparsable array header, a header that declares more data than memory holds.
_BROKEN = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    MemoryError,
    RuntimeError,
    NotImplementedError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``path``; any way a file can be broken becomes one clean message."""
    try:
        z = np.load(path, allow_pickle=False)
    except _BROKEN as e:
        raise HwccError(f"{path} is not a readable .npz file ({_reason(e)})", _NPZ_HINT) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise HwccError(f"{path} holds a single array (.npy format), not named arrays", _NPZ_HINT)
    with z:
        arrays = {}
        for name in z.files:
            try:
                arrays[name] = z[name]
            except _BROKEN as e:
                raise HwccError(
                    f"{path}: array {name!r} cannot be read ({_reason(e)})",
                    "the file is damaged or holds Python objects; " + _NPZ_HINT,
                ) from None
            if not isinstance(arrays[name], np.ndarray):
                raise HwccError(f"{path}: member {name!r} is not a numpy array", _NPZ_HINT)
    if not arrays:
        raise HwccError(f"{path} holds no arrays", _NPZ_HINT)
    return arrays


def check_data_array(source: str | os.PathLike, name: str, a: np.ndarray) -> None:
    """Refuse a data array that does not hold numbers.

    Raises:
        HwccError: naming ``source`` and the array.
    """
    if a.dtype.kind not in "biuf":
        raise HwccError(
            f"{source}: array {name!r} holds {a.dtype} values, not numbers",
            "data arrays hold numbers (bool, integer or float)",
        )


def _reason(e: BaseException) -> str:
    """An exception's text, short and printable: broken files put raw bytes in messages."""
    text = (
        "".join(c if c.isascii() and c.isprintable() else "?" for c in str(e)) or type(e).__name__
    )
    return text if len(text) <= 80 else text[:77] + "..."


def load_feeds(graph: Graph, data: Feeds, source: str = "the data") -> dict[str, np.ndarray]:
    """The arrays for every real input of ``graph``, from a mapping or an ``.npz`` path.

    ``source`` names mapping data in messages (a file is named by its path).

    Raises:
        HwccError: the file is missing or not an ``.npz``, an input has no array, or the
            arrays fit no layout of :mod:`hwcc.data.layout` or disagree on the runs.
    """
    if isinstance(data, (str, os.PathLike)):
        source, data = os.fspath(data), read_npz(data)
    missing = [n for n in graph.real_inputs() if n not in data]
    if missing:
        raise HwccError(
            f"the data has no array for model input(s) {', '.join(missing)}",
            f"name the arrays after the model's inputs: {', '.join(graph.real_inputs())}",
        )
    feeds = {n: np.asarray(data[n]) for n in graph.real_inputs()}
    feeds_layout(graph, feeds, source)
    return feeds


def input_shapes(graph: Graph, names) -> dict[str, tuple]:
    """The declared shape of each input ``names`` of ``graph`` (``()`` for a scalar)."""
    return {n: tuple(graph.tensors[n].shape or ()) for n in names}


def feeds_layout(graph: Graph, feeds: Mapping[str, np.ndarray], source: str = "the data") -> Layout:
    """:func:`hwcc.data.layout.data_layout` of ``feeds`` for ``graph``'s inputs."""
    return data_layout(input_shapes(graph, feeds), feeds, source)


def compute_inputs(graph: Graph) -> dict[str, str]:
    """Compute layer name -> the tensor it takes as input activation (its first run-time input)."""
    const = constant_tensors(graph)
    out = {}
    for layer in analyze(graph).layers:
        if layer.kind in COMPUTE_KINDS:
            acts = [t for t in graph.node(layer.name).inputs if t and t not in const]
            if acts:
                out[layer.name] = acts[0]
    return out


def split_batches(
    graph: Graph, feeds: Mapping[str, np.ndarray], max_samples: int | None = None
) -> list[dict[str, np.ndarray]]:
    """One feed per run of the model (:mod:`hwcc.data.layout`), cast to the input types.

    Samples on a free axis 0 (the model does not fix it) make one run of them all.

    Args:
        max_samples: use at most this many samples (whole runs).

    Raises:
        HwccError: no samples, a count that is not a multiple of the model's batch, arrays
            that fit no layout or disagree on the runs, or ``max_samples`` below one run.
    """
    layout = feeds_layout(graph, feeds)
    if max_samples is not None and max_samples < 1:
        raise HwccError(f"max_samples={max_samples}: use at least one sample")
    types = {k: numpy_dtype(graph.tensors[k].elem_type) for k in feeds}
    cast = lambda feed: {k: np.asarray(a).astype(types[k], copy=False) for k, a in feed.items()}  # noqa: E731
    if layout.mergeable:  # one run of every sample; a one-for-all array as it is
        n = layout.runs if max_samples is None else min(layout.runs, max_samples)
        merged = {k: a if layout.inputs[k].kind == SAME else a[:n] for k, a in feeds.items()}
        return [cast(merged)]
    runs = layout.runs
    if max_samples is not None:
        runs = min(runs, max_samples // layout.samples_per_run)
        if runs < 1:
            raise HwccError(
                f"max_samples={max_samples} is less than one run of the model "
                f"({layout.samples_per_run} samples)",
                f"give at least {layout.samples_per_run} samples",
            )
    return [cast(layout.run(feeds, i)) for i in range(runs)]


def capture_activations(
    graph: Graph, data: Feeds, *, max_samples: int | None = None
) -> dict[str, np.ndarray]:
    """Every compute layer's input activation on ``data``, samples stacked on axis 0.

    Args:
        graph: the model (shapes inferred, as ``hwcc.load`` gives it).
        data: input arrays by name, or an ``.npz`` path.
        max_samples: use at most this many samples.

    Returns:
        Layer name -> array (the tensor's shape with the batch axis holding all samples).
    """
    feeds = load_feeds(graph, data)
    wanted = compute_inputs(graph)
    tensors = sorted(set(wanted.values()) - set(graph.inputs))
    probe = graph.copy()
    probe.outputs = list(probe.outputs) + [t for t in tensors if t not in probe.outputs]
    runs: dict[str, list[np.ndarray]] = {t: [] for t in set(wanted.values())}
    for feed in split_batches(graph, feeds, max_samples):
        values = dict(zip(probe.outputs, run_onnx(probe, feed)))
        values.update(feed)
        for t in runs:
            runs[t].append(np.asarray(values[t]))
    stacked = {t: np.concatenate(v) if v[0].ndim else np.stack(v) for t, v in runs.items()}
    return {name: stacked[t] for name, t in wanted.items()}


def measure_density(
    graph: Graph, data: Feeds, *, max_samples: int | None = None
) -> dict[str, float]:
    """Fraction of non-zero elements of each compute layer's input activation on ``data``.

    Returns:
        Layer name -> density in [0, 1], for ``CostContext(act_density=...)``.
    """
    acts = capture_activations(graph, data, max_samples=max_samples)
    return {
        name: float(np.count_nonzero(a)) / a.size if a.size else 1.0 for name, a in acts.items()
    }
