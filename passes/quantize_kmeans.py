"""Weight sharing by k-means, per layer: trained quantization as in Deep Compression.

Per layer, 1-D k-means from linearly spaced centroids minimising
``Σ_i Σ_{w ∈ c_i} (w − c_i)²`` over the non-zero weights; each weight is replaced by its
centroid and zeros are kept, so a layer holds at most ``2**bits`` values
(:mod:`hwcc.passes.lib.kmeans`). A layer with zeros gets ``2**bits − 1`` centroids and
codebook index 0 is the value 0; ``zero_slot`` does the same for dense layers (EIE's
codebook, Han et al., ISCA 2016: index 0 is zero).

``codebook_bits = B > 0`` rounds the centroids to ``B``-bit signed fixed point with one
power-of-two scale per layer, ``c_q = q·2^−f``, ``q ∈ [−2^(B−1), 2^(B−1) − 1]`` an integer
and ``f`` the most fraction bits with which the largest ``|c|`` fits
(:mod:`hwcc.formats.fixed_point`), and gives each weight the nearest ``c_q``; the weights
written are exactly those values (float32 holds ``q·2^−f`` exactly for ``B ≤ 24``), so
``w·2^f`` is an integer of ``B`` bits. A centroid within half a step of zero becomes 0 and
its weights with it (the decoder's value for it); no other non-zero weight becomes zero.

The model stays float32, so each layer is annotated with what it stores:
``node.meta["weight_bits"] = bits`` and ``node.meta["weight_sharing"] = {"bits",
"clusters"}`` (plus ``"zero_slot": True`` when asked, and ``"codebook_bits"`` and
``"codebook_frac_bits"`` (``f``) with fixed-point values). ``details`` reports each
layer's SQNR, ``10·log10(Σ w² / Σ (w − q)²)`` dB, and its storage before (float32) and
after (fixed-length and Huffman-coded indices, relative indices for sparse layers,
pointers, and the codebook at 32 or ``B`` bits an entry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib import kmeans
from hwcc.passes.lib.quantization import LAYERS, annotated, choose_layers, sqnr_by_layer
from hwcc.passes.lib.weights import (
    WeightedLayer,
    check_layer_names,
    matrix_view,
    sqnr_db,
)


@register_pass
class QuantizeKmeans(Pass):
    """Share weights: each layer's weights replaced by the nearest of 2**bits k-means centroids.

    Rewrite cases (the chosen layers: knob ``layers``, ``all`` or a comma-separated list of
    node names; or ``QuantizeKmeans(layers=[...])``, which a set ``layers`` knob overrides):

    1. Each chosen layer's non-zero weights are replaced by the nearest of ``2**bits``
       k-means centroids (``2**bits − 1`` and zero in a layer with zeros); ``layer_bits``
       (``"fc1=5,conv1=8"`` or JSON; or ``QuantizeKmeans(layer_bits={...})``) sets the
       bits of single layers (the knob's entries win over the constructor's).
    2. ``zero_slot=true``: a dense layer too keeps codebook index 0 for zero, so it gets at
       most ``2**bits − 1`` shared non-zero values; only non-zero weights are clustered,
       zeros stay zero and no weight is moved to zero by k-means.
    3. ``codebook_bits=B``: each layer's shared values are rounded to ``B``-bit signed
       fixed point with a per-layer power-of-two scale (``q·2^−f``, the largest
       ``|centroid|`` in range) and the weights written equal them exactly; a centroid
       that rounds to zero turns its weights into zeros (codebook index 0).
    4. A weight tensor read by several chosen layers given the same bits stays one shared
       tensor; otherwise each layer gets its own copy.

    Must not fire when:

    5. the graph has no Conv, Gemm or MatMul;
    6. the ``layers`` list is empty;
    7. no chosen layer has constant float weights (computed at run time, behind a
       DequantizeLinear, or overridable graph inputs);
    8. every weight and annotation would stay as it is (sharing twice with the same knobs,
       fixed-point codebook included).

    Errors (never ignored): a layer name that is not a Conv, Gemm or MatMul, or one whose
    weights are not constant; ``layer_bits`` outside 1 to 8 or naming a layer not chosen;
    fixed-point shared values that the weights' dtype cannot hold exactly.
    """

    name = "quantize_kmeans"
    exact = False
    knobs = (
        Knob(
            "bits", int, 4, "index bits per weight (2**bits shared values per layer)", range=(1, 8)
        ),
        Knob(
            "layer_bits",
            dict,
            {},
            "per-layer bits overriding bits: LAYER=B,LAYER=B or JSON",
            item=int,
        ),
        Knob(
            "zero_slot",
            bool,
            False,
            "codebook index 0 is zero in every layer, dense ones too (2**bits - 1 shared "
            "non-zero values)",
        ),
        Knob(
            "codebook_bits",
            int,
            0,
            "shared values in signed fixed point of this many bits, a power-of-two scale per "
            "layer (0: float32)",
            range=(0, 24),
        ),
        LAYERS,
    )

    def __init__(
        self, layers: Sequence[str] | None = None, layer_bits: Mapping[str, int] | None = None
    ):
        self.layers = None if layers is None else list(layers)
        self.layer_bits = dict(layer_bits or {})

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        knob_set = "layers" in ctx.knobs.get(self.name, {})
        choice = choose_layers(graph, opts["layers"], self.layers, knob_set)
        if choice.why_not:
            return choice.refusal(graph)
        per_layer = {**self.layer_bits, **opts["layer_bits"]}
        check_layer_names(per_layer, choice.chosen, choice.reasons, "layer_bits")
        for name, b in per_layer.items():
            if not 1 <= b <= 8:
                raise HwccError(
                    f"{self.name}: layer_bits gives {name!r} {b} bits",
                    "weight sharing takes 1 to 8 bits",
                )
        cache: dict[tuple[str, int], tuple[kmeans.SharedWeights, dict[str, Any]]] = {}
        new, report, meta = {}, {}, {}
        for lay in choice.chosen:
            b = per_layer.get(lay.name, opts["bits"])
            if (lay.weight, b) not in cache:  # layers sharing a tensor and bits share the result
                cache[lay.weight, b] = self._share(lay, b, opts)
            shared, store = cache[lay.weight, b]
            if not np.array_equal(shared.values, lay.array):
                new[lay.name] = (lay, shared.values)
            meta[lay.name], report[lay.name] = _layer_report(lay, shared, store, b, opts)
        details = {
            "layers": report,
            "sqnr_db": sqnr_by_layer(report),
            "total": _total(report),
            "skipped": choice.skipped,
        }
        return annotated(graph, new, meta, details)

    def _share(
        self, lay: WeightedLayer, bits: int, opts: Mapping[str, Any]
    ) -> tuple[kmeans.SharedWeights, dict[str, Any]]:
        """The layer's shared weights and what they cost to store."""
        try:
            shared = kmeans.share_weights(
                lay.array, bits, zero_slot=opts["zero_slot"], codebook_bits=opts["codebook_bits"]
            )
        except HwccError as e:
            raise HwccError(f"{self.name}: layer {lay.name}: {e.message}", e.hint) from None
        view = matrix_view(replace(lay, array=shared.values))
        return shared, kmeans.storage(shared, view, bits, opts["codebook_bits"])


def _layer_report(
    lay: WeightedLayer,
    shared: kmeans.SharedWeights,
    store: dict[str, Any],
    bits: int,
    opts: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The layer's ``node.meta`` annotation and its entry in ``details["layers"]``."""
    book_bits = opts["codebook_bits"]
    clusters = len(shared.codebook) - (1 if shared.zero_slot else 0)
    sharing: dict[str, Any] = {"bits": bits, "clusters": clusters}
    if opts["zero_slot"]:
        sharing["zero_slot"] = True
    if book_bits:
        sharing.update(codebook_bits=book_bits, codebook_frac_bits=shared.frac_bits)
    error = np.abs(shared.values.astype(np.float64) - lay.array)
    zeroed = int(np.count_nonzero((shared.values == 0) & (lay.array != 0)))
    report = {
        "bits": bits,
        "clusters": clusters,
        "sparse": shared.sparse,
        "steps": shared.steps,
        "zero_slot": shared.zero_slot,
        "codebook_bits": book_bits or None,
        "codebook_frac_bits": shared.frac_bits,
        "rounded_to_zero": zeroed,
        "distinct_values": int(np.unique(shared.values).size),
        "max_abs_error": float(error.max()) if error.size else 0.0,
        "sqnr_db": sqnr_db(lay.array, shared.values),
        "bits_before": lay.array.size * lay.array.dtype.itemsize * 8,
        **store,
    }
    return {"weight_bits": bits, "weight_sharing": sharing}, report


def _total(report: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The whole model's storage: before, fixed-length, Huffman-coded, and the ratios."""
    before = sum(r["bits_before"] for r in report.values())
    fixed = sum(r["fixed_bits"] for r in report.values())
    huff = sum(r["huffman_bits"] for r in report.values())
    return {
        "bits_before": before,
        "fixed_bits": fixed,
        "huffman_bits": huff,
        "compression": before / huff if huff else None,
        "huffman_saving": 1.0 - huff / fixed if fixed else 0.0,
    }
