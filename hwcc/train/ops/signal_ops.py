"""Signal and block ops: DFT and STFT through ``torch.fft`` (so gradients pass), the Hann,
Hamming and Blackman windows, Col2Im and CenterCropPad.

ONNX keeps complex numbers as a last axis of two (real, imaginary); a real signal may
have a last axis of one. DFT's axis is an attribute up to opset 19 and an input from 20
on (default -2); ``onesided`` keeps the first ``n // 2 + 1`` bins of a forward transform
and makes an inverse one real (``irfft``). Col2Im adds each block back into the image,
in any number of dimensions; CenterCropPad crops or zero-pads each axis it names about
the centre, the odd cell at the end.
"""

from __future__ import annotations

import math

import torch

from hwcc.ir import Node
from hwcc.train.ops.logic_ops import torch_dtype
from hwcc.train.ops.registry import BuildContext, OpFn, register


def _complex(x: torch.Tensor) -> torch.Tensor:
    """``[..., 1|2]`` -> a real or complex tensor without the last axis."""
    if x.shape[-1] == 1:
        return x.squeeze(-1)
    return torch.complex(x[..., 0], x[..., 1])


def _pairs(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A complex (or real) result as ONNX's ``[..., 2]`` (or ``[..., 1]``)."""
    if y.is_complex():
        return torch.view_as_real(y).to(dtype)
    return y.unsqueeze(-1).to(dtype)


def _scalar(t, default):
    return default if t is None else int(t.reshape(-1)[0])


@register("DFT")
def _dft(node: Node, ctx: BuildContext) -> OpFn:
    inverse, onesided = bool(node.attr("inverse", 0)), bool(node.attr("onesided", 0))
    axis_attr = int(node.attr("axis", 1))

    def run(x, length=None, axis=None):
        a = (axis_attr if ctx.opset < 20 else _scalar(axis, -2)) % x.dim()
        if a == x.dim() - 1:
            raise ValueError("DFT's axis cannot be the last (real, imaginary) axis")
        signal = _complex(x)
        if inverse and onesided:
            n = _scalar(length, 2 * (x.shape[a] - 1))
            return _pairs(torch.fft.irfft(signal, n, dim=a), x.dtype)
        n = _scalar(length, x.shape[a])
        if inverse:
            return _pairs(torch.fft.ifft(signal, n, dim=a), x.dtype)
        y = torch.fft.fft(signal, n, dim=a)
        if onesided:
            y = y.narrow(a, 0, n // 2 + 1)
        return _pairs(y, x.dtype)

    return run


@register("STFT")
def _stft(node: Node, ctx: BuildContext) -> OpFn:
    onesided = bool(node.attr("onesided", 1))

    def run(signal, step, window=None, length=None):
        hop = _scalar(step, 1)
        n = _scalar(length, None) if length is not None else None
        if n is None:
            if window is None:
                raise ValueError("STFT needs a window or a frame_length")
            n = window.shape[0]
        frames = signal.unfold(1, n, hop)  # [batch, frames, 1|2, n]
        frames = frames.movedim(-1, -2)  # [batch, frames, n, 1|2]
        if window is not None:
            frames = frames * window.reshape(-1, 1).to(frames.dtype)
        y = torch.fft.fft(_complex(frames), n, dim=-1)
        if onesided:
            y = y[..., : n // 2 + 1]
        return _pairs(y, signal.dtype)

    return run


@register("Col2Im")
def _col2im(node: Node, ctx: BuildContext) -> OpFn:
    def run(x, image, block):
        size, kernel = image.tolist(), block.tolist()
        n = len(size)
        dil = [int(v) for v in node.attr("dilations", [1] * n)]
        strides = [int(v) for v in node.attr("strides", [1] * n)]
        pads = [int(v) for v in node.attr("pads", [0] * 2 * n)]
        padded = [s + b + e for s, b, e in zip(size, pads[:n], pads[n:])]
        counts = [
            (p - (k - 1) * d - 1) // st + 1 for p, k, d, st in zip(padded, kernel, dil, strides)
        ]
        # Where each (kernel offset, block) cell lands in the padded image, flattened:
        # x's last axes are the kernel offsets, then the blocks, each row-major.
        where = torch.zeros([1] * 2 * n, dtype=torch.int64)
        for i, (k, d, st, c) in enumerate(zip(kernel, dil, strides, counts)):
            pos = (torch.arange(k) * d).reshape(-1, 1) + torch.arange(c) * st  # [k, c]
            shape = [1] * 2 * n
            shape[i], shape[n + i] = k, c
            where = where + pos.reshape(shape) * math.prod(padded[i + 1 :])
        where = where.reshape(-1)
        batch, channels = x.shape[0], x.shape[1] // math.prod(kernel)
        out = x.new_zeros((batch, channels, math.prod(padded)))
        out = out.index_add(2, where, x.reshape(batch, channels, -1))
        out = out.reshape(batch, channels, *padded)
        for axis, (b, s) in enumerate(zip(pads[:n], size)):
            out = out.narrow(2 + axis, b, s)
        return out

    return run


@register("CenterCropPad")
def _center_crop_pad(node: Node, ctx: BuildContext) -> OpFn:
    axes_attr = node.attr("axes")

    def run(x, shape):
        target = shape.tolist()
        axes = [a % x.dim() for a in axes_attr] if axes_attr else list(range(x.dim()))
        if len(axes) != len(target):
            raise ValueError("CenterCropPad's shape and axes differ in length")
        for a, want in zip(axes, target):
            have = x.shape[a]
            if have > want:  # crop: the extra from the end when odd
                x = x.narrow(a, (have - want) // 2, want)
            elif have < want:  # pad: the extra at the end when odd
                low = (want - have) // 2
                pads = [0, 0] * (x.dim() - 1 - a) + [low, want - have - low]
                x = torch.nn.functional.pad(x, pads)
        return x

    return run


# Window functions: sums of cosines a0 - a1 cos(2 pi n / D) + a2 cos(4 pi n / D)
_WINDOWS = {
    "HannWindow": (0.5, 0.5, 0.0),
    "HammingWindow": (25 / 46, 21 / 46, 0.0),
    "BlackmanWindow": (0.42, 0.5, 0.08),
}


@register(*_WINDOWS)
def _window(node: Node, ctx: BuildContext) -> OpFn:
    a0, a1, a2 = _WINDOWS[node.op_type]
    periodic = bool(node.attr("periodic", 1))
    dtype = torch_dtype(int(node.attr("output_datatype", 1)))

    def run(size):
        n = int(size.reshape(-1)[0])
        phase = 2 * math.pi * torch.arange(n, dtype=torch.float64) / (n if periodic else n - 1)
        w = a0 - a1 * torch.cos(phase) + a2 * torch.cos(2 * phase)
        return w.to(dtype)

    return run
