"""Which activations the installed onnxruntime fuses into a Conv and into a Gemm, asked of it.

The list changes between releases (1.18 fused six activations into a convolution; later
releases added ``HardSwish``, and a Gemm takes ``Elu``, ``Softplus`` and others), so the
kernel planner (:mod:`.kernels`) does not keep its own copy: for each candidate it builds
``Conv → act → Conv`` (and ``Gemm → act → Gemm``), lets onnxruntime optimise it as a session does
(``ORT_ENABLE_ALL``) and reads off whether only the two layers are left.
The answer is computed once per process (about 30 small sessions, well under a second).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from hwcc.ir import Graph
from hwcc.ir.onnx_io import to_proto

__all__ = ["CANDIDATES", "CONTRIB", "fused_activations"]

CANDIDATES = (
    "Relu",
    "Sigmoid",
    "Tanh",
    "LeakyRelu",
    "HardSigmoid",
    "Clip",
    "HardSwish",
    "Elu",
    "Selu",
    "Softplus",
    "Softsign",
    "ThresholdedRelu",
    "Gelu",
)
CONTRIB = ("QuickGelu",)  # com.microsoft: x·σ(αx), which onnxruntime fuses from Sigmoid and Mul
_KINDS = ("conv", "gemm", "nchwc")


@functools.cache
def fused_activations(kind: str) -> tuple[str, ...]:
    """The activations onnxruntime fuses into the ``kind`` (``"conv"`` or ``"gemm"``) before
    them, or (``"nchwc"``) runs on an NCHWc tensor as it is, without reordering it back to
    NCHW; in :data:`CANDIDATES` order, then the contrib ones (:data:`CONTRIB`). Empty for
    ``"nchwc"`` on a CPU without the layout."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
    return tuple(a for a in CANDIDATES + CONTRIB if _fuses(kind, a))


def _fuses(kind: str, act: str) -> bool:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 4
    with tempfile.TemporaryDirectory() as d:
        opts.optimized_model_filepath = str(Path(d) / "optimized.onnx")
        model = to_proto(_probe(kind, act)).SerializeToString()
        try:
            ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception:  # an activation this build does not have (Gelu before opset 20)
            return False
        optimized = onnx.load(opts.optimized_model_filepath)
    ops = [n.op_type for n in optimized.graph.node]
    if kind == "nchwc":  # one reorder in and one out: the activation ran on the NCHWc tensor
        return ops.count("ReorderInput") == 1 and ops.count("ReorderOutput") == 1
    # fused: only the two layers are left (and NCHWc reorders); a decomposition such as
    # HardSwish -> FusedGemm(HardSigmoid) + Mul leaves a node of its own, so it is not one
    return sum(not op.startswith("Reorder") for op in ops) == 2


def _probe(kind: str, act: str) -> Graph:
    """``kind → act → kind``: the activation's input is single-use and not a graph output,
    as the fusions require. For ``"nchwc"``: ``conv → Relu → act → conv`` at 16 channels
    (the Relu fuses into the first conv, so the activation meets an NCHWc tensor)."""
    rng = np.random.default_rng(0)
    g = Graph(f"{kind}_{act}")
    g.opset_imports = {"": 20}
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    if kind in ("conv", "nchwc"):
        g.add_input("x", 1, [1, 16, 6, 6])
        g.add_initializer("w", w(16, 16, 3, 3))
        g.add_initializer("b", w(16))
        make = lambda i, o: g.add_node("Conv", [i, "w", "b"], [o], {"pads": [1, 1, 1, 1]})  # noqa: E731
    else:
        g.add_input("x", 1, [2, 8])
        g.add_initializer("w", w(8, 8))
        g.add_initializer("b", w(8))
        make = lambda i, o: g.add_node("Gemm", [i, "w", "b"], [o])  # noqa: E731
    make("x", "t")
    src = "t"
    if kind == "nchwc":
        src = g.add_node("Relu", ["t"], ["r"]).outputs[0]
    if act == "QuickGelu":
        g.opset_imports["com.microsoft"] = 1
        g.add_node(act, [src], ["u"], {"alpha": 1.0}, domain="com.microsoft")
    elif act == "Clip":
        g.add_initializer("lo", np.array(0, np.float32))
        g.add_initializer("hi", np.array(6, np.float32))
        g.add_node(act, [src, "lo", "hi"], ["u"])
    else:
        g.add_node(act, [src], ["u"])
    make("u", "y")
    g.outputs.append("y")
    return g
