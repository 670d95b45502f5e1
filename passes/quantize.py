"""``quantize``: the three weight quantization passes under one name, chosen by ``mode``.

``mode=M`` runs the pass ``quantize_M``: ``int8`` (:mod:`hwcc.passes.quantize_int8`, QDQ
through onnxruntime), ``kmeans`` (:mod:`hwcc.passes.quantize_kmeans`, weight sharing) or
``fixed16`` (:mod:`hwcc.passes.quantize_fixed16`, 16-bit fixed point). Every knob of the
three is a knob here, with the same type, range and default; the knobs set are handed to
the chosen pass, and one that its pass does not declare is an error, never ignored. The
result is the chosen pass's, with ``details["mode"]`` added.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.passes.quantize_fixed16 import QuantizeFixed16
from hwcc.passes.quantize_int8 import QuantizeInt8
from hwcc.passes.quantize_kmeans import QuantizeKmeans

_BY_MODE: dict[str, type[Pass]] = {
    cls.name.removeprefix("quantize_"): cls
    for cls in (QuantizeInt8, QuantizeKmeans, QuantizeFixed16)
}


def _modes_of_knobs() -> dict[str, tuple[Knob, list[str]]]:
    """Knob name -> (the knob, the modes whose pass declares it), knobs in declaration order
    (k-means first, as the knobs were listed when this was one pass)."""
    out: dict[str, tuple[Knob, list[str]]] = {}
    for mode in ("kmeans", "int8", "fixed16"):
        for k in _BY_MODE[mode].knobs:
            out.setdefault(k.name, (k, []))[1].append(mode)
    return out


_USES = _modes_of_knobs()
_ONLY_FOR = {
    name: sorted(modes, key=list(_BY_MODE).index)
    for name, (_, modes) in _USES.items()
    if len(modes) < len(_BY_MODE)
}
# A knob that not every mode reads says which do: "kmeans: index bits per weight ...".
_KNOBS = tuple(
    k
    if name not in _ONLY_FOR
    else dataclasses.replace(k, help=f"{'/'.join(_ONLY_FOR[name])}: {k.help}")
    for name, (k, _) in _USES.items()
)


@register_pass
class Quantize(Pass):
    """Quantize Conv, Gemm and MatMul weights: int8 QDQ, k-means sharing or 16-bit fixed point.

    Rewrite cases (each is the named pass's, with the knobs set here; ``Quantize(layers=...,
    layer_bits=...)`` hands its arguments to that pass's constructor):

    1. ``mode=int8``: ``quantize_int8`` (static int8 in QDQ form, calibrated on data).
    2. ``mode=kmeans``: ``quantize_kmeans`` (weight sharing by k-means, EIE's codebook).
    3. ``mode=fixed16``: ``quantize_fixed16`` (16-bit dynamic fixed point per layer).

    Must not fire when:

    4. the chosen pass does not (no weighted layer, an empty ``layers`` list, no constant
       float weights, nothing that would change): its reason is returned.

    Errors (never ignored): a knob set for a mode whose pass does not declare it (``bits``
    with ``int8``, ``calibration`` with ``kmeans``, ``zero_slot`` with ``fixed16``, ...);
    ``layer_bits`` given to the constructor for a mode other than ``kmeans``.
    """

    name = "quantize"
    exact = False
    knobs = (
        Knob(
            "mode",
            str,
            "int8",
            "int8 (QDQ), kmeans (weight sharing) or fixed16 (16-bit fixed point)",
            choices=tuple(_BY_MODE),
        ),
        *_KNOBS,
    )

    def __init__(
        self, layers: Sequence[str] | None = None, layer_bits: Mapping[str, int] | None = None
    ):
        self.layers = None if layers is None else list(layers)
        self.layer_bits = dict(layer_bits or {})

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        mode = self.options(ctx)["mode"]
        given = {k: v for k, v in ctx.knobs.get(self.name, {}).items() if k != "mode"}
        for knob in [*given, *(["layer_bits"] if self.layer_bits else [])]:
            modes = _ONLY_FOR.get(knob)
            if modes is not None and mode not in modes:
                raise HwccError(
                    f"quantize: knob {knob!r} does not apply to mode={mode}",
                    f"it is used by mode {' and '.join(modes)}",
                )
        extra = {"layer_bits": self.layer_bits} if self.layer_bits else {}
        chosen = _BY_MODE[mode](layers=self.layers, **extra)
        result = chosen.call(graph, dataclasses.replace(ctx, knobs={chosen.name: given}))
        result.details["mode"] = mode
        return result
