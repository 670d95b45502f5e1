"""Shared pieces of the dequantize pass: refusals, constants seen through reshapes, and
weights dequantized exactly as onnxruntime computes them, ``(q − zero_point)·scale``.
"""

from __future__ import annotations

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node
from hwcc.passes.lib.edits import add_constant, constant_value

__all__ = [
    "FLOAT_HINT",
    "channel_vector",
    "dequantize_array",
    "float_constant",
    "qrange",
    "refuse",
    "sole_user",
    "traced_constant",
]

FLOAT_HINT = (
    "give hwcc the float model this one was quantized from (the ONNX export before "
    "quantization), and quantize the result again where the target does not"
)
_QRANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}
_QRANGE |= {np.dtype(np.int16): (-32768, 32767), np.dtype(np.uint16): (0, 65535)}


def refuse(node: Node, why: str) -> HwccError:
    """The error for a quantized node the pass cannot turn into float ops."""
    where = f"{node.op_type} node {node.name!r}" + (
        f" (domain {node.domain})" if node.domain else ""
    )
    return HwccError(f"cannot dequantize the {where}: {why}", FLOAT_HINT)


def qrange(dtype: np.dtype) -> tuple[int, int] | None:
    """The integers a quantized type holds, or None for a type that is not one."""
    return _QRANGE.get(np.dtype(dtype))


def traced_constant(g: Graph, tensor: str) -> np.ndarray | None:
    """The value of ``tensor`` if it is a constant, or a ``Reshape``/``Unsqueeze``/
    ``Squeeze``/``Flatten`` of one by constant shapes; else None."""
    value = constant_value(g, tensor)
    if value is not None or not tensor:
        return value
    p = g.producer(tensor)
    if p is None or p.domain not in ("", "ai.onnx") or len(p.outputs) != 1:
        return None
    src = traced_constant(g, p.inputs[0]) if p.inputs else None
    if src is None:
        return None
    if p.op_type == "Reshape":
        shape = traced_constant(g, p.inputs[1])
        if shape is None or p.attr("allowzero", 0):
            return None
        shape = [src.shape[i] if d == 0 else int(d) for i, d in enumerate(shape.tolist())]
        return src.reshape(shape)
    if p.op_type in ("Unsqueeze", "Squeeze"):
        axes = p.attr("axes") if len(p.inputs) < 2 else traced_constant(g, p.inputs[1])
        if axes is None:
            return np.squeeze(src) if p.op_type == "Squeeze" else None
        axes = [int(a) for a in np.asarray(axes).ravel()]
        if p.op_type == "Squeeze":
            return np.squeeze(src, axis=tuple(axes))
        return np.expand_dims(src, [a % (src.ndim + len(axes)) for a in axes])
    return None


def channel_vector(value: np.ndarray, rank: int, axis: int, n: int) -> np.ndarray | None:
    """``value`` as ``n`` per-channel numbers when, broadcast against a tensor of rank
    ``rank``, it varies along ``axis`` only (or not at all); else None."""
    if value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    axis %= rank
    if any(s != 1 for i, s in enumerate(shape) if i != axis) or shape[axis] not in (1, n):
        return None
    return np.broadcast_to(value.reshape(-1), (n,))


def dequantize_array(
    q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int | None
) -> np.ndarray:
    """``(q − zero_point)·scale`` in the scale's float type, as onnxruntime's
    DequantizeLinear computes it; ``axis`` is where per-channel scales run (None: a
    scalar or a broadcastable scale)."""
    zp = np.zeros((), np.int64) if zero_point is None else zero_point.astype(np.int64)
    scale = np.asarray(scale)
    if axis is not None and scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale = scale.reshape(shape)
        zp = zp.reshape(shape) if zp.size > 1 else zp.reshape(())
    diff = (q.astype(np.int64) - zp).astype(np.float32)
    return (diff * scale.astype(np.float32)).astype(scale.dtype)


def float_constant(g: Graph, base: str, array: np.ndarray) -> str:
    """Add ``array`` as a new constant named after ``base`` (a ``_quantized`` suffix
    dropped); returns its name."""
    stem = base.removesuffix("_quantized") or "dequantized"
    name = g.unique_name(stem)
    add_constant(g, name, np.ascontiguousarray(array))
    return name


def sole_user(g: Graph, tensor: str) -> Node | None:
    """The one node reading ``tensor``, when it has one reader and is no graph output."""
    users = g.users(tensor)
    if len(users) != 1 or g.is_graph_output(tensor):
        return None
    return users[0]
