"""Fine-grained magnitude pruning of Conv, Gemm and MatMul weights, with EIE storage.

Deep Compression (Han, Mao, Dally, ICLR 2016) prunes individual weights by magnitude. For
a layer of ``n`` weights ``w`` and a target density ``d`` in (0, 1]:

    k = max(1, round(d·n)),     t = the k-th largest |w|,
    w'_i = w_i  if i is among the k largest |w|   else 0,

so exactly ``k`` weights survive (ties at ``t`` are broken by ``numpy.argpartition``,
deterministically) and every surviving ``|w|`` is at least every pruned one. A layer that
already has ``k`` non-zeros or fewer is left as it is. Biases are never pruned. The model
stays a dense ONNX model whose pruned weights are exact zeros; the workload view's
``weight_density`` sees them.

Storage is accounted in EIE's format (Han et al., ISCA 2016; :mod:`hwcc.formats.sparse`) on
the layer's matrix view ``W`` (``rows`` outputs × ``cols`` inputs; a Conv is
``M × C/g·kh·kw``, see :mod:`hwcc.passes.lib.weights`), interleaved over ``N`` PEs:

    bits = Σ_PE entries_PE·(index_bits + 4) + N·(cols + 1)·16 + |codebook|·16,

where ``entries`` counts the non-zeros and the padding entries (one per 16 zeros of a
gap longer than 15 within a PE's column), each a codebook index and a 4-bit relative
row index; ``cols + 1`` 16-bit column pointers per PE; and the codebook: zero and at
most ``2**index_bits − 1`` shared non-zero values (1-D k-means from a linear
initialisation, :mod:`hwcc.passes.lib.kmeans`; the exact values when there are few), 16
bits each. ``bits_per_nonzero`` is ``(entries·(index_bits + 4) +
pointers·16) / nnz``; the dense size is ``n`` times the weights' item size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.formats import sparse as eie_format
from hwcc.ir import Graph
from hwcc.ir.search_space import Step, Unit
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.kmeans import eie_codebook
from hwcc.passes.lib.weights import (
    WeightedLayer,
    check_layer_names,
    find_layers,
    matrix_view,
    replace_weights,
)

_CODEBOOK_ENTRY_BITS = 16  # EIE decodes a codebook index to 16-bit fixed point


@register_pass
class PruneWeights(Pass):
    """Prune individual weights of Conv, Gemm and MatMul layers by magnitude.

    Rewrite cases:

    1. A Conv (any ``group``) whose weight is a constant float initializer: the weight
       keeps its ``round(density·n)`` largest-magnitude values; the others become 0.
    2. A Gemm (``transA``/``transB`` 0 or 1) or MatMul with one constant float operand
       (``B`` as usual, or ``A``): that operand is pruned the same way.
    3. Per-layer densities (knob ``layer_density``, ``"conv1=0.3,fc1=0.1"`` or a JSON
       object; or ``PruneWeights(layer_density={...})``) override ``density`` for the
       layers they name, as Deep Compression prunes each layer to its own density (the
       knob's entries win over the constructor's).
    4. A weight read by several layers pruned to the same density is pruned once and
       stays shared; read by anything else as well, each layer gets its own pruned copy.
    5. Every pruned layer's EIE storage is reported in ``details["layers"]``.

    Must not fire when:

    6. ``density`` is 1 and no per-layer density is below 1;
    7. no Conv, Gemm or MatMul has constant float weights (weights computed at run time,
       behind a DequantizeLinear, or overridable graph inputs are left alone);
    8. every layer already has no more non-zeros than its target.

    Never: biases (Conv ``B``, Gemm ``C``) and other operands are not pruned; a per-layer
    density naming a node that is not a weighted layer is an error, not ignored.
    """

    name = "prune_weights"
    exact = False
    searchable = search_default = True
    search_order = 20
    aliases = ("prune",)
    knobs = (
        Knob(
            "density",
            float,
            0.5,
            "fraction of each layer's weights kept (0 < density <= 1)",
            range=(0.0, 1.0),
        ),
        Knob(
            "layer_density",
            dict,
            {},
            "per-layer densities overriding density: LAYER=D,LAYER=D or JSON",
            item=float,
        ),
        Knob("n_pes", int, 64, "PEs the EIE storage report interleaves rows over", range=(1, 4096)),
        Knob("index_bits", int, 4, "codebook index bits in the EIE storage report", range=(1, 8)),
    )

    def __init__(self, layer_density: Mapping[str, float] | None = None):
        self.layer_density = dict(layer_density or {})

    def units(self, graph: Graph) -> Iterator[Unit]:
        """Each layer with constant float weights, more than 16 of them and a density above
        0.02: its steps lower the density from ``d`` to ``d·(1 − j/20)``, ``j = 1 … 19``."""
        layers, _ = find_layers(graph)
        for layer in layers:
            d0 = float(np.count_nonzero(layer.array)) / max(1, layer.array.size)
            if layer.array.size < 16 or d0 <= 0.02:
                continue
            name = layer.node.name
            steps = tuple(
                Step(
                    {"density": 1.0, "layer_density": {name: d}}, {"density": f"{d0:.3g}->{d:.3g}"}
                )
                for d in (round(d0 * (1 - j / 20), 4) for j in range(1, 20))
            )
            yield Unit(f"weights of {name}", self.name, (name,), steps)

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        layers, skipped = find_layers(graph)
        per_layer = {**self.layer_density, **opts["layer_density"]}
        check_layer_names(per_layer, layers, skipped, "layer_density")
        for name, d in [("density", opts["density"]), *per_layer.items()]:
            if not 0.0 < d <= 1.0:
                raise HwccError(
                    f"prune_weights: density {d} for {name!r} is outside (0, 1]",
                    "a density is the fraction of weights kept, above 0 and at most 1",
                )
        targets = {layer.name: per_layer.get(layer.name, opts["density"]) for layer in layers}
        if not layers and not skipped:
            return PassResult(graph, False, "the graph has no Conv, Gemm or MatMul")
        if not layers:
            why = "; ".join(f"{n}: {r}" for n, r in skipped.items())
            return PassResult(
                graph,
                False,
                f"no Conv, Gemm or MatMul has constant float weights ({why})",
                {"skipped": skipped},
            )
        if all(d >= 1.0 for d in targets.values()):
            return PassResult(
                graph,
                False,
                "density is 1 for every layer: every weight is kept",
                {"skipped": skipped},
            )
        g = graph.copy()
        candidates = [lay for lay in layers if targets[lay.name] < 1.0]
        after = _prune_all(g, candidates, targets)
        report = {
            lay.name: _layer_report(
                lay, targets[lay.name], after[lay.name], opts["n_pes"], opts["index_bits"]
            )
            for lay in candidates
        }
        changed = any(after[lay.name] is not lay.array for lay in candidates)
        details = {
            "layers": report,
            "skipped": skipped,
            "total": _totals(report),
            "n_pes": opts["n_pes"],
            "index_bits": opts["index_bits"],
        }
        if not changed:
            return PassResult(
                graph,
                False,
                "every layer already has no more non-zero weights than its target density allows",
                details,
            )
        return PassResult(g, True, None, details)


def keep_count(n: int, density: float) -> int:
    """How many of ``n`` weights a layer keeps at ``density``: ``max(1, round(density·n))``."""
    return min(n, max(1, int(round(density * n))))


def magnitude_prune(w: np.ndarray, k: int) -> np.ndarray:
    """``w`` with all but its ``k`` largest-magnitude values set to 0 (a new array)."""
    flat = np.abs(w).ravel()
    if k >= flat.size:
        return w.copy()
    keep = np.argpartition(flat, flat.size - k)[flat.size - k :]
    out = np.zeros(flat.size, dtype=w.dtype)
    out[keep] = w.ravel()[keep]
    return out.reshape(w.shape)


def _prune_all(
    g: Graph, layers: list[WeightedLayer], targets: dict[str, float]
) -> dict[str, np.ndarray]:
    """Prune ``layers`` of ``g`` in place; each layer's weights afterwards, by name (its
    old array where there was nothing to prune)."""
    pruned: dict[tuple[str, int], np.ndarray] = {}  # one array per (tensor, k): shared stays shared
    new: dict[str, tuple[WeightedLayer, np.ndarray]] = {}
    for layer in layers:
        k = keep_count(layer.array.size, targets[layer.name])
        if np.count_nonzero(layer.array) > k:
            key = (layer.weight, k)
            if key not in pruned:
                pruned[key] = magnitude_prune(layer.array, k)
            new[layer.name] = (layer, pruned[key])
    replace_weights(g, new)
    return {lay.name: new[lay.name][1] if lay.name in new else lay.array for lay in layers}


def _layer_report(
    layer: WeightedLayer, target: float, after: np.ndarray, n_pes: int, index_bits: int
) -> dict[str, Any]:
    nnz = int(np.count_nonzero(after))
    kept = np.abs(after[after != 0])
    return {
        "weight": layer.weight,
        "density_target": target,
        "weights": int(after.size),
        "nonzeros_before": int(np.count_nonzero(layer.array)),
        "nonzeros": nnz,
        "density": nnz / after.size if after.size else 1.0,
        "threshold": float(kept.min()) if kept.size else 0.0,
        "dense_bytes": int(after.nbytes),
        "eie": eie_storage(matrix_view(replace(layer, array=after)), n_pes, index_bits),
    }


def eie_storage(view: np.ndarray, n_pes: int, index_bits: int) -> dict[str, Any]:
    """Storage of a ``rows × cols`` matrix in EIE's format (module docstring), exactly.

    Returns:
        ``rows``, ``cols``, ``nonzeros``, ``entries`` (non-zeros and padding), ``padding``,
        ``pointers`` (all PEs), ``spmat_bits``, ``pointer_bits``, ``codebook_bits``,
        ``bits`` (their sum), ``bits_per_nonzero`` (without the codebook; ``None`` when
        empty) and ``bytes``.
    """
    m = eie_format.encode(
        view, n_pes, index_bits=index_bits, codebook=eie_codebook(view, index_bits)
    )
    entries, padding = int(m.entries_per_pe.sum()), int(m.padding_per_pe.sum())
    spmat = int(m.spmat_bits_per_pe.sum())
    pointer_bits = m.n_pes * m.pointer_bits_per_pe
    codebook_bits = len(m.codebook) * _CODEBOOK_ENTRY_BITS
    nnz = entries - padding
    bits = spmat + pointer_bits + codebook_bits
    return {
        "rows": m.shape[0],
        "cols": m.shape[1],
        "nonzeros": nnz,
        "entries": entries,
        "padding": padding,
        "pointers": m.n_pes * m.pointers_per_pe,
        "spmat_bits": spmat,
        "pointer_bits": pointer_bits,
        "codebook_bits": codebook_bits,
        "bits": bits,
        "bits_per_nonzero": (spmat + pointer_bits) / nnz if nnz else None,
        "bytes": -(-bits // 8),
    }


def _totals(report: dict[str, dict[str, Any]]) -> dict[str, Any]:
    weights = sum(r["weights"] for r in report.values())
    nnz = sum(r["nonzeros"] for r in report.values())
    dense = sum(r["dense_bytes"] for r in report.values())
    compressed = sum(r["eie"]["bytes"] for r in report.values())
    return {
        "weights": weights,
        "nonzeros": nnz,
        "density": nnz / weights if weights else 1.0,
        "dense_bytes": dense,
        "compressed_bytes": compressed,
        "compression": dense / compressed if compressed else None,
    }
