"""Ops whose output size or content depends on the data: NonMaxSuppression, Unique and
TfIdfVectorizer (of integer token ids).

They pass no gradient (their outputs are indices, selected values and counts) and run on
the host, on the values of their inputs, one batch and class (NonMaxSuppression) or one
row (TfIdfVectorizer) at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from hwcc.ir import Node
from hwcc.train.ops.registry import BuildContext, OpFn, register, reject


def _corners(boxes: torch.Tensor, center: bool) -> torch.Tensor:
    """Boxes as ``[y1, x1, y2, x2]`` with ``y1 <= y2`` and ``x1 <= x2``."""
    if center:  # [x_center, y_center, width, height]
        x, y, w, h = boxes.unbind(-1)
        return torch.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], -1)
    y1, x1, y2, x2 = boxes.unbind(-1)
    return torch.stack(
        [
            torch.minimum(y1, y2),
            torch.minimum(x1, x2),
            torch.maximum(y1, y2),
            torch.maximum(x1, x2),
        ],
        -1,
    )


def _iou(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    top = torch.maximum(box[0], others[:, 0])
    left = torch.maximum(box[1], others[:, 1])
    bottom = torch.minimum(box[2], others[:, 2])
    right = torch.minimum(box[3], others[:, 3])
    inter = (bottom - top).clamp(min=0) * (right - left).clamp(min=0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


@register("NonMaxSuppression")
def _non_max_suppression(node: Node, ctx: BuildContext) -> OpFn:
    center = bool(node.attr("center_point_box", 0))

    def run(boxes, scores, limit=None, iou_limit=None, score_limit=None):
        most = 0 if limit is None else int(limit.reshape(-1)[0])
        iou_max = 0.0 if iou_limit is None else float(iou_limit.reshape(-1)[0])
        floor = None if score_limit is None else float(score_limit.reshape(-1)[0])
        picked: list[tuple[int, int, int]] = []
        with torch.no_grad():
            for b in range(boxes.shape[0]):
                corners = _corners(boxes[b].float(), center)
                for c in range(scores.shape[1]):
                    s = scores[b, c].float()
                    order = torch.argsort(s, descending=True, stable=True).tolist()
                    kept: list[int] = []
                    for i in order:
                        if len(kept) >= most or (floor is not None and float(s[i]) <= floor):
                            break
                        if not kept or float(_iou(corners[i], corners[kept]).max()) <= iou_max:
                            kept.append(i)
                    picked += [(b, c, i) for i in kept]
        return torch.tensor(picked, dtype=torch.int64).reshape(-1, 3)

    return run


@register("Unique", outputs=4)
def _unique(node: Node, ctx: BuildContext) -> OpFn:
    axis, ordered = node.attr("axis"), bool(node.attr("sorted", 1))

    def run(x):
        values = x.detach().cpu().numpy()
        a = None if axis is None else int(axis) % values.ndim
        y, first, inverse, counts = np.unique(
            values, return_index=True, return_inverse=True, return_counts=True, axis=a
        )
        inverse = inverse.reshape(-1)
        if not ordered:  # in the order of first occurrence
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            y = np.take(y, order, axis=0 if a is None else a)
            first, counts, inverse = first[order], counts[order], rank[inverse]
        out = [torch.from_numpy(np.ascontiguousarray(y)).to(x.dtype)]
        out += [torch.from_numpy(v.astype(np.int64)) for v in (first, inverse, counts)]
        return tuple(out)

    return run


@register("TfIdfVectorizer")
def _tfidf(node: Node, ctx: BuildContext) -> OpFn:
    lo, hi = int(node.attr("min_gram_length")), int(node.attr("max_gram_length"))
    skips = int(node.attr("max_skip_count", 0))
    mode = node.attr("mode", "TF")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pool = [int(v) for v in node.attr("pool_int64s") or []]
    if not pool:
        raise reject(node, "its pool is of strings", "give integer token ids (pool_int64s)")
    counts = [int(v) for v in node.attr("ngram_counts")] + [len(pool)]
    indexes = [int(v) for v in node.attr("ngram_indexes")]
    weights = [float(v) for v in node.attr("weights") or []]
    size = max(indexes) + 1
    grams: dict[tuple[int, ...], int] = {}  # n-gram -> output column
    gram_id = 0
    for n, (start, end) in enumerate(zip(counts, counts[1:]), 1):
        for at in range(start, end, n):
            if lo <= n <= hi:
                grams[tuple(pool[at : at + n])] = indexes[gram_id]
            gram_id += 1

    def row(tokens: list[int]) -> list[float]:
        freq = [0.0] * size
        first = lo
        for step in range(1, skips + 2):  # skip distance: 1 is adjacent tokens
            for i in range(len(tokens)):
                if i + step * (first - 1) >= len(tokens):
                    break
                for n in range(first, hi + 1):
                    last = i + step * (n - 1)
                    if last >= len(tokens):
                        break
                    column = grams.get(tuple(tokens[i : last + 1 : step]))
                    if column is not None:
                        freq[column] += 1
            first = max(first, 2)  # unigrams count once, not once per skip distance
        if mode == "IDF":
            return [(weights[j] if weights else 1.0) if f > 0 else 0.0 for j, f in enumerate(freq)]
        if mode == "TFIDF" and weights:
            return [w * f for w, f in zip(weights, freq)]
        return freq

    def run(x):
        rows = x.reshape(1, -1) if x.dim() == 1 else x
        out = torch.tensor([row(r) for r in rows.tolist()], dtype=torch.float32)
        return out.reshape(-1) if x.dim() == 1 else out

    return run
