"""Layers shared by several zoo definitions that need a specific ONNX spelling."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _LrnFunction(torch.autograd.Function):
    """Local response normalisation that exports as the single ONNX ``LRN`` op.

    torch has no ONNX symbolic for ``local_response_norm``, so the TorchScript exporter
    would trace its decomposition (padding, average pooling, ``If`` on the rank).
    """

    @staticmethod
    def forward(ctx, x, size: int, alpha: float, beta: float, k: float):
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size: int, alpha: float, beta: float, k: float):
        # Both torch and ONNX divide alpha by size: x / (k + alpha/size * sum x^2)^beta.
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.Module):
    """Cross-channel LRN (Krizhevsky et al. 2012), exported as ONNX ``LRN``.

    Args:
        size: channels summed over (n).
        alpha: scale (divided by ``size``, as in torch and ONNX).
        beta: exponent.
        k: additive bias.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return _LrnFunction.apply(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
