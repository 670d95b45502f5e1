"""The loss ops exported training graphs end in: NegativeLogLikelihoodLoss and
SoftmaxCrossEntropyLoss.

Both take scores ``[N, C, d1, ...]`` and class indices ``[N, d1, ...]``; targets equal
to ``ignore_index`` count for nothing, neither in the sum nor in the mean's weight, and
per-class weights scale each target's loss (the mean is then over the weights).
"""

from __future__ import annotations

import torch

from hwcc.ir import Node
from hwcc.train.ops.registry import BuildContext, OpFn, register, reject

_REDUCTIONS = ("mean", "sum", "none")


def _nll(node: Node) -> OpFn:
    reduction = node.attr("reduction", "mean")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    if reduction not in _REDUCTIONS:
        raise reject(node, f"reduction {reduction!r} is unknown", "use mean, sum or none")
    ignore = node.attr("ignore_index")

    def run(logp, target, weight=None):
        target = target.to(torch.int64)
        valid = torch.ones_like(target, dtype=torch.bool) if ignore is None else target != ignore
        safe = torch.where(valid, target, 0)
        picked = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        loss = torch.where(valid, picked, torch.zeros((), dtype=logp.dtype))
        w = None
        if weight is not None:
            w = weight[safe.clamp(0, weight.shape[0] - 1)] * valid
        elif ignore is not None:
            w = valid.to(logp.dtype)
        if w is not None:
            loss = loss * w
            if reduction == "mean":
                return loss.sum() / w.sum()
        if reduction == "mean":
            return loss.mean()
        return loss.sum() if reduction == "sum" else loss

    return run


@register("NegativeLogLikelihoodLoss")
def _negative_log_likelihood(node: Node, ctx: BuildContext) -> OpFn:
    return _nll(node)


@register("SoftmaxCrossEntropyLoss", outputs=2)
def _softmax_cross_entropy(node: Node, ctx: BuildContext) -> OpFn:
    nll = _nll(node)

    def run(scores, target, weight=None):
        logp = torch.log_softmax(scores, 1)
        return nll(logp, target, weight), logp

    return run
