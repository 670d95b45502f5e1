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
(same names; a ``labels`` array is ignored). When the model declares a fixed batch ``b``
and the data has ``n = k·b`` samples, the model is run ``k`` times on ``b`` samples each.
"""

from __future__ import annotations

import os
import tokenize
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

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
    "split_batches",
    "compute_inputs",
    "capture_activations",
    "measure_density",
]

COMPUTE_KINDS = MAC_KINDS  # the layers whose input activations are captured
Feeds = Mapping[str, np.ndarray] | str | os.PathLike


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of a data ``.npz`` file, by name, each checked to hold samples.

    A data file holds samples on axis 0 of every array (one per model input, and
    optionally ``labels``), so each array must be numeric (bool, integer or float), at
    least 1-D, and all must hold the same number of samples. Checking here turns a bad
    file into one message naming the file and the array, instead of a failure deep in
    onnxruntime or the fine-tuner.

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
    counts = {name: len(a) for name, a in arrays.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise HwccError(
            f"{path}: the arrays hold different numbers of samples ({listed})",
            "every array holds one entry per sample on axis 0",
        )
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
    """Refuse a data array that cannot hold samples: not numbers, or a single value.

    Raises:
        HwccError: naming ``source`` and the array.
    """
    if a.dtype.kind not in "biuf":
        raise HwccError(
            f"{source}: array {name!r} holds {a.dtype} values, not numbers",
            "data arrays hold numbers (bool, integer or float)",
        )
    if a.ndim == 0:
        raise HwccError(
            f"{source}: array {name!r} is a single value, not samples",
            "put the samples on axis 0, e.g. shape [N, ...]",
        )


def _reason(e: BaseException) -> str:
    """An exception's text, short and printable: broken files put raw bytes in messages."""
    text = (
        "".join(c if c.isascii() and c.isprintable() else "?" for c in str(e)) or type(e).__name__
    )
    return text if len(text) <= 80 else text[:77] + "..."


def load_feeds(graph: Graph, data: Feeds) -> dict[str, np.ndarray]:
    """The arrays for every real input of ``graph``, from a mapping or an ``.npz`` path.

    Raises:
        HwccError: the file is missing or not an ``.npz``, or an input has no array.
    """
    if isinstance(data, (str, os.PathLike)):
        data = read_npz(data)
    missing = [n for n in graph.real_inputs() if n not in data]
    if missing:
        raise HwccError(
            f"the data has no array for model input(s) {', '.join(missing)}",
            f"name the arrays after the model's inputs: {', '.join(graph.real_inputs())}",
        )
    return {n: np.asarray(data[n]) for n in graph.real_inputs()}


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
    """The samples cut into runs the model's declared batch accepts, cast to the input types.

    Raises:
        HwccError: no samples, or a count that is not a multiple of the model's batch.
    """
    n = min(len(a) if a.ndim else 1 for a in feeds.values())
    if max_samples is not None:
        n = min(n, max_samples)
    declared = {
        graph.tensors[k].shape[0]
        for k in feeds
        if graph.tensors[k].shape and isinstance(graph.tensors[k].shape[0], int)
    }
    step = declared.pop() if len(declared) == 1 else n
    if n == 0 or step < 1 or n % step:
        raise HwccError(
            f"{n} samples do not split into runs of the model's batch {step}",
            f"give a positive multiple of {step} samples",
        )
    types = {k: numpy_dtype(graph.tensors[k].elem_type) for k in feeds}
    return [
        {k: a[i : i + step].astype(types[k], copy=False) for k, a in feeds.items()}
        for i in range(0, n, step)
    ]


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
