"""Resampling ops: Resize and Upsample (nearest, linear and cubic), DepthToSpace, SpaceToDepth,
GridSample and AffineGrid (torch's grid_sample and affine_grid), and DeformConv, which
samples its input at learned offsets before convolving.

Resize and Upsample map each output index of a resized axis to a coordinate of the input
(the coordinate transformation mode), then take the nearest input cell (the nearest mode)
or interpolate linearly between the two cells around it (or cubically between four, Keys'
convolution with ONNX's coefficient); resizing several axes is done one axis after the
other, which is what multilinear (multicubic) interpolation is. tf_crop_and_resize
samples a region of interest and fills what falls outside the input with the
extrapolation value; antialiased downsampling widens the filter by the scale. The
arithmetic is float32, as onnxruntime's, so that ties in nearest rounding fall the same
way.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from hwcc.ir import Node
from hwcc.train.ops.registry import BuildContext, OpFn, ints, register, reject

_TRANSFORMS = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
    "tf_crop_and_resize",
)
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _source(mode: str, out: int, size: int, scale: float, roi=(0.0, 1.0)) -> torch.Tensor:
    """The input coordinate (float32) of each of the ``out`` output indices of one axis;
    ``roi`` is the (start, end) of the region tf_crop_and_resize samples."""
    r = torch.arange(out, dtype=torch.float32)
    s = torch.tensor(scale, dtype=torch.float32)
    if mode == "tf_crop_and_resize":
        lo, hi = roi
        if out == 1:
            return torch.full((1,), 0.5 * (lo + hi) * (size - 1))
        return lo * (size - 1) + r * (hi - lo) * (size - 1) / (out - 1)
    if mode == "asymmetric":
        return r / s
    if mode == "tf_half_pixel_for_nn":
        return (r + 0.5) / s
    if mode == "align_corners":  # over the resized length before rounding, as ONNX does
        return torch.zeros(out) if out == 1 else r * (size - 1) / (size * s - 1)
    if mode == "pytorch_half_pixel" and out <= 1:
        return torch.zeros(out)
    x = (r + 0.5) / s - 0.5
    if mode == "half_pixel_symmetric":
        adjust = out / (s * size)
        x = x + (size / 2) * (1 - adjust)
    return x


def _nearest(x: torch.Tensor, mode: str, downsample: bool) -> torch.Tensor:
    if mode == "round_prefer_floor":
        return torch.where(x == torch.floor(x) + 0.5, torch.floor(x), torch.round(x))
    if mode == "round_prefer_ceil":
        return torch.where(x == torch.floor(x) + 0.5, torch.ceil(x), torch.round(x))
    if mode == "ceil" or (mode == "simple" and downsample):
        return torch.ceil(x)
    if mode == "simple":
        return torch.trunc(x)
    return torch.floor(x)


def _keys(d: torch.Tensor, a: float) -> torch.Tensor:
    """Keys' cubic convolution kernel with coefficient ``a``."""
    d = d.abs()
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d <= 1, near, torch.where(d < 2, far, torch.zeros_like(d)))


def _triangle(d: torch.Tensor) -> torch.Tensor:
    return (1 - d.abs()).clamp(0, 1)


def _convolve(x, axis, src, size, scale, kernel, support: float, antialias: bool, exclude):
    """``x`` along ``axis`` at coordinates ``src``, filtered by ``kernel`` (of half-width
    ``support``); antialiased downsampling stretches the kernel by 1 / scale. The taps'
    weights sum to one; past the edges the edge cells repeat, or count for nothing with
    ``exclude`` (the others' weights then sum to one)."""
    s = min(scale, 1.0) if antialias else 1.0
    taps = 2 - 2 * (math.floor(-support / s) + 1)
    first = torch.ceil(src).long() - taps // 2
    idx = first.unsqueeze(1) + torch.arange(taps)  # [out, taps]
    w = kernel(s * (idx - src.unsqueeze(1)))
    w = w / w.sum(1, keepdim=True)
    if exclude:
        w = torch.where((idx >= 0) & (idx < size), w, 0.0)
        w = w / w.sum(1, keepdim=True)
    shape = [1] * x.dim()
    shape[axis] = len(src)
    out = 0
    for k in range(taps):
        tap = x.index_select(axis, idx[:, k].clamp(0, size - 1))
        out = out + tap * w[:, k].to(x.dtype).reshape(shape)
    return out


def _resample(x, plan, linear, transform: str, nearest: str, cubic=None, crop=None):
    """``x`` resized along each ``(axis, out_size, scale)`` of ``plan``; ``cubic`` is
    ``(a, exclude_outside)`` for cubic interpolation, ``crop`` ``(roi by axis,
    extrapolation value)`` for tf_crop_and_resize."""
    for axis, out, scale in plan:
        size = x.shape[axis]
        if out == size and scale == 1.0 and crop is None:
            continue
        roi = [crop[0][axis]] if crop else []
        src = _source(transform, out, size, scale, *roi)
        x = _one_axis(x, axis, src, size, scale, linear, nearest, cubic)
        if crop is not None:  # outside the input: the extrapolation value
            shape = [1] * x.dim()
            shape[axis] = out
            x = x.masked_fill(((src < 0) | (src > size - 1)).reshape(shape), crop[1])
    return x


def _one_axis(x, axis, src, size, scale, linear, nearest, cubic):
    """``x`` sampled along ``axis`` at the input coordinates ``src``."""
    if cubic is not None:
        return _convolve(x, axis, src, size, scale, *cubic)
    if not linear:
        idx = _nearest(src, nearest, scale < 1.0).clamp(0, size - 1).long()
        return x.index_select(axis, idx)
    src = src.clamp(0, size - 1)
    lo = torch.floor(src).long().clamp(max=size - 1)
    hi = (lo + 1).clamp(max=size - 1)
    shape = [1] * x.dim()
    shape[axis] = len(src)
    w = (src - lo).to(x.dtype).reshape(shape)
    return x.index_select(axis, lo) * (1 - w) + x.index_select(axis, hi) * w


def _mode(node: Node, mode: str) -> bool:
    """True for linear interpolation, False for nearest (or cubic); anything else is refused."""
    if mode in ("linear", "bilinear", "trilinear"):
        return True
    if mode == "cubic" and node.op_type == "Resize":
        return False
    if mode != "nearest":
        raise reject(
            node,
            f"mode={mode!r} is not supported",
            "use mode 'nearest', 'linear' or 'cubic'",
        )
    return False


@register("Resize", "Upsample")
def _resize(node: Node, ctx: BuildContext) -> OpFn:
    old = node.op_type == "Upsample" or ctx.opset < 11  # asymmetric, "simple" nearest
    linear = _mode(node, node.attr("mode", "nearest"))
    transform = "asymmetric" if old else node.attr("coordinate_transformation_mode", "half_pixel")
    nearest = "simple" if old else node.attr("nearest_mode", "round_prefer_floor")
    if transform not in _TRANSFORMS:
        raise reject(
            node,
            f"coordinate_transformation_mode={transform!r} is not supported",
            f"use one of {', '.join(_TRANSFORMS)}",
        )
    if not linear and not old and nearest not in _NEAREST:
        raise reject(
            node,
            f"nearest_mode={nearest!r} is not an ONNX value",
            f"use one of {', '.join(_NEAREST)}",
        )
    # A filter for _convolve: cubic, or linear when antialiased (plain linear is cheaper).
    cubic, exclude = None, bool(node.attr("exclude_outside", 0))
    antialias = bool(int(node.attr("antialias", 0)))
    if node.attr("mode") == "cubic":
        a = float(node.attr("cubic_coeff_a", -0.75))
        cubic = (lambda d: _keys(d, a)), 2.0, antialias, exclude
    elif linear and antialias:
        cubic = _triangle, 1.0, True, exclude
    policy = node.attr("keep_aspect_ratio_policy", "stretch")
    if policy not in ("stretch", "not_larger", "not_smaller"):
        raise reject(node, f"keep_aspect_ratio_policy={policy!r}", "use an ONNX value")
    axes = node.attr("axes")
    axes = None if axes is None else ints(axes)
    attr_scales = node.attr("scales")  # Upsample before opset 9
    # Where scales and sizes are among the inputs after X (roi comes first from opset 11).
    at = (
        {"scales": 2, "sizes": 3} if node.op_type == "Resize" and ctx.opset >= 11 else {"scales": 1}
    )
    x_shape = ctx.shape(node, 0)
    keep_batch = ctx.batch is not None and bool(x_shape) and x_shape[0] == ctx.batch

    extrapolation = float(node.attr("extrapolation_value", 0.0))

    def crop(x, rest, names):
        if transform != "tf_crop_and_resize":
            return None
        roi = values(rest[0]) if rest else None
        if roi is None:
            raise ValueError("tf_crop_and_resize needs a region of interest (roi)")
        n = len(roi) // 2
        by_axis = {
            a: (roi[i if n == len(names) else a], roi[n + (i if n == len(names) else a)])
            for i, a in enumerate(names)
        }
        return by_axis, extrapolation

    def values(t):
        return None if t is None or t.numel() == 0 else t.reshape(-1).tolist()

    def run(x, *rest):
        scales = values(rest[at["scales"] - 1]) if len(rest) >= at["scales"] else None
        sizes = None
        if "sizes" in at and len(rest) >= at["sizes"]:
            sizes = values(rest[at["sizes"] - 1])
        if scales is None and sizes is None:
            scales = [float(s) for s in attr_scales] if attr_scales is not None else None
        if scales is None and sizes is None:
            raise reject(node, "it has neither scales nor sizes", "give one of them")
        names = list(range(x.dim())) if axes is None else [a % x.dim() for a in axes]
        if sizes is not None and policy != "stretch":  # one scale for all axes, sizes rounded
            pick = min if policy == "not_larger" else max
            s = pick(sizes[i] / x.shape[a] for i, a in enumerate(names))
            plan = [(a, int(s * x.shape[a] + 0.5), s) for a in names]
            return _resample(x, plan, linear, transform, nearest, cubic, crop(x, rest, names))
        plan = []
        for i, a in enumerate(names):
            if sizes is not None:
                out = int(sizes[i])
                if a == 0 and keep_batch and out == ctx.batch:
                    out = x.shape[0]  # the graph's fixed batch follows the batch it is given
                plan.append((a, out, float(np.float32(out) / np.float32(x.shape[a]))))
            else:
                s = np.float32(scales[i])
                plan.append((a, int(np.float32(x.shape[a]) * s), float(s)))
        return _resample(x, plan, linear, transform, nearest, cubic, crop(x, rest, names))

    return run


@register("DepthToSpace")
def _depth_to_space(node: Node, ctx: BuildContext) -> OpFn:
    bs, mode = int(node.attr("blocksize")), node.attr("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise reject(node, f"mode={mode!r} is not an ONNX value", "use DCR or CRD")

    def run(x):
        n, c, h, w = x.shape
        if mode == "DCR":
            y = x.reshape(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(n, c // (bs * bs), bs, bs, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(n, c // (bs * bs), h * bs, w * bs)

    return run


@register("SpaceToDepth")
def _space_to_depth(node: Node, ctx: BuildContext) -> OpFn:
    bs, mode = int(node.attr("blocksize")), node.attr("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise reject(node, f"mode={mode!r} is not an ONNX value", "use DCR or CRD")
    order = (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)

    def run(x):
        n, c, h, w = x.shape
        y = x.reshape(n, c, h // bs, bs, w // bs, bs).permute(*order)
        return y.reshape(n, c * bs * bs, h // bs, w // bs)

    return run


_GRID_MODES = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest"}
_GRID_MODES |= {"bicubic": "bicubic", "cubic": "bicubic"}


@register("GridSample")
def _grid_sample(node: Node, ctx: BuildContext) -> OpFn:
    mode = _text(node.attr("mode", "linear" if ctx.opset >= 20 else "bilinear"))
    padding = _text(node.attr("padding_mode", "zeros"))
    align = bool(node.attr("align_corners", 0))
    if mode not in _GRID_MODES or padding not in ("zeros", "border", "reflection"):
        raise reject(node, f"mode={mode!r}, padding_mode={padding!r}", "use ONNX's values")
    how = _GRID_MODES[mode]
    return lambda x, grid: F.grid_sample(x, grid, how, padding, align)


@register("AffineGrid")
def _affine_grid(node: Node, ctx: BuildContext) -> OpFn:
    align = bool(node.attr("align_corners", 0))
    return lambda theta, size: F.affine_grid(theta, size.tolist(), align)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@register("DeformConv", weights=(1, 3))
def _deform_conv(node: Node, ctx: BuildContext) -> OpFn:
    shape = ctx.shape(node, 1)
    kernel = ints(node.attr("kernel_shape") or (shape[2:] if shape else []))
    if len(kernel) != 2:
        raise reject(node, "only 2-D deformable convolution is supported", "use a 2-D kernel")
    (kh, kw), k = kernel, kernel[0] * kernel[1]
    strides, dil = ints(node.attr("strides", [1, 1])), ints(node.attr("dilations", [1, 1]))
    pads = ints(node.attr("pads", [0, 0, 0, 0]))
    group, offset_group = int(node.attr("group", 1)), int(node.attr("offset_group", 1))

    def run(x, w, offset, b=None, mask=None):
        n, c, h, wd = x.shape
        oh, ow = offset.shape[2:]
        # Each kernel tap's sampling position: the regular grid, then its learned offset.
        ty, tx = torch.meshgrid(torch.arange(kh) * dil[0], torch.arange(kw) * dil[1], indexing="ij")
        gy = (torch.arange(oh) * strides[0] - pads[0]).reshape(1, -1, 1) + ty.reshape(-1, 1, 1)
        gx = (torch.arange(ow) * strides[1] - pads[1]).reshape(1, 1, -1) + tx.reshape(-1, 1, 1)
        off = offset.reshape(n, offset_group, k, 2, oh, ow)
        ys, xs = gy + off[:, :, :, 0], gx + off[:, :, :, 1]  # [n, G, k, oh, ow]
        grid = torch.stack([(2 * xs + 1) / wd - 1, (2 * ys + 1) / h - 1], -1)
        grid = grid.reshape(n * offset_group, k * oh, ow, 2).to(x.dtype)
        planes = x.reshape(n * offset_group, c // offset_group, h, wd)
        cols = F.grid_sample(planes, grid, "bilinear", "zeros", align_corners=False)
        cols = cols.reshape(n, offset_group, c // offset_group, k, oh, ow)
        if mask is not None:
            cols = cols * mask.reshape(n, offset_group, 1, k, oh, ow)
        cols = cols.reshape(n, group, (c // group) * k, oh * ow)
        w = w.reshape(group, -1, (c // group) * k)
        out = torch.einsum("gok,ngkp->ngop", w, cols).reshape(n, -1, oh, ow).to(x.dtype)
        return out if b is None else out + b.reshape(1, -1, 1, 1)

    return run
