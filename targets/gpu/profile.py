"""Measured GPU layer times: a lookup table built on the device with onnxruntime's CUDA provider.

:func:`build_table` times every distinct layer of a graph as a one-node model on the GPU
and writes a JSON table keyed by the device's fingerprint (GPU name, driver, onnxruntime
version). The ``gpu`` target prices a layer found in the present device's table by its
measured time, and every other layer by its roofline.

How a layer is timed:

1. The node is cut out into a one-node model: constant inputs keep their values, the
   other inputs become graph inputs fed with random data of their shape and type.
2. The session runs on ``CUDAExecutionProvider`` only (CPU fallback disabled, so a node
   the provider cannot run is reported, not timed on the CPU). Inputs and outputs are
   bound on the GPU with IO binding, so no host-device copy is timed.
3. ``warmup`` runs (cuDNN's algorithm search happens there), then ``repeats`` runs,
   each timed on the host clock up to ``synchronize_outputs()``; the median is kept.
4. The same is done for a one-element Identity model: that is the fixed cost of a
   session run (host overhead plus one trivial kernel). A layer's table time is its
   median minus this overhead; the target adds one kernel launch back, so a graph's
   sum does not count the per-run overhead once per layer.

The table itself (its JSON file, where it lives, how a layer is keyed) is
:mod:`hwcc.targets.gpu.table`; its names are importable from here too.
"""

from __future__ import annotations

import datetime
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes
from hwcc.ir.onnx_io import to_proto
from hwcc.ir.workload import analyze
from hwcc.targets.gpu.table import MeasuredTable, layer_key, load_table, save_table, table_path

__all__ = [
    "CUDA",
    "VIEWS",
    "MeasuredTable",
    "build_table",
    "cuda_available",
    "gpu_fingerprint",
    "layer_key",
    "load_table",
    "one_node_models",
    "save_table",
    "table_path",
    "time_model",
]

CUDA = "CUDAExecutionProvider"
_NO_CUDA = (
    "onnxruntime's CUDA provider is not available on this machine: "
    "install onnxruntime-gpu on a machine with an NVIDIA GPU"
)
VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Shape", "Size")
"""Ops that onnxruntime usually runs without a kernel of their own (the output aliases the
input)."""


def cuda_available() -> bool:
    """True if onnxruntime was built with the CUDA execution provider."""
    import onnxruntime as ort

    return CUDA in ort.get_available_providers()


def _require_cuda() -> None:
    if not cuda_available():
        raise HwccError(_NO_CUDA, "the gpu target prices layers by its roofline meanwhile")


def gpu_fingerprint() -> str:
    """``"<GPU name> | driver <version> | onnxruntime <version>"`` of GPU 0.

    Raises:
        HwccError: the CUDA provider is missing, or ``nvidia-smi`` cannot name the GPU.
    """
    _require_cuda()
    import onnxruntime as ort

    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise HwccError(
            "nvidia-smi not found: cannot tell which GPU this is",
            "install the NVIDIA driver utilities",
        )
    out = subprocess.run(
        [smi, "--query-gpu=name,driver_version", "--format=csv,noheader", "-i", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0 or "," not in out.stdout:
        raise HwccError(
            f"nvidia-smi could not name GPU 0: {out.stderr.strip() or out.stdout.strip()}"
        )
    name, driver = (s.strip() for s in out.stdout.strip().splitlines()[0].split(",", 1))
    return f"{name} | driver {driver} | onnxruntime {ort.__version__}"


# ---------------------------------------------------------------------- one-node models
def _sample(elem_type: int, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    dtype = dtypes.numpy_dtype(elem_type)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype)  # valid indices, counts and masks for every op


def _constant_value(graph: Graph, name: str) -> np.ndarray | None:
    t = graph.tensors[name]
    if t.data is not None:
        return t.data
    p = graph.producer(name)
    if p is not None and p.op_type == "Constant" and isinstance(p.attr("value"), np.ndarray):
        return p.attr("value")
    return None


def _cut(graph: Graph, node, rng: np.random.Generator) -> tuple[Any, dict[str, np.ndarray]]:
    """``node`` as a one-node ModelProto with feeds for its non-constant inputs."""
    g, feeds = Graph(node.name), {}
    g.opset_imports = dict(graph.opset_imports)
    for name in dict.fromkeys(t for t in node.inputs if t):
        src, value = graph.tensors[name], _constant_value(graph, name)
        if value is not None:
            g.add_initializer(name, value, src.elem_type or None)
        elif not src.is_static:
            raise HwccError(f"input {name!r} of {node.name} has no fixed shape")
        else:
            g.add_input(name, src.elem_type, src.shape)
            feeds[name] = _sample(src.elem_type, src.shape, rng)
    g.add_node(
        node.op_type,
        node.inputs,
        node.outputs,
        node.attrs,
        name=node.name,
        domain=node.domain,
        attr_types=node.attr_types,
    )
    for o in (o for o in node.outputs if o):
        t, src = g.tensor(o), graph.tensors[o]
        t.elem_type, t.shape = src.elem_type, src.shape
        g.outputs.append(o)
    return to_proto(g, value_info=False), feeds


def one_node_models(graphs: Graph | Iterable[Graph], seed: int = 0) -> tuple[dict, dict[str, str]]:
    """Every distinct priced layer of ``graphs`` as a one-node model.

    Returns:
        ``(models, skipped)``: layer key -> ``(layer, ModelProto, feeds)``, and layer key
        -> why the layer could not be cut out. Views and constants are left out.
    """
    rng = np.random.default_rng(seed)
    models, skipped = {}, {}
    for graph in [graphs] if isinstance(graphs, Graph) else list(graphs):
        if not isinstance(graph, Graph):
            raise HwccError(
                f"build_table needs ir.Graph objects, got {type(graph).__name__}",
                "pass the graph itself: a Layer record lacks the node's attributes",
            )
        work = analyze(graph)
        for node, layer in zip(graph.nodes, work.layers):
            key = layer_key(layer)
            if (
                layer.kind == "constant"
                or layer.op_type in VIEWS
                or key in models
                or key in skipped
            ):
                continue
            if not layer.known:
                skipped[key] = f"{layer.name}: {layer.reason}"
                continue
            try:
                models[key] = (layer, *_cut(graph, node, rng))
            except (HwccError, KeyError, ValueError) as e:
                skipped[key] = f"{layer.name}: {e}"
    return models, skipped


def time_model(
    model, feeds: Mapping[str, np.ndarray], provider: str, *, warmup: int = 10, repeats: int = 50
) -> float:
    """Median wall-clock seconds of one synchronised session run of ``model`` on ``provider``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if provider != "CPUExecutionProvider":
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=[provider])
    device = "cuda" if provider == CUDA else "cpu"
    binding = sess.io_binding()
    for name, value in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, 0))
    for out in sess.get_outputs():
        binding.bind_output(out.name, device)
    for _ in range(warmup):
        sess.run_with_iobinding(binding)
    binding.synchronize_outputs()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _identity_model():
    """A one-element Identity: the fixed cost of a session run."""
    g = Graph("overhead")
    g.add_input("x", dtypes.FLOAT, (1,))
    g.add_node("Identity", ["x"], ["y"])
    g.tensor("y").elem_type, g.tensor("y").shape = dtypes.FLOAT, (1,)
    g.outputs.append("y")
    return to_proto(g, value_info=False)


def build_table(
    graph_or_layers: Graph | Iterable[Graph],
    device_fingerprint: str | None = None,
    *,
    path: str | os.PathLike | None = None,
    warmup: int = 10,
    repeats: int = 50,
) -> MeasuredTable:
    """Time every distinct layer on this machine's GPU and save the table.

    Args:
        graph_or_layers: a graph, or several, whose layers to time.
        device_fingerprint: the key to file the table under; default this GPU's
            (:func:`gpu_fingerprint`), which is what the ``gpu`` target looks up.
        path: where to write; default :func:`table_path` of the fingerprint.
        warmup: untimed runs per layer.
        repeats: timed runs per layer (the median is kept).

    Returns:
        The table, already saved; layers that could not be timed are in ``skipped``.

    Raises:
        HwccError: onnxruntime's CUDA provider is not available.
    """
    _require_cuda()
    import onnxruntime as ort

    fingerprint = device_fingerprint or gpu_fingerprint()
    models, skipped = one_node_models(graph_or_layers)
    overhead = time_model(
        _identity_model(), {"x": np.zeros(1, np.float32)}, CUDA, warmup=warmup, repeats=repeats
    )
    entries = {}
    for key, (layer, model, feeds) in models.items():
        try:
            entries[key] = time_model(model, feeds, CUDA, warmup=warmup, repeats=repeats)
        except Exception as e:  # onnxruntime's own error types; the reason goes into the table
            skipped[key] = f"{layer.name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    meta = {
        "onnxruntime": ort.__version__,
        "warmup": warmup,
        "repeats": repeats,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    table = MeasuredTable(fingerprint, entries, overhead, skipped, None, meta)
    save_table(table, path)
    return table
