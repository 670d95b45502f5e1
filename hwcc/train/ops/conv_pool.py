"""Convolution, Gemm and MatMul, normalisation and pooling (LpPool and dilated average pooling
as sums over windows), with ONNX's padding rules."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from hwcc.ir import Node
from hwcc.train.ops.norm_ops import check_axis, stash_dtype
from hwcc.train.ops.registry import BuildContext, OpFn, ints, register, reject, torch_pads


# ---------------------------------------------------------------------- padding
def _window(
    node: Node, kernel: Sequence[int], fill: float
) -> tuple[Callable[[torch.Tensor], tuple], bool]:
    """Padding of Conv and pooling.

    Returns:
        ``(fn, explicit)``: ``fn(x) -> (x_padded, pads)``, where ``pads`` are the
        symmetric pads left for the torch op; ``explicit`` is True when ``fn`` pads
        ``x`` itself (asymmetric or SAME pads) and the op's own padding is zero.
    """
    n = len(kernel)
    strides = ints(node.attr("strides", [1] * n))
    dil = ints(node.attr("dilations", [1] * n))
    mode = node.attr("auto_pad", "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):

        def same(x: torch.Tensor) -> tuple:
            size = x.shape[2:]
            tot = [
                max((math.ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)
                for i, s, k, d in zip(size, strides, kernel, dil)
            ]
            low = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in tot]
            high = [t - lo for t, lo in zip(tot, low)]
            return F.pad(x, torch_pads(low, high), value=fill), [0] * n

        return same, True
    if mode not in ("NOTSET", "VALID"):
        raise reject(node, f"auto_pad={mode!r} is not an ONNX value", "use NOTSET, VALID or SAME_*")
    pads = [0] * 2 * n if mode == "VALID" else ints(node.attr("pads", [0] * 2 * n))
    begins, ends = pads[:n], pads[n:]
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    if begins == ends and all(2 * p <= k for p, k in zip(begins, eff)):
        return (lambda x: (x, begins)), False
    explicit = torch_pads(begins, ends)
    return (lambda x: (F.pad(x, explicit, value=fill), [0] * n)), True


# ---------------------------------------------------------------------- compute ops
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _kernel(node: Node, ctx: BuildContext) -> list[int]:
    shape = ctx.shape(node, 1)
    kernel = node.attr("kernel_shape") or (shape[2:] if shape else None)
    if not kernel or len(kernel) not in _CONV or not all(isinstance(k, int) for k in kernel):
        raise reject(
            node,
            "its kernel is not a fixed 1-D, 2-D or 3-D shape",
            "give the weight a static shape (load the model with fixed input shapes)",
        )
    return ints(kernel)


@register("Conv", weights=(1, 2))
def _conv(node: Node, ctx: BuildContext) -> OpFn:
    kernel = _kernel(node, ctx)
    n, (pad, _) = len(kernel), _window(node, kernel, 0.0)
    conv, group = _CONV[n], int(node.attr("group", 1))
    strides, dil = ints(node.attr("strides", [1] * n)), ints(node.attr("dilations", [1] * n))

    def run(x, w, b=None):
        x, p = pad(x)
        return conv(x, w, b, strides, p, dil, group)

    return run


@register("ConvTranspose", weights=(1, 2))
def _conv_transpose(node: Node, ctx: BuildContext) -> OpFn:
    kernel = _kernel(node, ctx)
    n = len(kernel)
    auto = node.attr("auto_pad", "NOTSET")
    shape = node.attr("output_shape")
    shape = None if shape is None else ints(shape)[-n:]
    strides, dil = ints(node.attr("strides", [1] * n)), ints(node.attr("dilations", [1] * n))
    out_pad, group = ints(node.attr("output_padding", [0] * n)), int(node.attr("group", 1))
    pads = [0] * 2 * n if node.attr("auto_pad") == "VALID" else ints(node.attr("pads", [0] * 2 * n))
    conv_t = _CONV_T[n]

    def fitted(y, x) -> list[int]:
        """The pads that give the output_shape asked for (SAME: input size x stride)."""
        want = shape or [i * s for i, s in zip(x.shape[2:], strides)]
        total = [full - o for full, o in zip(y.shape[2:], want)]
        if auto == "SAME_UPPER":
            return [t // 2 for t in total] + [t - t // 2 for t in total]
        return [t - t // 2 for t in total] + [t // 2 for t in total]

    def run(x, w, b=None):
        y = conv_t(x, w, b, strides, 0, out_pad, group, dil)
        p = pads
        if shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
            p = fitted(y, x)
            if min(p) < 0:  # longer than the full output: extra output padding at the end
                extra = [o - min(e, 0) for o, e in zip(out_pad, p[n:])]
                y = conv_t(x, w, b, strides, 0, extra, group, dil)
                p = fitted(y, x)
        crop = [slice(lo, y.shape[2 + i] - p[n + i]) for i, lo in enumerate(p[:n])]
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


@register("BatchNormalization", weights=(1, 2), outputs=3)
def _batchnorm(node: Node, ctx: BuildContext) -> OpFn:
    eps, momentum = float(node.attr("epsilon", 1e-5)), float(node.attr("momentum", 0.9))
    if not (ctx.opset >= 14 and node.attr("training_mode", 0)):
        return lambda x, scale, bias, mean, var: (
            F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps),
            mean,
            var,
        )

    def train(x, scale, bias, mean, var):  # a graph exported in training mode asks for it
        dims = [d for d in range(x.dim()) if d != 1]
        batch_mean, batch_var = x.mean(dims), x.var(dims, unbiased=False)
        y = F.batch_norm(x, batch_mean, batch_var, scale, bias, False, 0.0, eps)
        return (
            y,
            mean * momentum + batch_mean * (1 - momentum),
            var * momentum + batch_var * (1 - momentum),
        )

    return train


@register("LayerNormalization", weights=(1, 2), outputs=3)
def _layernorm(node: Node, ctx: BuildContext) -> OpFn:
    """Y, and Mean and InvStdDev (in ``stash_type``, over the axes from ``axis`` on, kept
    as size 1) when the node names them; the statistics are computed in ``stash_type``."""
    axis, eps = int(node.attr("axis", -1)), float(node.attr("epsilon", 1e-5))
    stash = stash_dtype(node)
    stats = any(node.outputs[1:])
    check_axis(node, ctx, axis)

    def run(x, scale, bias=None):
        a = axis % x.dim()
        if stats or x.dtype != stash:
            dims = tuple(range(a, x.dim()))
            xs = x.to(stash)
            mean = xs.mean(dims, keepdim=True)
            d = xs - mean
            inv = torch.rsqrt((d * d).mean(dims, keepdim=True) + eps)
            y = (d * inv).to(x.dtype) * scale
        else:  # the fused kernel where only Y is asked for
            y, mean, inv = F.layer_norm(x, x.shape[a:], None, None, eps) * scale, None, None
        return (y if bias is None else y + bias), mean, inv

    return run


@register("LRN")
def _lrn(node: Node, ctx: BuildContext) -> OpFn:
    size, bias = int(node.attr("size")), float(node.attr("bias", 1.0))
    alpha, beta = float(node.attr("alpha", 1e-4)), float(node.attr("beta", 0.75))
    before = (size - 1) // 2  # ONNX: floor((size-1)/2) channels before, ceil(...) after

    def run(x):
        sq = F.pad(x * x, [0, 0] * (x.dim() - 2) + [before, size - 1 - before])
        total = sum(sq[:, i : i + x.shape[1]] for i in range(size))
        return x / (bias + alpha / size * total) ** beta

    return run


# ---------------------------------------------------------------------- pooling
@register("MaxPool", outputs=2)
def _maxpool(node: Node, ctx: BuildContext) -> OpFn:
    kernel = ints(node.attr("kernel_shape"))
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel)]
    (pad, _), ceil = _window(node, kernel, -math.inf), bool(node.attr("ceil_mode", 0))
    strides = ints(node.attr("strides", [1] * len(kernel)))
    dil = ints(node.attr("dilations", [1] * len(kernel)))

    column_major = int(node.attr("storage_order", 0)) == 1
    auto = node.attr("auto_pad", "NOTSET")
    listed = ints(node.attr("pads", [0] * 2 * len(kernel)))[: len(kernel)]

    def run(x):
        xp, p = pad(x)
        if len(node.outputs) < 2 or not node.outputs[1]:
            return pool(xp, kernel, strides, p, dil, ceil), None
        y, idx = pool(xp, kernel, strides, p, dil, ceil, return_indices=True)
        tot = [a - b for a, b in zip(xp.shape[2:], x.shape[2:])]  # what ``pad`` added
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            begins = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in tot]
        else:
            begins = listed if any(tot) else [0] * len(kernel)
        return y, _onnx_indices(idx, x.shape, xp.shape, begins, column_major)

    return run


def _onnx_indices(idx, shape, padded, begins, column_major: bool) -> torch.Tensor:
    """torch's per-plane indices into the (explicitly padded) input -> ONNX's, into the
    whole input tensor, row-major (or column-major within a plane)."""
    n = len(shape) - 2
    coords, rest = [], idx
    for size in reversed(padded[2:]):  # unravel over the padded plane
        coords.append(rest % size)
        rest = rest // size
    coords = coords[::-1]
    coords = [c - b for c, b in zip(coords, begins)]
    flat = torch.zeros_like(idx)
    dims = list(shape[2:])
    order = range(n - 1, -1, -1) if column_major else range(n)
    for i in order:
        flat = flat * dims[i] + coords[i]
    plane = torch.arange(shape[0] * shape[1]).reshape(shape[0], shape[1], *[1] * n)
    return flat + plane * math.prod(dims)


def _avg_pool(x, kernel, strides, pads, ceil, include, divisor=None):
    if len(kernel) == 1:  # 1-D pooling has no divisor_override: run it as 2-D of width 1
        y = F.avg_pool2d(
            x.unsqueeze(-1), kernel + [1], strides + [1], pads + [0], ceil, include, divisor
        )
        return y.squeeze(-1)
    pool = F.avg_pool3d if len(kernel) == 3 else F.avg_pool2d
    return pool(x, kernel, strides, pads, ceil, include, divisor)


@register("AveragePool")
def _avgpool(node: Node, ctx: BuildContext) -> OpFn:
    kernel = ints(node.attr("kernel_shape"))
    n = len(kernel)
    strides, ceil = ints(node.attr("strides", [1] * n)), bool(node.attr("ceil_mode", 0))
    dil = ints(node.attr("dilations", [1] * n))
    include = bool(node.attr("count_include_pad", 0))
    pad_x, explicit = _window(node, kernel, 0.0)
    pad_mask, _ = _window(node, kernel, float(include))
    if any(d != 1 for d in dil):

        def dilated(x):  # each window's sum over the number of its cells that count
            xp, p = pad_x(x)
            mask, _ = pad_mask(torch.ones_like(x[:1, :1]))
            pads = torch_pads(p, p)
            xp, mask = F.pad(xp, pads), F.pad(mask, pads, value=float(include))
            if ceil:  # the last windows may run past the end: zeros that do not count
                extra = _ceil_extra(xp.shape[2:], kernel, strides, dil, p)
                xp, mask = (
                    F.pad(xp, torch_pads([0] * n, extra)),
                    F.pad(mask, torch_pads([0] * n, extra)),
                )
            zero = [0] * n
            return _window_sum(xp, kernel, strides, zero, dil) / _window_sum(
                mask, kernel, strides, zero, dil
            )

        return dilated

    def run(x):
        xp, p = pad_x(x)
        if not explicit:
            return _avg_pool(xp, kernel, strides, p, ceil, include)
        # Padding made explicit: divide each window's sum by the number of cells that count.
        mask, _ = pad_mask(torch.ones_like(x[:1, :1]))
        return _avg_pool(xp, kernel, strides, [0] * n, ceil, True, 1) / _avg_pool(
            mask, kernel, strides, [0] * n, ceil, True, 1
        )

    return run


def _ceil_extra(size, kernel, strides, dil, pads) -> list[int]:
    """Cells to add at the end of each padded axis for ceil_mode's last windows (a window
    must start inside the input or its begin pad, as in torch)."""
    out = []
    for i, k, s, d, p in zip(size, kernel, strides, dil, pads):
        eff = (k - 1) * d + 1
        count = -(-(i - eff) // s) + 1
        if (count - 1) * s >= i - p:
            count -= 1
        out.append(max((count - 1) * s + eff - i, 0))
    return out


def _window_sum(x, kernel, strides, pads, dil):
    """The sum of each (dilated) window, per channel: a convolution with ones."""
    ones = torch.ones((x.shape[1], 1, *kernel), dtype=x.dtype)
    return _CONV[len(kernel)](x, ones, None, strides, pads, dil, x.shape[1])


@register("LpPool")
def _lp_pool(node: Node, ctx: BuildContext) -> OpFn:
    kernel = ints(node.attr("kernel_shape"))
    n, p = len(kernel), float(node.attr("p", 2))
    if node.attr("ceil_mode", 0):
        raise reject(node, "ceil_mode is not supported", "use ceil_mode=0")
    strides = ints(node.attr("strides", [1] * n))
    dil = ints(node.attr("dilations", [1] * n))
    pad, _ = _window(node, kernel, 0.0)

    def run(x):
        xp, pads = pad(x)
        return _window_sum(xp.abs() ** p, kernel, strides, pads, dil) ** (1 / p)

    return run


@register("GlobalAveragePool")
def _global_avg_pool(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def _global_max_pool(node: Node, ctx: BuildContext) -> OpFn:
    return lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@register("MaxUnpool")
def _max_unpool(node: Node, ctx: BuildContext) -> OpFn:
    kernel = ints(node.attr("kernel_shape"))
    n = len(kernel)
    strides = ints(node.attr("strides", [1] * n))
    pads = ints(node.attr("pads", [0] * 2 * n))

    def run(x, idx, shape=None):
        spatial = [
            (i - 1) * s + k - b - e
            for i, s, k, b, e in zip(x.shape[2:], strides, kernel, pads[:n], pads[n:])
        ]
        size = [*x.shape[:2], *spatial]
        flat = x.new_zeros(math.prod(size))  # ONNX's indices run over the whole output
        y = flat.scatter(0, idx.reshape(-1), x.reshape(-1)).reshape(size)
        if shape is None:
            return y
        ends = [int(v) - d for v, d in zip(shape.tolist(), size)]  # a larger output_shape
        return F.pad(y, torch_pads([0] * len(ends), ends))  # gets zeros at the end

    return run
