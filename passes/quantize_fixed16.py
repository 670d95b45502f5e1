"""16-bit dynamic fixed point for Conv, Gemm and MatMul weights, one format per layer.

Dynamic fixed point (Qiu et al., FPGA 2016; :mod:`hwcc.formats.fixed_point`): per layer
the fraction length ``f`` with which the largest weight fits 16 signed bits, and
``w_q = round(w·2^f)·2^−f``. With calibration data, the formats of each layer's input
and output activations are chosen the same way from their ranges on that data.

The model stays float32 (its values are exact in float32), so each layer is annotated
with what it stores: ``node.meta["weight_bits"] = 16``, ``node.meta["act_bits"] = 16``
when activations were calibrated, and ``node.meta["fixed_point"] = {"total_bits",
"weight_frac_bits", "act_frac_bits", "out_frac_bits"}``. ``details`` reports each layer's
format and SQNR, ``10·log10(Σ w² / Σ (w − q)²)`` dB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwcc.formats import fixed_point
from hwcc.ir import Graph
from hwcc.ir.transform import Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib import calibration
from hwcc.passes.lib.quantization import LAYERS, annotated, choose_layers, sqnr_by_layer
from hwcc.passes.lib.weights import WeightedLayer, sqnr_db


@register_pass
class QuantizeFixed16(Pass):
    """Round Conv, Gemm and MatMul weights to 16-bit fixed point, a fraction length per layer.

    Rewrite cases (the chosen layers: knob ``layers``, ``all`` or a comma-separated list of
    node names; or ``QuantizeFixed16(layers=[...])``, which a set ``layers`` knob overrides):

    1. Each chosen layer's weights are rounded to 16-bit fixed point with the fraction
       length that fits the largest, and the layer is annotated with its format.
    2. With calibration data (``ctx.data``, ``hwcc apply --data`` or the ``data`` knob; or
       random inputs with ``random_calibration=true``, with a warning), the input and
       output activation formats are chosen too and recorded in ``node.meta``; without,
       they are left unset.
    3. A weight tensor read by several chosen layers stays one shared tensor.

    Must not fire when:

    4. the graph has no Conv, Gemm or MatMul;
    5. the ``layers`` list is empty;
    6. no chosen layer has constant float weights (computed at run time, behind a
       DequantizeLinear, or overridable graph inputs);
    7. every weight and annotation would stay as it is (already 16-bit fixed point).

    Errors (never ignored): a layer name that is not a Conv, Gemm or MatMul, or one whose
    weights are not constant; calibration data that does not fit the model's inputs.
    """

    name = "quantize_fixed16"
    exact = False
    knobs = (LAYERS, *calibration.KNOBS)

    def __init__(self, layers: Sequence[str] | None = None):
        self.layers = None if layers is None else list(layers)

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        knob_set = "layers" in ctx.knobs.get(self.name, {})
        choice = choose_layers(graph, opts["layers"], self.layers, knob_set)
        if choice.why_not:
            return choice.refusal(graph)
        cal = calibration.from_options(
            graph, opts, ctx, who=self.name, required=False, purpose="activation formats"
        )
        acts = {lay.name: (_activation_of(lay), lay.node.outputs[0]) for lay in choice.chosen}
        tensors = [t for pair in acts.values() for t in pair]
        ranges = calibration.tensor_ranges(graph, tensors, cal.feeds) if cal.feeds else {}
        total = fixed_point.TOTAL_BITS
        cache: dict[str, tuple[int, np.ndarray]] = {}
        new, report, meta = {}, {}, {}
        for lay in choice.chosen:
            w = lay.array
            if lay.weight not in cache:
                f = fixed_point.frac_bits(w.min(), w.max(), total)
                cache[lay.weight] = f, fixed_point.to_fixed(w, f, total)
            f, q = cache[lay.weight]
            if not np.array_equal(q, w):
                new[lay.name] = (lay, q)
            fa, fo = (
                fixed_point.frac_bits(*ranges[t], total) if t in ranges else None
                for t in acts[lay.name]
            )
            fixed = {
                "total_bits": total,
                "weight_frac_bits": f,
                "act_frac_bits": fa,
                "out_frac_bits": fo,
            }
            meta[lay.name] = {"weight_bits": total, "fixed_point": fixed}
            if fa is not None:
                meta[lay.name]["act_bits"] = total
            report[lay.name] = {
                "weight_frac_bits": f,
                "format": f"Q{total - 1 - f}.{f}",
                "act_frac_bits": fa,
                "out_frac_bits": fo,
                "max_abs": float(np.abs(w).max()),
                "sqnr_db": sqnr_db(w, q),
            }
        details = {
            "layers": report,
            "sqnr_db": sqnr_by_layer(report),
            "calibration_data": cal.source,
        }
        if cal.random:
            details["warning"] = (
                "activation formats chosen on random inputs: they may not fit real data"
            )
        details["skipped"] = choice.skipped
        return annotated(graph, new, meta, details)


def _activation_of(layer: WeightedLayer) -> str:
    """The run-time operand of a weighted layer (its input activations)."""
    if layer.node.op_type == "Conv":
        return layer.node.inputs[0]
    return layer.node.inputs[1 - layer.index]
