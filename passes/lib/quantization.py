"""What the quantize passes share: the layers they choose and the annotated copy they return.

``quantize_int8``, ``quantize_kmeans`` and ``quantize_fixed16`` (and ``quantize``, which
runs one of them by ``mode``) rewrite the weights of a graph's weighted layers
(:func:`hwcc.passes.lib.weights.find_layers`): all of them, those the ``layers`` knob
names (node names separated by commas), or, when that knob is not set, those given to the
pass's constructor. :func:`choose_layers` picks them, or says why there is nothing to do.

Each reports the error per layer as the weights' SQNR,
``10·log10(Σ w² / Σ (w − q)²)`` dB (:func:`hwcc.passes.lib.weights.sqnr_db`), in
``details["sqnr_db"]``.

The k-means and fixed-point models stay float32 (their values are representable in the
narrower format), so the element types do not tell a cost model the width: those passes
annotate each layer's ``node.meta`` instead (:func:`annotated`). An int8 model needs
none: its widths are in its types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwcc.ir import Graph
from hwcc.ir.transform import Knob, PassResult
from hwcc.passes.lib.weights import WeightedLayer, check_layer_names, find_layers, replace_weights

__all__ = ["LAYERS", "Choice", "annotated", "choose_layers", "sqnr_by_layer"]

LAYERS = Knob("layers", str, "all", "layers to quantize: all, or node names separated by commas")


@dataclass(frozen=True)
class Choice:
    """The layers a quantize pass rewrites, or why it rewrites none.

    Attributes:
        chosen: the layers to rewrite, in graph order.
        skipped: each Conv, Gemm or MatMul without constant float weights -> why.
        reasons: each weighted layer not chosen -> why (``skipped`` included), to check
            per-layer settings against.
        why_not: why there is nothing to do (``None`` when ``chosen`` is not empty).
    """

    chosen: list[WeightedLayer]
    skipped: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)
    why_not: str | None = None

    def refusal(self, graph: Graph) -> PassResult:
        """The result of a pass that does not apply: ``graph`` unchanged, and why."""
        return PassResult(graph, False, self.why_not, {"skipped": self.skipped})


def choose_layers(graph: Graph, text: str, preset: Sequence[str] | None, knob_set: bool) -> Choice:
    """The layers to rewrite.

    Args:
        graph: the model.
        text: the ``layers`` knob: ``all``, or node names separated by commas.
        preset: the names given to the pass's constructor (``None``: all).
        knob_set: the ``layers`` knob was set; it then wins over ``preset``.

    Raises:
        HwccError: a name that is not a Conv, Gemm or MatMul, or one whose weights are
            not constant.
    """
    layers, skipped = find_layers(graph)
    if not layers and not skipped:
        return Choice([], skipped, why_not="the graph has no Conv, Gemm or MatMul")
    wanted = _wanted(text, preset, knob_set)
    if wanted is not None and not wanted:
        return Choice([], skipped, why_not="the layers list is empty")
    check_layer_names(wanted or [], layers, skipped, "layers")
    chosen = [lay for lay in layers if wanted is None or lay.name in wanted]
    if not chosen:
        why = "; ".join(f"{n}: {r}" for n, r in skipped.items())
        return Choice(
            [], skipped, why_not=f"no Conv, Gemm or MatMul has constant float weights ({why})"
        )
    picked = {lay.name for lay in chosen}
    reasons = {
        **skipped,
        **{
            lay.name: "it is not among the layers the layers knob chose"
            for lay in layers
            if lay.name not in picked
        },
    }
    return Choice(chosen, skipped, reasons)


def _wanted(text: str, preset: Sequence[str] | None, knob_set: bool) -> list[str] | None:
    """The layer names asked for; ``None`` for all of them."""
    if preset is not None and not knob_set:
        return list(preset)
    text = text.strip()
    if text == "all":
        return None
    return [s.strip() for s in text.split(",") if s.strip()]


def annotated(
    graph: Graph,
    new: Mapping[str, tuple[WeightedLayer, np.ndarray]],
    meta: Mapping[str, Mapping[str, Any]],
    details: dict[str, Any],
) -> PassResult:
    """A copy of ``graph`` with new weights and node annotations, or why nothing changed.

    Args:
        graph: the model (left as it is).
        new: layer name -> ``(layer, new weights)``, for the layers whose values change.
        meta: layer name -> the ``node.meta`` entries to set.
        details: the pass's report.
    """
    same = all(graph.node(n).meta.get(k) == v for n, m in meta.items() for k, v in m.items())
    if not new and same:
        return PassResult(
            graph, False, "every chosen layer already holds these values and annotations", details
        )
    g = graph.copy()
    replace_weights(g, new)
    for name, m in meta.items():
        g.node(name).meta.update(m)
    return PassResult(g, True, None, details)


def sqnr_by_layer(report: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Layer name -> its ``sqnr_db``, from a per-layer report."""
    return {name: r["sqnr_db"] for name, r in report.items()}
