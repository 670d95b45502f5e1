"""Fine-tuning's losses: cross-entropy on labels, distillation (matching a student's
outputs to its teacher's, by the metric the run is judged by: :func:`distiller`), and the
two mixed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.train.graph_module import torch_outputs

__all__ = ["distiller", "label_loss", "mixed", "teacher_loss"]


def distiller(
    soft: torch.Tensor, temperature: float, kind: str | None = None
) -> tuple[Callable, Callable]:
    """``(prepare, loss)``: ``prepare(teacher_rows)`` once, then ``loss(output, prepared)``
    per minibatch. ``kind`` is the metric the run is judged by
    (:mod:`hwcc.data.metrics`): ``top1`` distils the classes on axis 1, ``per-step`` those
    on the last axis (at every step), ``binary`` one probability per element, anything
    else matches the outputs (squared error). None reads it off the teacher: classes on
    the last axis of a ``[N, steps, classes]`` output, on axis 1 of ``[N, classes]``,
    probabilities in [0, 1] elementwise, else squared error. Outputs that already are
    probabilities (a softmax) are distilled through their logarithm, the logits up to a
    constant, so the temperature softens them as it does logits."""
    if kind is None:
        if soft.ndim >= 3 and soft.shape[-1] > 1:
            kind = "per-step"
        elif soft.ndim >= 2 and soft.shape[1] > 1:
            kind = "top1"
        elif len(soft) and float(soft.min()) >= 0.0 and float(soft.max()) <= 1.0:
            kind = "binary"
    if kind in ("top1", "per-step") and soft.ndim >= 2:
        axis = 1 if kind == "top1" else -1
        probs = bool(soft.min() >= 0) and bool(
            torch.allclose(soft.sum(axis), torch.ones(()), atol=1e-3)
        )
        logits = (lambda t: torch.log(t.clamp_min(1e-12))) if probs else (lambda t: t)

        def kl(out: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
            log_q = F.log_softmax(logits(out.reshape(log_p.shape)) / temperature, dim=axis)
            div = F.kl_div(log_q, log_p, reduction="sum", log_target=True)
            rows = log_p.numel() // log_p.shape[axis]  # a distribution per step, per sample
            return div / rows * temperature**2

        return (lambda t: F.log_softmax(logits(t) / temperature, dim=axis)), kl
    if kind == "binary" and len(soft) and float(soft.min()) >= 0 and float(soft.max()) <= 1:

        def bernoulli(out: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            q = out.reshape(p.shape).clamp(1e-6, 1 - 1e-6)
            kl = torch.xlogy(p, p) - p * torch.log(q)
            kl = kl + torch.xlogy(1 - p, 1 - p) - (1 - p) * torch.log1p(-q)
            return kl.mean()

        return (lambda t: t), bernoulli
    return (lambda t: t), lambda out, t: F.mse_loss(out.reshape(t.shape), t)


def mixed(on_labels: Callable | None, on_teacher: Callable | None, alpha: float) -> Callable:
    """One loss from the labels' and the teacher's (either may be None: absent)."""
    if on_labels is None:
        return on_teacher
    if on_teacher is None:
        return on_labels
    return lambda out, at: (1.0 - alpha) * on_labels(out, at) + alpha * on_teacher(out, at)


def label_loss(labels, n: int) -> Callable:
    """``loss(output, sample_index) -> scalar``: cross-entropy against the labels."""
    target = torch.from_numpy(np.asarray(labels).astype(np.int64))
    if len(target) != n:
        raise HwccError(f"{len(target)} labels for {n} samples", "give one label per sample")
    return lambda out, idx: F.cross_entropy(out, target.index_select(0, idx))


def teacher_loss(teacher, feeds, n: int, temperature: float, distill: str | None) -> Callable:
    """``loss(output, sample_index) -> scalar``: distillation from the teacher."""
    if isinstance(teacher, Graph):
        teacher = torch_outputs(teacher, {k: v.numpy() for k, v in feeds.items()})[0]
    soft = torch.from_numpy(np.asarray(teacher, dtype=np.float32))
    if len(soft) != n:
        raise HwccError(
            f"teacher outputs for {len(soft)} samples, inputs have {n}",
            "give the teacher's outputs for the same samples, in the same order",
        )
    prepare, distil = distiller(soft, temperature, distill)
    target = prepare(soft)
    return lambda out, idx: distil(out, target.index_select(0, idx))
