"""What the weight passes (``prune_weights``, ``quantize``) share: which nodes are weighted
layers, their weights as a matrix, per-layer settings, and the quantization error.

A *weighted layer* is a ``Conv``, ``Gemm`` or ``MatMul`` of the default domain one of
whose operands is a constant float initializer (:func:`hwcc.passes.lib.edits.constant_value`:
an initializer a caller cannot override) and the other is computed at run time. Its
*matrix view* has one row per output and one column per input of the reduction, which is
the orientation EIE's format stores (``b = W a``):

* Conv ``W[M, C/g, kh, kw]`` → ``M × (C/g·kh·kw)``;
* Gemm ``B`` → ``op(B)ᵀ`` (``N × K``); a constant ``A`` → ``op(A)`` (``M × K``);
* MatMul ``B[..., K, N]`` → the stacked ``Bᵀ`` slices (``(…·N) × K``); a constant
  ``A[..., M, K]`` → ``(…·M) × K``; 1-D operands are one row.

SQNR, the signal-to-quantization-noise ratio of a weight tensor ``w`` and its quantized
values ``q``, in decibels: ``10·log10(Σ w² / Σ (w − q)²)`` (``inf`` when ``q == w``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node
from hwcc.passes.lib.edits import constant_value, set_constant_input

__all__ = [
    "LAYER_OPS",
    "WeightedLayer",
    "check_layer_names",
    "find_layers",
    "matrix_view",
    "replace_weights",
    "sqnr_db",
]

LAYER_OPS = ("Conv", "Gemm", "MatMul")
_ONNX = ("", "ai.onnx")


@dataclass(frozen=True, eq=False)
class WeightedLayer:
    """A layer with constant weights.

    Attributes:
        node: the Conv, Gemm or MatMul.
        index: which of its inputs holds the weights.
        weight: the weights' tensor name.
        array: the weights.
    """

    node: Node
    index: int
    weight: str
    array: np.ndarray

    @property
    def name(self) -> str:
        return self.node.name


def find_layers(graph: Graph) -> tuple[list[WeightedLayer], dict[str, str]]:
    """Every weighted layer of ``graph`` in graph order, and why the other candidates are not.

    Returns:
        ``(layers, skipped)``: the layers, and node name -> reason for each Conv, Gemm or
        MatMul whose weights are not a constant float initializer.
    """
    layers, skipped = [], {}
    for node in graph.nodes:
        if node.op_type not in LAYER_OPS or node.domain not in _ONNX:
            continue
        found = _weight_of(graph, node)
        if isinstance(found, str):
            skipped[node.name] = found
        else:
            layers.append(
                WeightedLayer(
                    node, found, node.inputs[found], constant_value(graph, node.inputs[found])
                )
            )
    return layers, skipped


def _weight_of(graph: Graph, node: Node) -> int | str:
    """Index of the node's constant weight operand, or why it has none."""
    slots = (1,) if node.op_type == "Conv" else (1, 0)
    const = [
        i
        for i in slots
        if i < len(node.inputs) and constant_value(graph, node.inputs[i]) is not None
    ]
    if node.op_type != "Conv" and len(const) == 2:
        return "both operands are constants (fold_constants computes it)"
    if not const:
        which = "weight" if node.op_type == "Conv" else "operand"
        return (
            f"no {which} is a constant initializer"
            " (it is computed or can be overridden at run time)"
        )
    if constant_value(graph, node.inputs[const[0]]).dtype.kind != "f":
        return "its weights are not floating point"
    return const[0]


def replace_weights(graph: Graph, new: Mapping[str, tuple[WeightedLayer, np.ndarray]]) -> None:
    """Give layers new weights, in place: ``new`` maps a layer's name to ``(layer, array)``.

    Layers that share a weight tensor and get the *same array object*, when no other node
    reads that tensor, keep sharing it (its value is replaced); any other layer gets its
    own initializer (:func:`~hwcc.passes.lib.edits.set_constant_input`), so a reader left
    out of ``new`` still sees the old value.
    """
    by_weight: dict[str, list[tuple[WeightedLayer, np.ndarray]]] = {}
    for layer, array in new.values():
        by_weight.setdefault(layer.weight, []).append((layer, array))
    for weight, group in by_weight.items():
        readers = {n.name for n in graph.users(weight)}
        one = len({id(a) for _, a in group}) == 1
        if one and readers == {lay.name for lay, _ in group} and not graph.is_graph_output(weight):
            graph.add_initializer(weight, group[0][1], graph.tensors[weight].elem_type)
            continue
        for layer, array in group:
            set_constant_input(graph, graph.node(layer.name), layer.index, array)


def matrix_view(layer: WeightedLayer) -> np.ndarray:
    """The weights as ``outputs × inputs`` (see the module docstring); a view where possible."""
    w, node = layer.array, layer.node
    if node.op_type == "Conv":
        return w.reshape(w.shape[0], -1)
    if node.op_type == "Gemm":
        trans = node.attr("transB", 0) if layer.index == 1 else not node.attr("transA", 0)
        return w if trans else w.T
    if w.ndim == 1:
        return w.reshape(1, -1)
    if layer.index == 1:
        return np.swapaxes(w, -1, -2).reshape(-1, w.shape[-2])
    return w.reshape(-1, w.shape[-1])


def check_layer_names(
    names: Mapping[str, Any] | list[str],
    layers: list[WeightedLayer],
    skipped: Mapping[str, str],
    what: str,
) -> None:
    """Refuse per-layer settings for nodes that are not weighted layers (a typo would
    otherwise pass silently)."""
    known = {layer.name for layer in layers}
    for name in names:
        if name in known:
            continue
        if name in skipped:
            raise HwccError(f"{what}: layer {name!r} cannot be changed: {skipped[name]}")
        shown = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
        raise HwccError(
            f"{what}: there is no Conv, Gemm or MatMul named {name!r}",
            f"weighted layers of this model: {shown or 'none'}",
        )


def sqnr_db(w: np.ndarray, q: np.ndarray) -> float:
    """``10·log10(Σ w² / Σ (w − q)²)`` in float64; ``inf`` if ``q`` equals ``w``."""
    w64, q64 = np.asarray(w, dtype=np.float64), np.asarray(q, dtype=np.float64)
    noise = float(np.sum((w64 - q64) ** 2))
    signal = float(np.sum(w64**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)
