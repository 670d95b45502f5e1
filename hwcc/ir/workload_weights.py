"""The workload view's weight reading: which tensors are constants, what they hold, how dense.

:func:`constant_tensors` finds the tensors known before run time; :func:`weight_source`
follows a weight back through pass-through ops and a DequantizeLinear to its stored values;
:func:`nonzero_fraction` counts its density (against the zero point when quantized), and a
:class:`DensityMemo` keeps those counts for a caller that prices many graphs sharing their
weights. :func:`hwcc.ir.workload.analyze` reads every layer's weights through them.
"""

from __future__ import annotations

import weakref

import numpy as np

from hwcc.ir import Graph, Node
from hwcc.ir.workload_ops import STANDARD_DOMAINS

__all__ = ["DensityMemo", "constant_tensors", "nonzero_fraction", "weight_source"]

_PASS_THROUGH = ("Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten")
_NOT_FOLDABLE = (
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "If",
    "Loop",
    "Scan",
)


def constant_tensors(g: Graph) -> set[str]:
    """Tensors whose values are known before run time (computed by foldable nodes)."""
    const = {n for n, t in g.tensors.items() if t.data is not None}
    for node in g.nodes:
        ins = [t for t in node.inputs if t]
        foldable = node.domain in STANDARD_DOMAINS and node.op_type not in _NOT_FOLDABLE
        if not foldable or node.implicit_inputs:
            continue
        static_shape = node.op_type in ("Shape", "Size") and ins and g.tensors[ins[0]].is_static
        if static_shape or all(t in const for t in ins):
            const.update(t for t in node.outputs if t)
    return const


def weight_source(g: Graph, name: str) -> tuple[np.ndarray | None, int, Node | None]:
    """A constant's stored values, their element type, and the DequantizeLinear on the way."""
    dq = None
    on_the_way = _PASS_THROUGH + ("DequantizeLinear",)
    while (p := g.producer(name)) is not None and p.op_type in on_the_way:
        dq = p if p.op_type == "DequantizeLinear" else dq
        name = p.inputs[0]
    t = g.tensors[name]
    if p is not None and p.op_type == "ConstantOfShape":
        v = p.attr("value")
        filled = v is not None and np.any(v)  # the default value is 0
        return (np.ones(1) if filled else np.zeros(1)), t.elem_type, dq
    if p is not None and p.op_type == "Constant" and isinstance(p.attr("value"), np.ndarray):
        return p.attr("value"), t.elem_type, dq
    return t.data, t.elem_type, dq


def nonzero_fraction(data: np.ndarray | None, zp: np.ndarray | None, axis: int) -> float | None:
    """Fraction of stored values that are not zero (not the zero point, if quantized)."""
    if data is None or data.size == 0 or data.dtype.kind not in "biufc":
        return None
    if zp is not None and zp.size > 1 and data.ndim:  # per channel, along ``axis``
        shape = [1] * data.ndim
        shape[axis % data.ndim] = -1
        zp = zp.reshape(shape) if zp.size == data.shape[axis % data.ndim] else None
    return float(np.count_nonzero(data != (0 if zp is None else zp))) / data.size


class DensityMemo:
    """Weight densities already counted, for a caller that analyses many graphs sharing
    their weights (a search pricing its proposals).

    Counting the zeros of a large weight is the costliest step of
    :func:`~hwcc.ir.workload.analyze`; initializer arrays are immutable by the IR's
    contract, so a count holds for as long as its array lives, and an entry leaves with its
    array. The caller owns the memo (one per compile, say) and passes it to
    :func:`~hwcc.ir.workload.analyze`; nothing is kept between calls without one.
    """

    def __init__(self) -> None:
        self._counts: dict[int, tuple[weakref.ref, float | None]] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def nonzero(self, data: np.ndarray | None, zp: np.ndarray | None, axis: int) -> float | None:
        """:func:`nonzero_fraction` of ``data``, counted once per array (quantized ones each
        time)."""
        if data is None or zp is not None:
            return nonzero_fraction(data, zp, axis)
        key = id(data)
        hit = self._counts.get(key)
        if hit is not None and hit[0]() is data:
            return hit[1]
        value = nonzero_fraction(data, None, axis)
        try:
            ref = weakref.ref(data, lambda _r, k=key, counts=self._counts: counts.pop(k, None))
        except TypeError:  # an object without weak references: not memoised
            return value
        self._counts[key] = (ref, value)
        return value
