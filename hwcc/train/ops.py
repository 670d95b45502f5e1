"""The torch implementation of each ONNX operator that :mod:`hwcc.train.finetune` can run.

One builder per op type, registered with :func:`register`. A builder runs once, when a
graph is turned into a module: it reads the node's attributes (and any input that is a
constant), rejects what it cannot run with an :class:`~hwcc.errors.HwccError`, and
returns a plain function from the node's input tensors (``None`` for omitted optional
inputs) to its output tensor, or to a tuple for several outputs. Everything a builder
rejects is therefore rejected before any training starts.

``register(..., weights=(i, ...))`` declares which inputs hold trainable weights when
they are float initializers (Conv's ``W`` and ``B``, BatchNormalization's scale and
bias, ...): the declaration is the data :func:`hwcc.train.finetune.to_torch` reads to decide
what becomes an ``nn.Parameter``.

Batch: graphs of the zoo are exported with a fixed batch of 1 and trained on batches of
32 or more. A Reshape whose target's first entry is that fixed batch, applied to a
tensor whose first dimension is the batch, keeps the batch of the tensor it is given.

Quantization: QuantizeLinear yields float tensors holding the integer values (rounded
half to even and saturated, as ONNX does); the rounding passes gradients straight
through (Bengio et al. 2013) and saturation stops them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node

__all__ = ["OPS", "BuildContext", "OpSpec", "register", "reject"]

OpFn = Callable[..., Any]


@dataclass(frozen=True)
class OpSpec:
    """One registered operator.

    Attributes:
        build: ``build(node, ctx) -> fn``; ``fn(*inputs)`` computes the outputs.
        weights: input positions that are trainable when they are float initializers.
        outputs: how many of the node's outputs ``fn`` computes (-1: all of them).
        folds: ``fn()`` takes no input and returns a constant (Constant); the module
            stores the value instead of calling ``fn`` on every run.
    """

    build: Callable[[Node, BuildContext], OpFn]
    weights: tuple[int, ...] = ()
    outputs: int = 1
    folds: bool = False


OPS: dict[str, OpSpec] = {}


def register(*op_types: str, weights: tuple[int, ...] = (), outputs: int = 1, folds: bool = False):
    """Decorator adding a builder to :data:`OPS` under each of ``op_types``."""

    def wrap(build: Callable[[Node, BuildContext], OpFn]):
        for op in op_types:
            OPS[op] = OpSpec(build, weights, outputs, folds)
        return build

    return wrap


class BuildContext:
    """What a builder may know about the graph around its node.

    Args:
        graph: the graph being converted.
        constants: tensor name -> value known before running (initializers, Constants).
        batch: the graph's fixed batch size, or None when its inputs do not share one.
    """

    def __init__(self, graph: Graph, constants: dict[str, np.ndarray], batch: int | None):
        self.graph, self.constants, self.batch = graph, constants, batch
        self.opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 17))

    def const(self, node: Node, index: int) -> np.ndarray | None:
        """The value of input ``index`` of ``node`` if it is a constant, else None."""
        name = node.inputs[index] if index < len(node.inputs) else ""
        return self.constants.get(name) if name else None

    def shape(self, node: Node, index: int) -> tuple | None:
        """The static shape of input ``index`` of ``node``, None if unknown."""
        t = self.graph.tensors.get(node.inputs[index]) if index < len(node.inputs) else None
        return None if t is None else t.shape


def reject(node: Node, what: str, hint: str) -> HwccError:
    """The error for a node the torch executor cannot run."""
    return HwccError(f"cannot run node {node.name!r} ({node.op_type}) in torch: {what}", hint)


def _ints(v: Any) -> list[int]:
    return [int(a) for a in np.asarray(v).reshape(-1)]


def _input_or_attr(node: Node, ctx: BuildContext, index: int, attr: str) -> list[int] | None:
    if index < len(node.inputs) and node.inputs[index]:
        value = ctx.const(node, index)
        if value is None:
            raise reject(node, f"its input {node.inputs[index]!r} is computed at run time",
                         "make it a constant (e.g. with the fold_constants pass)")
        return _ints(value)
    return None if node.attr(attr) is None else _ints(node.attr(attr))


# ---------------------------------------------------------------------- padding
def _torch_pads(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX [b1.., e1..] over the last len(begins) dims -> F.pad's last-dim-first list."""
    out: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        out += [b, e]
    return out


def _window(node: Node, kernel: Sequence[int], fill: float) -> tuple[Callable[[torch.Tensor], tuple], bool]:
    """Padding of Conv and pooling.

    Returns:
        ``(fn, explicit)``: ``fn(x) -> (x_padded, pads)``, where ``pads`` are the
        symmetric pads left for the torch op; ``explicit`` is True when ``fn`` pads
        ``x`` itself (asymmetric or SAME pads) and the op's own padding is zero.
    """
    n = len(kernel)
    strides = _ints(node.attr("strides", [1] * n))
    dil = _ints(node.attr("dilations", [1] * n))
    mode = node.attr("auto_pad", "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        def same(x: torch.Tensor) -> tuple:
            size = x.shape[2:]
            tot = [max((math.ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)
                   for i, s, k, d in zip(size, strides, kernel, dil)]
            low = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in tot]
            return F.pad(x, _torch_pads(low, [t - lo for t, lo in zip(tot, low)]), value=fill), [0] * n
        return same, True
    if mode not in ("NOTSET", "VALID"):
        raise reject(node, f"auto_pad={mode!r} is not an ONNX value", "use NOTSET, VALID or SAME_*")
    pads = [0] * 2 * n if mode == "VALID" else _ints(node.attr("pads", [0] * 2 * n))
    begins, ends = pads[:n], pads[n:]
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    if begins == ends and all(2 * p <= k for p, k in zip(begins, eff)):
        return (lambda x: (x, begins)), False
    explicit = _torch_pads(begins, ends)
    return (lambda x: (F.pad(x, explicit, value=fill), [0] * n)), True


# ---------------------------------------------------------------------- compute ops
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _kernel(node: Node, ctx: BuildContext) -> list[int]:
    shape = ctx.shape(node, 1)
    kernel = node.attr("kernel_shape") or (shape[2:] if shape else None)
    if not kernel or len(kernel) not in _CONV or not all(isinstance(k, int) for k in kernel):
        raise reject(node, "its kernel is not a fixed 1-D, 2-D or 3-D shape",
                     "give the weight a static shape (load the model with fixed input shapes)")
    return _ints(kernel)


@register("Conv", weights=(1, 2))
def _conv(node: Node, ctx: BuildContext) -> OpFn:
    kernel = _kernel(node, ctx)
    n, (pad, _) = len(kernel), _window(node, kernel, 0.0)
    conv, group = _CONV[n], int(node.attr("group", 1))
    strides, dil = _ints(node.attr("strides", [1] * n)), _ints(node.attr("dilations", [1] * n))

    def run(x, w, b=None):
        x, p = pad(x)
        return conv(x, w, b, strides, p, dil, group)

    return run


@register("ConvTranspose", weights=(1, 2))
def _conv_transpose(node: Node, ctx: BuildContext) -> OpFn:
    kernel = _kernel(node, ctx)
    n = len(kernel)
    if node.attr("output_shape") is not None or node.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise reject(node, "output_shape and auto_pad SAME_* are not supported",
                     "re-export the model with explicit pads")
    strides, dil = _ints(node.attr("strides", [1] * n)), _ints(node.attr("dilations", [1] * n))
    out_pad, group = _ints(node.attr("output_padding", [0] * n)), int(node.attr("group", 1))
    pads = [0] * 2 * n if node.attr("auto_pad") == "VALID" else _ints(node.attr("pads", [0] * 2 * n))
    conv_t = _CONV_T[n]

    def run(x, w, b=None):
        y = conv_t(x, w, b, strides, 0, out_pad, group, dil)
        crop = [slice(p, y.shape[2 + i] - pads[n + i]) for i, p in enumerate(pads[:n])]
        return y[(slice(None), slice(None), *crop)]

    return run


@register("Gemm", weights=(0, 1, 2))
def _gemm(node: Node, ctx: BuildContext) -> OpFn:
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    ta, tb = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    plain = alpha == 1.0 and beta == 1.0 and not ta and tb

    def run(a, b, c=None):
        if plain and (c is None or c.dim() == 1):
            return F.linear(a, b, c)  # one fused kernel for the usual fully connected layer
        y = (a.t() if ta else a) @ (b.t() if tb else b)
        y = y * alpha if alpha != 1.0 else y
        return y if c is None else y + (c if beta == 1.0 else beta * c)

    return run


@register("MatMul", weights=(0, 1))
def _matmul(node: Node, ctx: BuildContext) -> OpFn:
    return torch.matmul


@register("BatchNormalization", weights=(1, 2))
def _batchnorm(node: Node, ctx: BuildContext) -> OpFn:
    eps = float(node.attr("epsilon", 1e-5))
    return lambda x, scale, bias, mean, var: F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)


@register("LayerNormalization", weights=(1, 2))
def _layernorm(node: Node, ctx: BuildContext) -> OpFn:
    axis, eps = int(node.attr("axis", -1)), float(node.attr("epsilon", 1e-5))

    def run(x, scale, bias=None):
        a = axis % x.dim()
        y = F.layer_norm(x, x.shape[a:], None, None, eps) * scale
        return y if bias is None else y + bias

    return run


@register("LRN")
def _lrn(node: Node, ctx: BuildContext) -> OpFn:
    size, bias = int(node.attr("size")), float(node.attr("bias", 1.0))
    alpha, beta = float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75))
    before = (size - 1) // 2  # ONNX: floor((size-1)/2) channels before, ceil(...) after

    def run(x):
        sq = F.pad(x * x, [0, 0] * (x.dim() - 2) + [before, size - 1 - before])
        total = sum(sq[:, i:i + x.shape[1]] for i in range(size))
        return x / (bias + alpha / size * total) ** beta

    return run


# ---------------------------------------------------------------------- pooling
@register("MaxPool")
def _maxpool(node: Node, ctx: BuildContext) -> OpFn:
    kernel = _ints(node.attr("kernel_shape"))
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel)]
    (pad, _), ceil = _window(node, kernel, -math.inf), bool(node.attr("ceil_mode", 0))
    strides = _ints(node.attr("strides", [1] * len(kernel)))
    dil = _ints(node.attr("dilations", [1] * len(kernel)))

    def run(x):
        x, p = pad(x)
        return pool(x, kernel, strides, p, dil, ceil)

    return run


def _avg_pool(x, kernel, strides, pads, ceil, include, divisor=None):
    if len(kernel) == 1:  # 1-D pooling has no divisor_override: run it as 2-D of width 1
        y = F.avg_pool2d(x.unsqueeze(-1), kernel + [1], strides + [1], pads + [0], ceil, include, divisor)
        return y.squeeze(-1)
    pool = F.avg_pool3d if len(kernel) == 3 else F.avg_pool2d
    return pool(x, kernel, strides, pads, ceil, include, divisor)


@register("AveragePool")
def _avgpool(node: Node, ctx: BuildContext) -> OpFn:
    kernel = _ints(node.attr("kernel_shape"))
    n = len(kernel)
    if any(d != 1 for d in node.attr("dilations", [1] * n)):
        raise reject(node, "dilated average pooling is not supported", "use dilations of 1")
    strides, ceil = _ints(node.attr("strides", [1] * n)), bool(node.attr("ceil_mode", 0))
    include = bool(node.attr("count_include_pad", 0))
    (pad_x, explicit), (pad_mask, _) = _window(node, kernel, 0.0), _window(node, kernel, float(include))

    def run(x):
        xp, p = pad_x(x)
        if not explicit:
            return _avg_pool(xp, kernel, strides, p, ceil, include)
        # Padding made explicit: divide each window's sum by the number of cells that count.
        mask, _ = pad_mask(torch.ones_like(x[:1, :1]))
        return (_avg_pool(xp, kernel, strides, [0] * n, ceil, True, 1)
                / _avg_pool(mask, kernel, strides, [0] * n, ceil, True, 1))

    return run


@register("GlobalAveragePool")
def _global_avg_pool(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def _global_max_pool(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


# ---------------------------------------------------------------------- elementwise
_UNARY: dict[str, OpFn] = {
    "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp,
    "Log": torch.log, "Sqrt": torch.sqrt, "Abs": torch.abs, "Neg": torch.neg, "Erf": torch.erf,
    "Reciprocal": torch.reciprocal, "Floor": torch.floor, "Ceil": torch.ceil,
    "HardSwish": F.hardswish, "Softplus": F.softplus,
}
_BINARY: dict[str, OpFn] = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow}

for _op, _fn in (_UNARY | _BINARY).items():
    register(_op)(lambda node, ctx, fn=_fn: fn)


@register("Div")
def _div(node: Node, ctx: BuildContext) -> OpFn:
    def run(a, b):
        if a.is_floating_point() or b.is_floating_point():
            return a / b
        return torch.div(a, b, rounding_mode="trunc")  # ONNX integer division truncates

    return run


@register("Identity", "Dropout")
def _identity(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x, *_: x  # Dropout runs as in inference: fine-tuning keeps the graph's function


@register("LeakyRelu")
def _leaky_relu(node: Node, ctx: BuildContext) -> OpFn:
    alpha = float(node.attr("alpha", 0.01))
    return lambda x: F.leaky_relu(x, alpha)


@register("HardSigmoid")
def _hard_sigmoid(node: Node, ctx: BuildContext) -> OpFn:
    alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
    return lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0)


@register("Clip")
def _clip(node: Node, ctx: BuildContext) -> OpFn:
    if ctx.opset < 11:
        lo, hi = node.attr("min", -math.inf), node.attr("max", math.inf)
        return lambda x: torch.clamp(x, lo, hi)
    return lambda x, lo=None, hi=None: x if lo is None and hi is None else torch.clamp(x, lo, hi)


@register("Softmax", "LogSoftmax")
def _softmax(node: Node, ctx: BuildContext) -> OpFn:
    fn = {"Softmax": torch.softmax, "LogSoftmax": torch.log_softmax}[node.op_type]
    if ctx.opset >= 13:
        axis = int(node.attr("axis", -1))
        return lambda x: fn(x, axis)
    axis = int(node.attr("axis", 1))  # before opset 13: over the input flattened from axis on

    def run(x):
        a = axis % x.dim()
        return fn(x.reshape(math.prod(x.shape[:a]), -1), 1).reshape(x.shape)

    return run


# ---------------------------------------------------------------------- shape ops
@register("Flatten")
def _flatten(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis", 1))
    return lambda x: x.reshape(math.prod(x.shape[:axis if axis >= 0 else axis + x.dim()]), -1)


@register("Reshape")
def _reshape(node: Node, ctx: BuildContext) -> OpFn:
    target, allowzero = ctx.const(node, 1), int(node.attr("allowzero", 0))
    fixed = None if target is None else _ints(target)
    x_shape = ctx.shape(node, 0)
    keep_batch = (fixed is not None and ctx.batch is not None and len(fixed) > 0 and fixed[0] == ctx.batch
                  and bool(x_shape) and x_shape[0] == ctx.batch)

    def run(x, shape):
        dims = list(fixed) if fixed is not None else shape.tolist()
        if keep_batch:
            dims[0] = x.shape[0]
        if not allowzero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)

    return run


@register("Transpose")
def _transpose(node: Node, ctx: BuildContext) -> OpFn:
    perm = node.attr("perm")
    return lambda x: x.permute(perm if perm is not None else tuple(reversed(range(x.dim()))))


@register("Concat")
def _concat(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis"))
    return lambda *xs: torch.cat(xs, axis)


@register("Split", outputs=-1)
def _split(node: Node, ctx: BuildContext) -> OpFn:
    axis, parts = int(node.attr("axis", 0)), len(node.outputs)
    sizes = _input_or_attr(node, ctx, 1, "split")

    def run(x, _split=None):
        if sizes is not None:
            return torch.split(x, sizes, axis)
        return torch.split(x, math.ceil(x.shape[axis] / parts), axis)

    return run


@register("Slice")
def _slice(node: Node, ctx: BuildContext) -> OpFn:
    if ctx.opset < 10:
        starts, ends = _ints(node.attr("starts")), _ints(node.attr("ends"))
        axes, steps = node.attr("axes"), None
    else:
        starts, ends = _input_or_attr(node, ctx, 1, ""), _input_or_attr(node, ctx, 2, "")
        axes, steps = _input_or_attr(node, ctx, 3, ""), _input_or_attr(node, ctx, 4, "")
    axes = list(range(len(starts))) if axes is None else _ints(axes)
    steps = [1] * len(starts) if steps is None else steps

    def run(x, *_):
        for a, s, e, st in zip(axes, starts, ends, steps):
            dim = x.shape[a]
            if st > 0:
                x = x[(slice(None),) * (a % x.dim()) + (slice(s, e, st),)]
            else:  # torch slices only forwards: gather the indices range() gives
                s = min(max(s + dim if s < 0 else s, 0), dim - 1)
                e = min(max(e + dim if e < 0 else e, -1), dim - 1)
                x = x.index_select(a, torch.arange(s, e, st, device=x.device))
        return x

    return run


@register("Squeeze")
def _squeeze(node: Node, ctx: BuildContext) -> OpFn:
    axes = _input_or_attr(node, ctx, 1, "axes")
    return lambda x, *_: x.squeeze() if axes is None else x.squeeze(tuple(axes))


@register("Unsqueeze")
def _unsqueeze(node: Node, ctx: BuildContext) -> OpFn:
    axes = _input_or_attr(node, ctx, 1, "axes") or []

    def run(x, *_):
        for a in sorted(a % (x.dim() + len(axes)) for a in axes):
            x = x.unsqueeze(a)
        return x

    return run


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@register("Pad")
def _pad(node: Node, ctx: BuildContext) -> OpFn:
    mode = _PAD_MODES.get(node.attr("mode", "constant"))
    if mode is None:
        raise reject(node, f"mode {node.attr('mode')!r} is unknown", f"use one of {sorted(_PAD_MODES)}")
    pads = _input_or_attr(node, ctx, 1, "pads")
    axes = _input_or_attr(node, ctx, 3, "")
    value = ctx.const(node, 2)
    if value is None and len(node.inputs) > 2 and node.inputs[2]:
        raise reject(node, "its constant_value is computed at run time", "make it a constant")
    value = float(node.attr("value", 0.0)) if value is None or value.size == 0 else float(value.reshape(-1)[0])

    def run(x, *_):
        ax = list(range(x.dim())) if axes is None else [a % x.dim() for a in axes]
        full = [0] * 2 * x.dim()
        for i, a in enumerate(ax):
            full[a], full[x.dim() + a] = pads[i], pads[len(ax) + i]
        flat = _torch_pads(full[:x.dim()], full[x.dim():])
        while flat and not flat[-1] and not flat[-2]:  # torch pads the last dims only
            flat = flat[:-2]
        return F.pad(x, flat, mode, value if mode == "constant" else None)

    return run


@register("Constant", folds=True)
def _constant(node: Node, ctx: BuildContext) -> OpFn:
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if node.attr(key) is not None:
            value = np.asarray(node.attr(key), dtype=dtype)
            return lambda: value
    raise reject(node, "its value is not a dense tensor or number", "store the value as a dense tensor")


@register("Shape")
def _shape(node: Node, ctx: BuildContext) -> OpFn:
    start, end = node.attr("start", 0), node.attr("end")
    return lambda x: torch.tensor(x.shape[start:end], dtype=torch.int64, device=x.device)


@register("Gather")
def _gather(node: Node, ctx: BuildContext) -> OpFn:
    axis = int(node.attr("axis", 0))

    def run(data, idx):
        a = axis % data.dim()
        idx = torch.where(idx < 0, idx + data.shape[a], idx)
        flat = data.index_select(a, idx.reshape(-1).long())
        return flat.reshape(data.shape[:a] + idx.shape + data.shape[a + 1:])

    return run


# op -> (function, first opset where the axes are an input rather than an attribute)
_REDUCE = {"ReduceMean": (torch.mean, 18), "ReduceSum": (torch.sum, 13), "ReduceMax": (torch.amax, 18),
           "ReduceMin": (torch.amin, 18)}


@register(*_REDUCE)
def _reduce(node: Node, ctx: BuildContext) -> OpFn:
    fn, since = _REDUCE[node.op_type]
    axes = _input_or_attr(node, ctx, 1, "") if ctx.opset >= since else node.attr("axes")
    keep, noop = bool(node.attr("keepdims", 1)), bool(node.attr("noop_with_empty_axes", 0))

    def run(x, *_):
        if not axes and noop:
            return x
        return fn(x, dim=tuple(axes) if axes else tuple(range(x.dim())), keepdim=keep)

    return run


# ---------------------------------------------------------------------- quantization
_QRANGE = {np.dtype(t): (np.iinfo(t).min, np.iinfo(t).max)
           for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32)}


def _per_axis(v: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    if v.dim() == 0 or v.numel() == 1:
        return v.reshape(())
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return v.reshape(shape)


@register("DequantizeLinear")
def _dequantize(node: Node, ctx: BuildContext) -> OpFn:
    if node.attr("block_size", 0):
        raise reject(node, "blocked quantization is not supported", "quantize per tensor or per axis")
    axis = int(node.attr("axis", 1))

    def run(q, s, z=None):
        q = q.to(s.dtype)
        return (q if z is None else q - _per_axis(z, q, axis).to(s.dtype)) * _per_axis(s, q, axis)

    return run


@register("QuantizeLinear")
def _quantize(node: Node, ctx: BuildContext) -> OpFn:
    if node.attr("block_size", 0):
        raise reject(node, "blocked quantization is not supported", "quantize per tensor or per axis")
    axis, zp = int(node.attr("axis", 1)), ctx.const(node, 2)
    qtype = np.dtype(np.uint8) if zp is None else zp.dtype
    if qtype not in _QRANGE:
        raise reject(node, f"quantizing to {qtype} is not supported", "quantize to int8 or uint8")
    lo, hi = _QRANGE[qtype]

    def run(x, s, z=None):
        q = x / _per_axis(s, x, axis)
        q = q + (torch.round(q) - q).detach()  # straight-through rounding
        q = q if z is None else q + _per_axis(z, x, axis).to(q.dtype)
        return torch.clamp(q, lo, hi)

    return run
