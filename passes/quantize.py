"""Quantize the weights of Conv, Gemm and MatMul layers: int8, k-means sharing, 16-bit fixed.

Three modes (knob ``mode``), each reporting the error per layer as the weights' SQNR,
``10·log10(Σ w² / Σ (w − q)²)`` dB, in ``details["sqnr_db"]``:

* ``int8`` — static quantization, QDQ format (:mod:`hwcc.passes.lib.int8`):
  ``x̂ = (clip(round(x/s) + z, −128, 127) − z)·s``, weights per channel and symmetric,
  activations per tensor from calibration data. The result has QuantizeLinear /
  DequantizeLinear nodes and int8 initializers; ``details`` adds the SQNR of each
  layer's output and of the model's outputs on the calibration data.
* ``kmeans`` — trained quantization by weight sharing (Deep Compression;
  :mod:`hwcc.passes.lib.kmeans`): per layer, 1-D k-means from linearly spaced centroids
  minimising ``Σ_i Σ_{w ∈ c_i} (w − c_i)²`` over the non-zero weights, each weight
  replaced by its centroid, zeros kept; at most ``2**bits`` values per layer. A layer with
  zeros gets ``2**bits − 1`` centroids and codebook index 0 is the value 0; ``zero_slot``
  does the same for dense layers (EIE's codebook, Han et al., ISCA 2016: index 0 is zero).
  ``codebook_bits = B > 0`` then rounds the centroids to ``B``-bit signed fixed point
  with one power-of-two scale per layer, ``c_q = q·2^−f``, ``q ∈ [−2^(B−1), 2^(B−1) − 1]``
  an integer and ``f`` the most fraction bits with which the largest ``|c|`` fits
  (:mod:`hwcc.formats.fixed_point`), and gives each weight the nearest ``c_q``; the
  weights written are exactly those values (float32 holds ``q·2^−f`` exactly for
  ``B ≤ 24``), so ``w·2^f`` is an integer of ``B`` bits. A centroid within half a step of
  zero becomes 0 and its weights with it (the decoder's value for it); no other non-zero
  weight becomes zero. ``details`` adds the storage before (float32) and after
  (fixed-length and Huffman-coded indices, relative indices for sparse layers, pointers
  and codebook at 32 or ``B`` bits an entry).
* ``fixed16`` — 16-bit dynamic fixed point (Qiu et al., FPGA 2016;
  :mod:`hwcc.formats.fixed_point`): per layer the fraction length ``f`` that fits the
  largest weight, ``w_q = round(w·2^f)·2^−f``; activation formats from calibration data
  when there is some.

The ``kmeans`` and ``fixed16`` models stay float32 (their values are representable in
the narrower format), so the element types do not tell a cost model the width. Those
modes annotate each layer instead: ``node.meta["weight_bits"]`` (the stored bits per
weight: ``bits`` for kmeans, 16 for fixed16), ``node.meta["act_bits"] = 16`` for fixed16
with calibrated activations, and ``node.meta["weight_sharing"] = {"bits", "clusters"}``
(plus ``"zero_slot": True`` when asked, and ``"codebook_bits"`` and ``"codebook_frac_bits"``
(``f``) with fixed-point values) or ``node.meta["fixed_point"] = {"total_bits",
"weight_frac_bits", "act_frac_bits", "out_frac_bits"}``. An int8 model needs none: its
widths are in its types.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.formats import fixed_point as _fixed_point
from hwcc.passes.lib import int8 as _int8, kmeans as _kmeans
from hwcc.passes.lib.calibration import Calibration, Runner, calibration_feeds
from hwcc.passes.lib.weights import (WeightedLayer, check_layer_names, find_layers, matrix_view, parse_per_layer,
                                  replace_weights, sqnr_db)

Options = dict[str, Any]
_ONLY_FOR = {"bits": ("kmeans",), "layer_bits": ("kmeans",), "zero_slot": ("kmeans",),
             "codebook_bits": ("kmeans",), "calibration": ("int8",),
             "data": ("int8", "fixed16"), "random_calibration": ("int8", "fixed16"),
             "samples": ("int8", "fixed16")}


@register_pass
class Quantize(Pass):
    """Quantize Conv, Gemm and MatMul weights: int8 QDQ, k-means weight sharing, or 16-bit fixed point.

    Rewrite cases (the chosen layers: knob ``layers``, ``all`` or a comma-separated list of
    node names; or ``Quantize(layers=[...])``):

    1. ``mode=int8``: the model is quantized by onnxruntime's ``quantize_static`` (QDQ,
       per-channel symmetric int8 weights, int8 activations calibrated by ``calibration``
       on ``ctx.data``, ``hwcc apply --data`` or the ``data`` knob's ``.npz``) and loaded back;
       QuantizeLinear/DequantizeLinear pairs appear around the chosen layers only.
    2. ``mode=int8`` without data: an error saying how to give some, unless
       ``random_calibration=true``, which calibrates on random inputs with a warning.
    3. ``mode=kmeans``: each chosen layer's non-zero weights are replaced by the nearest
       of ``2**bits`` k-means centroids (``2**bits − 1`` and zero in a layer with zeros);
       ``layer_bits`` (``"fc1=5,conv1=8"`` or JSON; or ``Quantize(layer_bits={...})``)
       sets the bits of single layers (the knob's entries win over the constructor's; a
       ``layers`` knob that is set wins over ``Quantize(layers=...)``).
    4. ``mode=kmeans, zero_slot=true``: a dense layer too keeps codebook index 0 for zero,
       so it gets at most ``2**bits − 1`` shared non-zero values; only non-zero weights
       are clustered, zeros stay zero and no weight is moved to zero by k-means.
    5. ``mode=kmeans, codebook_bits=B``: each layer's shared values are rounded to ``B``-bit
       signed fixed point with a per-layer power-of-two scale (``q·2^−f``, the largest
       ``|centroid|`` in range) and the weights written equal them exactly; a centroid
       that rounds to zero turns its weights into zeros (codebook index 0).
    6. ``mode=fixed16``: each chosen layer's weights are rounded to 16-bit fixed point
       with the fraction length that fits the largest; with calibration data, the input
       and output activation formats are chosen too and recorded in ``node.meta``.
    7. A weight tensor read by several chosen layers given the same setting stays one
       shared tensor; otherwise each layer gets its own copy.

    Must not fire when:

    8. the graph has no Conv, Gemm or MatMul;
    9. the ``layers`` list is empty;
    10. no chosen layer has constant float weights (computed at run time, behind a
        DequantizeLinear, or overridable graph inputs);
    11. ``kmeans``/``fixed16`` would leave every weight and annotation as it already is
        (sharing twice with the same knobs, fixed-point codebook included).

    Errors (never ignored): a knob set for a mode it does not apply to (``bits`` with
    ``int8``, ``calibration`` with ``kmeans``, ``zero_slot`` with ``fixed16``, ...); a layer
    name that is not a Conv, Gemm or MatMul, or one whose weights are not constant; fixed-point
    shared values that the weights' dtype cannot hold exactly.
    """

    name = "quantize"
    exact = False
    knobs = (
        Knob("mode", str, "int8", "int8 (QDQ), kmeans (weight sharing) or fixed16 (16-bit fixed point)",
             choices=("int8", "kmeans", "fixed16")),
        Knob("bits", int, 4, "kmeans: index bits per weight (2**bits shared values per layer)", range=(1, 8)),
        Knob("layer_bits", str, "", "kmeans: per-layer bits overriding bits: LAYER=B,LAYER=B or JSON"),
        Knob("zero_slot", bool, False,
             "kmeans: codebook index 0 is zero in every layer, dense ones too (2**bits - 1 shared non-zero values)"),
        Knob("codebook_bits", int, 0,
             "kmeans: shared values in signed fixed point of this many bits, a power-of-two scale per layer "
             "(0: float32)", range=(0, 24)),
        Knob("layers", str, "all", "layers to quantize: all, or node names separated by commas"),
        Knob("calibration", str, "minmax", "int8: how activation ranges are chosen",
             choices=("minmax", "percentile", "entropy")),
        Knob("data", str, "", "int8/fixed16: calibration .npz, one array per model input"),
        Knob("random_calibration", bool, False, "int8/fixed16: calibrate on random inputs when no data is given"),
        Knob("samples", int, 256, "int8/fixed16: most calibration samples used", range=(1, 1_000_000)),
    )

    def __init__(self, layers: Sequence[str] | None = None, layer_bits: Mapping[str, int] | None = None):
        self.layers = None if layers is None else list(layers)
        self.layer_bits = dict(layer_bits or {})

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        given = ctx.knobs.get(self.name, {})
        for knob, modes in _ONLY_FOR.items():
            if knob in given and opts["mode"] not in modes:
                raise HwccError(f"quantize: knob {knob!r} does not apply to mode={opts['mode']}",
                                f"it is used by mode {' and '.join(modes)}")
        layers, skipped = find_layers(graph)
        if not layers and not skipped:
            return PassResult(graph, False, "the graph has no Conv, Gemm or MatMul")
        wanted = self._wanted(opts, given)
        if wanted is not None and not wanted:
            return PassResult(graph, False, "the layers list is empty", {"skipped": skipped})
        check_layer_names(wanted or [], layers, skipped, "layers")
        chosen = [lay for lay in layers if wanted is None or lay.name in wanted]
        if not chosen:
            why = "; ".join(f"{n}: {r}" for n, r in skipped.items())
            return PassResult(graph, False, f"no Conv, Gemm or MatMul has constant float weights ({why})",
                              {"skipped": skipped})
        picked = {lay.name for lay in chosen}
        reasons = {**skipped, **{lay.name: "it is not among the layers the layers knob chose"
                                 for lay in layers if lay.name not in picked}}
        result = _MODES[opts["mode"]](self, graph, chosen, opts, ctx, reasons)
        result.details.update(mode=opts["mode"], skipped=skipped)
        return result

    def _wanted(self, opts: dict[str, Any], given: Mapping[str, Any]) -> list[str] | None:
        """The layer names asked for; ``None`` for all of them."""
        if self.layers is not None and "layers" not in given:
            return list(self.layers)
        text = opts["layers"].strip()
        if text == "all":
            return None
        return [s.strip() for s in text.split(",") if s.strip()]

    # ------------------------------------------------------------------ modes
    def _int8(self, graph: Graph, chosen: list[WeightedLayer], opts: Options, ctx: PassContext,
              reasons: dict[str, str]) -> PassResult:
        cal = _feeds(graph, opts, ctx, required=True, purpose="mode=int8")
        quantized = _int8.quantize_int8(graph, chosen, cal.feeds, opts["calibration"])
        sqnr = _int8.int8_sqnr(graph, quantized, chosen, cal.feeds)
        report = {lay.name: {"sqnr_db": sqnr["sqnr_db"][lay.name],
                             "output_sqnr_db": sqnr["output_sqnr_db"].get(lay.name)} for lay in chosen}
        details = {"layers": report, "calibration": opts["calibration"], "calibration_data": cal.source, **sqnr}
        if cal.random:
            details["warning"] = "calibrated on random inputs: activation ranges may not match real data"
        return PassResult(quantized, True, None, details)

    def _kmeans(self, graph: Graph, chosen: list[WeightedLayer], opts: Options, ctx: PassContext,
                reasons: dict[str, str]) -> PassResult:
        per_layer = {**self.layer_bits, **parse_per_layer(opts["layer_bits"], int, "layer_bits")}
        check_layer_names(per_layer, chosen, reasons, "layer_bits")
        for name, b in per_layer.items():
            if not 1 <= b <= 8:
                raise HwccError(f"quantize: layer_bits gives {name!r} {b} bits", "kmeans takes 1 to 8 bits")
        zero_slot, book_bits = opts["zero_slot"], opts["codebook_bits"]
        cache: dict[tuple[str, int], tuple[_kmeans.SharedWeights, dict[str, Any]]] = {}
        new, report, meta = {}, {}, {}
        for lay in chosen:
            b = per_layer.get(lay.name, opts["bits"])
            if (lay.weight, b) not in cache:  # layers sharing a tensor and the bits share the result
                try:
                    shared = _kmeans.share_weights(lay.array, b, zero_slot=zero_slot, codebook_bits=book_bits)
                except HwccError as e:
                    raise HwccError(f"quantize: layer {lay.name}: {e.message}", e.hint) from None
                view = matrix_view(replace(lay, array=shared.values))
                cache[lay.weight, b] = shared, _kmeans.storage(shared, view, b, book_bits)
            shared, store = cache[lay.weight, b]
            if not np.array_equal(shared.values, lay.array):
                new[lay.name] = (lay, shared.values)
            clusters = len(shared.codebook) - (1 if shared.zero_slot else 0)
            sharing: dict[str, Any] = {"bits": b, "clusters": clusters}
            if zero_slot:
                sharing["zero_slot"] = True
            if book_bits:
                sharing.update(codebook_bits=book_bits, codebook_frac_bits=shared.frac_bits)
            meta[lay.name] = {"weight_bits": b, "weight_sharing": sharing}
            error = np.abs(shared.values.astype(np.float64) - lay.array)
            report[lay.name] = {"bits": b, "clusters": clusters, "sparse": shared.sparse, "steps": shared.steps,
                                "zero_slot": shared.zero_slot, "codebook_bits": book_bits or None,
                                "codebook_frac_bits": shared.frac_bits,
                                "rounded_to_zero": int(np.count_nonzero((shared.values == 0) & (lay.array != 0))),
                                "distinct_values": int(np.unique(shared.values).size),
                                "max_abs_error": float(error.max()) if error.size else 0.0,
                                "sqnr_db": sqnr_db(lay.array, shared.values),
                                "bits_before": lay.array.size * lay.array.dtype.itemsize * 8, **store}
        details = {"layers": report, "sqnr_db": _sqnr(report), "total": _kmeans_total(report)}
        return _annotated(graph, new, meta, details)

    def _fixed16(self, graph: Graph, chosen: list[WeightedLayer], opts: Options, ctx: PassContext,
                 reasons: dict[str, str]) -> PassResult:
        cal = _feeds(graph, opts, ctx, required=False, purpose="mode=fixed16 activations")
        acts = {lay.name: (_activation_of(lay), lay.node.outputs[0]) for lay in chosen}
        ranges = _ranges(graph, [t for pair in acts.values() for t in pair], cal.feeds) if cal.feeds else {}
        total = _fixed_point.TOTAL_BITS
        cache: dict[str, tuple[int, np.ndarray]] = {}
        new, report, meta = {}, {}, {}
        for lay in chosen:
            w = lay.array
            if lay.weight not in cache:
                f = _fixed_point.frac_bits(w.min(), w.max(), total)
                cache[lay.weight] = f, _fixed_point.to_fixed(w, f, total)
            f, q = cache[lay.weight]
            if not np.array_equal(q, w):
                new[lay.name] = (lay, q)
            fa, fo = (_fixed_point.frac_bits(*ranges[t], total) if t in ranges else None for t in acts[lay.name])
            fixed = {"total_bits": total, "weight_frac_bits": f, "act_frac_bits": fa, "out_frac_bits": fo}
            meta[lay.name] = {"weight_bits": total, "fixed_point": fixed}
            if fa is not None:
                meta[lay.name]["act_bits"] = total
            report[lay.name] = {"weight_frac_bits": f, "format": f"Q{total - 1 - f}.{f}", "act_frac_bits": fa,
                                "out_frac_bits": fo, "max_abs": float(np.abs(w).max()), "sqnr_db": sqnr_db(w, q)}
        details = {"layers": report, "sqnr_db": _sqnr(report), "calibration_data": cal.source}
        if cal.random:
            details["warning"] = "activation formats chosen on random inputs: they may not fit real data"
        return _annotated(graph, new, meta, details)


_MODES = {"int8": Quantize._int8, "kmeans": Quantize._kmeans, "fixed16": Quantize._fixed16}


def _feeds(graph: Graph, opts: Options, ctx: PassContext, *, required: bool, purpose: str) -> Calibration:
    return calibration_feeds(graph, ctx.data, opts["data"], random_ok=opts["random_calibration"],
                             samples=opts["samples"], seed=ctx.seed, required=required, purpose=purpose)


def _annotated(graph: Graph, new: dict[str, tuple[WeightedLayer, np.ndarray]], meta: dict[str, dict[str, Any]],
               details: dict[str, Any]) -> PassResult:
    """A copy of ``graph`` with the new weights and node annotations, or why nothing changed."""
    if not new and all(graph.node(n).meta.get(k) == v for n, m in meta.items() for k, v in m.items()):
        return PassResult(graph, False, "every chosen layer already holds these values and annotations", details)
    g = graph.copy()
    replace_weights(g, new)
    for name, m in meta.items():
        g.node(name).meta.update(m)
    return PassResult(g, True, None, details)


def _activation_of(layer: WeightedLayer) -> str:
    """The run-time operand of a weighted layer (its input activations)."""
    return layer.node.inputs[0] if layer.node.op_type == "Conv" else layer.node.inputs[1 - layer.index]


def _ranges(graph: Graph, tensors: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """``(min, max)`` of each tensor over the calibration samples."""
    lo = dict.fromkeys(tensors, math.inf)
    hi = dict.fromkeys(tensors, -math.inf)
    computed = [t for t in tensors if t not in graph.inputs]
    for feed, values in zip(feeds, Runner(graph, computed).run_all(feeds)):
        values = {**values, **feed}
        for t in lo:
            lo[t], hi[t] = min(lo[t], float(values[t].min())), max(hi[t], float(values[t].max()))
    return {t: (lo[t], hi[t]) for t in tensors}


def _sqnr(report: dict[str, dict[str, Any]]) -> dict[str, float]:
    return {name: r["sqnr_db"] for name, r in report.items()}


def _kmeans_total(report: dict[str, dict[str, Any]]) -> dict[str, Any]:
    before = sum(r["bits_before"] for r in report.values())
    fixed = sum(r["fixed_bits"] for r in report.values())
    huff = sum(r["huffman_bits"] for r in report.values())
    return {"bits_before": before, "fixed_bits": fixed, "huffman_bits": huff,
            "compression": before / huff if huff else None,
            "huffman_saving": 1.0 - huff / fixed if fixed else 0.0}
