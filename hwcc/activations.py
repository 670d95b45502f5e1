"""Activations measured on data: each compute layer's input, and how dense it is.

Sparse accelerators skip zero activations (EIE broadcasts only the non-zero ones), so
their cost depends on the data. This module runs the model in onnxruntime (through
:func:`hwcc.verify.run_onnx`) on a copy of the graph whose compute layers' input
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
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.verify import run_onnx
from hwcc.workload import analyze, constant_tensors

__all__ = ["COMPUTE_KINDS", "read_npz", "load_feeds", "split_batches", "compute_inputs", "capture_activations", "measure_density"]

COMPUTE_KINDS = ("conv", "depthwise_conv", "grouped_conv", "conv_transpose", "gemm", "matmul",
                 "lstm", "gru", "rnn")
Feeds = Mapping[str, np.ndarray] | str | os.PathLike


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, by name.

    Raises:
        HwccError: the file is missing or not a readable ``.npz``.
    """
    path = Path(path)
    if not path.is_file():
        raise HwccError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise HwccError(f"{path} is not a readable .npz file: {e}",
                        "save the data with numpy.savez(path, input_name=array, ...)") from None


def load_feeds(graph: Graph, data: Feeds) -> dict[str, np.ndarray]:
    """The arrays for every real input of ``graph``, from a mapping or an ``.npz`` path.

    Raises:
        HwccError: the file is missing or not an ``.npz``, or an input has no array.
    """
    if isinstance(data, (str, os.PathLike)):
        data = read_npz(data)
    missing = [n for n in graph.real_inputs() if n not in data]
    if missing:
        raise HwccError(f"the data has no array for model input(s) {', '.join(missing)}",
                        f"name the arrays after the model's inputs: {', '.join(graph.real_inputs())}")
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


def split_batches(graph: Graph, feeds: Mapping[str, np.ndarray],
                  max_samples: int | None = None) -> list[dict[str, np.ndarray]]:
    """The samples cut into runs the model's declared batch accepts, cast to the input types.

    Raises:
        HwccError: no samples, or a count that is not a multiple of the model's batch.
    """
    from hwcc.dtypes import numpy_dtype

    n = min(len(a) if a.ndim else 1 for a in feeds.values())
    if max_samples is not None:
        n = min(n, max_samples)
    declared = {graph.tensors[k].shape[0] for k in feeds
                if graph.tensors[k].shape and isinstance(graph.tensors[k].shape[0], int)}
    step = declared.pop() if len(declared) == 1 else n
    if n == 0 or step < 1 or n % step:
        raise HwccError(f"{n} samples do not split into runs of the model's batch {step}",
                        f"give a positive multiple of {step} samples")
    types = {k: numpy_dtype(graph.tensors[k].elem_type) for k in feeds}
    return [{k: a[i:i + step].astype(types[k], copy=False) for k, a in feeds.items()} for i in range(0, n, step)]


def capture_activations(graph: Graph, data: Feeds, *, max_samples: int | None = None) -> dict[str, np.ndarray]:
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


def measure_density(graph: Graph, data: Feeds, *, max_samples: int | None = None) -> dict[str, float]:
    """Fraction of non-zero elements of each compute layer's input activation on ``data``.

    Returns:
        Layer name -> density in [0, 1], for ``CostContext(act_density=...)``.
    """
    acts = capture_activations(graph, data, max_samples=max_samples)
    return {name: float(np.count_nonzero(a)) / a.size if a.size else 1.0 for name, a in acts.items()}
