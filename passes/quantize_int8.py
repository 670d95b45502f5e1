"""Static int8 quantization of Conv, Gemm and MatMul layers, in QDQ form, calibrated on data.

For a real value ``x``, int8 quantization with scale ``s`` and zero point ``z`` is

    q = clip(round(x / s) + z, −128, 127),        x̂ = (q − z)·s.

Weights are quantized per output channel and symmetrically (``z = 0``,
``s_c = max|W_c| / 127``); activations per tensor and asymmetrically, with their ranges
measured on calibration data (``minmax``, ``percentile`` or ``entropy``); biases become
int32 with ``s_b = s_x·s_w``. The work is done by onnxruntime's ``quantize_static``
(:mod:`hwcc.passes.lib.int8`): the result has QuantizeLinear/DequantizeLinear nodes and
int8 initializers, so its widths are in its types and it needs no annotation.

``details`` reports, per layer, the weights' SQNR ``10·log10(Σ w² / Σ (w − q)²)`` dB and
the SQNR of the layer's output, and the SQNR of each model output, all on the calibration
data.
"""

from __future__ import annotations

from collections.abc import Sequence

from hwcc.ir import Graph
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib import calibration, int8
from hwcc.passes.lib.quantization import LAYERS, choose_layers


@register_pass
class QuantizeInt8(Pass):
    """Quantize Conv, Gemm and MatMul layers to int8 in QDQ form, calibrated on data.

    Rewrite cases (the chosen layers: knob ``layers``, ``all`` or a comma-separated list of
    node names; or ``QuantizeInt8(layers=[...])``, which a set ``layers`` knob overrides):

    1. The model is quantized by onnxruntime's ``quantize_static`` (QDQ, per-channel
       symmetric int8 weights, int8 activations calibrated by ``calibration`` on
       ``ctx.data``, ``hwcc apply --data`` or the ``data`` knob's ``.npz``) and loaded back;
       QuantizeLinear/DequantizeLinear pairs appear around the chosen layers only, and
       every node keeps the ``meta`` earlier passes gave it.
    2. Without data: an error saying how to give some, unless ``random_calibration=true``,
       which calibrates on random inputs with a warning.

    Must not fire when:

    3. the graph has no Conv, Gemm or MatMul;
    4. the ``layers`` list is empty;
    5. no chosen layer has constant float weights (computed at run time, behind a
       DequantizeLinear, or overridable graph inputs).

    Errors (never ignored): a layer name that is not a Conv, Gemm or MatMul, or one whose
    weights are not constant; calibration data that does not fit the model's inputs.
    """

    name = "quantize_int8"
    exact = False
    knobs = (
        LAYERS,
        Knob(
            "calibration",
            str,
            "minmax",
            "how activation ranges are chosen",
            choices=("minmax", "percentile", "entropy"),
        ),
        Knob(
            "reduce_range",
            bool,
            False,
            "7-bit weights, for x86 CPUs without VNNI, where onnxruntime's int8 kernels "
            "saturate 8-bit ones",
        ),
        *calibration.KNOBS,
    )

    def __init__(self, layers: Sequence[str] | None = None):
        self.layers = None if layers is None else list(layers)

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        knob_set = "layers" in ctx.knobs.get(self.name, {})
        choice = choose_layers(graph, opts["layers"], self.layers, knob_set)
        if choice.why_not:
            return choice.refusal(graph)
        cal = calibration.from_options(
            graph, opts, ctx, who=self.name, required=True, purpose="activation ranges"
        )
        quantized = int8.quantize_int8(
            graph, choice.chosen, cal.feeds, opts["calibration"], opts["reduce_range"]
        )
        sqnr = int8.int8_sqnr(graph, quantized, choice.chosen, cal.feeds)
        report = {
            lay.name: {
                "sqnr_db": sqnr["sqnr_db"][lay.name],
                "output_sqnr_db": sqnr["output_sqnr_db"].get(lay.name),
            }
            for lay in choice.chosen
        }
        details = {
            "layers": report,
            "calibration": opts["calibration"],
            "calibration_data": cal.source,
            **sqnr,
        }
        if cal.random:
            details["warning"] = (
                "calibrated on random inputs: activation ranges may not match real data"
            )
        if not opts["reduce_range"] and int8.saturating_cpu():
            details["note"] = (
                "this CPU has no VNNI: onnxruntime's int8 kernels saturate here, and the "
                "model may run less accurately than its math; reduce_range=true avoids it"
            )
        details["skipped"] = choice.skipped
        return PassResult(quantized, True, None, details)
