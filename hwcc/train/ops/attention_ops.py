"""Attention (opset 23), RotaryEmbedding and LinearAttention: the fused transformer ops.

Attention takes Q, K and V as ``[batch, heads, seq, head]`` or, with ``q_num_heads`` and
``kv_num_heads``, as ``[batch, seq, hidden]``; it appends K and V to a cache
(``past_key``/``past_value`` -> ``present_key``/``present_value``), repeats the key and
value heads for grouped queries, and masks with a boolean or additive mask, causally
(aligned to the bottom right, after the cache) or both. A query row every key of which
is masked attends to nothing (zeros), as ONNX's reference does. ``nonpad_kv_seqlen``
(an external cache's valid lengths) and sliding windows mask too. The optional fourth
output is the product QK^T at the stage ``qk_matmul_output_mode`` names.

LinearAttention runs its recurrence step by step in float32, as ONNX's reference does:
the state decays (gated rules), is corrected towards the value (delta rules) and takes
the outer product of key and value; each query reads it.
"""

from __future__ import annotations

import math

import torch

from hwcc.ir import Node
from hwcc.train.ops.logic_ops import torch_dtype
from hwcc.train.ops.registry import BuildContext, OpFn, register, reject


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[batch, seq, hidden]`` -> ``[batch, heads, seq, hidden / heads]``."""
    b, s, h = x.shape
    return x.reshape(b, s, heads, h // heads).transpose(1, 2)


def _bias(mask, q_len: int, kv_len: int, offset, causal: bool, window, like: torch.Tensor):
    """The additive bias (0 or -inf where masked) from ``mask``, causality and the
    sliding ``window`` (left, right; -1 unbounded); a query at row ``i`` sits at key
    position ``i + offset`` (``offset`` an int or one per batch)."""
    neg = torch.tensor(-math.inf, dtype=like.dtype)
    zero = torch.zeros((), dtype=like.dtype)
    bias = torch.zeros((q_len, kv_len), dtype=like.dtype)
    if mask is not None:
        if mask.shape[-1] < kv_len:  # a short mask leaves the last keys masked
            pad = (0, kv_len - mask.shape[-1])
            mask = torch.nn.functional.pad(
                mask, pad, value=False if mask.dtype == torch.bool else -math.inf
            )
        if mask.dtype == torch.bool:
            mask = torch.where(mask, torch.zeros((), dtype=like.dtype), neg)
        bias = bias + mask.to(like.dtype)
    if isinstance(offset, torch.Tensor):
        offset = offset.reshape(-1, 1, 1, 1)
    diff = torch.arange(q_len).reshape(-1, 1) + offset - torch.arange(kv_len)
    allowed = diff >= 0 if causal else torch.ones_like(diff, dtype=torch.bool)
    left, right = window
    if left >= 0:
        allowed = allowed & (diff <= left)
    if right >= 0:
        allowed = allowed & (-diff <= right)
    return bias + torch.where(allowed, zero, neg)


@register("Attention", outputs=-1)
def _attention(node: Node, ctx: BuildContext) -> OpFn:
    window = int(node.attr("left_window_size", -1)), int(node.attr("right_window_size", -1))
    q_heads, kv_heads = node.attr("q_num_heads"), node.attr("kv_num_heads")
    scale_attr = node.attr("scale")
    causal = bool(node.attr("is_causal", 0))
    softcap = float(node.attr("softcap", 0.0))
    mode = int(node.attr("qk_matmul_output_mode", 0))
    precision = node.attr("softmax_precision")
    soft_dtype = torch_dtype(int(precision)) if precision is not None else None

    def run(q, k, v, mask=None, past_key=None, past_value=None, nonpad=None):
        three_d = q.dim() == 3
        if three_d:
            q, k, v = _heads(q, int(q_heads)), _heads(k, int(kv_heads)), _heads(v, int(kv_heads))
        scale = 1 / math.sqrt(q.shape[-1]) if scale_attr is None else float(scale_attr)
        root = torch.tensor(math.sqrt(scale), dtype=q.dtype)
        offset = 0 if nonpad is None else nonpad.reshape(-1) - q.shape[2]
        if past_key is not None:
            offset = past_key.shape[2]
            k, v = torch.cat([past_key, k], 2), torch.cat([past_value, v], 2)
        present_k, present_v = k, v
        if q.shape[1] != k.shape[1] and q.shape[1] % k.shape[1] == 0:
            reps = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(reps, 1), v.repeat_interleave(reps, 1)
        bias = _bias(mask, q.shape[2], k.shape[2], offset, causal, window, q)
        if nonpad is not None:  # keys past each batch's length are padding
            pad = torch.arange(k.shape[2]) >= nonpad.reshape(-1, 1, 1, 1)
            bias = bias.masked_fill(pad, -math.inf)
        qk = (q * root) @ (k * root).transpose(-1, -2)
        if softcap > 0:
            qk = torch.tanh(qk / softcap) * softcap
        with_bias = qk + bias
        exposed = with_bias if mode == 2 else qk
        scores = with_bias if soft_dtype is None else with_bias.to(soft_dtype)
        empty = torch.isneginf(bias.amax(-1, keepdim=True))
        probs = torch.softmax(scores.masked_fill(empty, 0.0), -1)
        probs = torch.where(empty, torch.zeros((), dtype=probs.dtype), probs)
        if mode == 3:
            exposed = probs
        y = probs.to(q.dtype) @ v
        if three_d:
            y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
        return y, present_k, present_v, exposed.to(q.dtype)

    return run


@register("RotaryEmbedding")
def _rotary(node: Node, ctx: BuildContext) -> OpFn:
    interleaved = bool(node.attr("interleaved", 0))
    dim_attr = int(node.attr("rotary_embedding_dim", 0))
    heads = int(node.attr("num_heads", 0))

    def run(x, cos, sin, positions=None):
        shape = x.shape
        x = x.transpose(1, 2) if x.dim() == 4 else x.reshape(*shape[:2], heads, -1)
        dim = dim_attr or x.shape[-1]
        turn, keep = x[..., :dim], x[..., dim:]
        if positions is not None:
            cos, sin = cos[positions], sin[positions]
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
        if interleaved:
            x1, x2 = turn[..., 0::2], turn[..., 1::2]
        else:
            x1, x2 = turn.chunk(2, -1)
        real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
        if interleaved:
            turned = torch.stack([real, imag], -1).reshape(turn.shape)
        else:
            turned = torch.cat([real, imag], -1)
        out = torch.cat([turned, keep], -1)
        return out.transpose(1, 2) if len(shape) == 4 else out.reshape(shape)

    return run


@register("LinearAttention", outputs=2)
def _linear_attention(node: Node, ctx: BuildContext) -> OpFn:
    rule = node.attr("update_rule", "gated_delta")
    rule = rule.decode() if isinstance(rule, bytes) else rule
    q_heads, kv_heads = int(node.attr("q_num_heads", 0)), int(node.attr("kv_num_heads", 0))
    if rule not in ("linear", "gated", "delta", "gated_delta") or not q_heads or not kv_heads:
        raise reject(node, f"update_rule={rule!r} with heads {q_heads}/{kv_heads}", "see ONNX")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    scale_attr = float(node.attr("scale", 0.0))

    def run(q, k, v, state=None, decay=None, beta=None):
        b, t, _ = q.shape
        q4, k4, v4 = (_heads(x.float(), h) for x, h in ((q, q_heads), (k, kv_heads), (v, kv_heads)))
        d_k, d_v = q4.shape[-1], v4.shape[-1]
        if decay is not None:  # one per head, or one per head and key channel
            per = 1 if decay.shape[-1] == kv_heads else d_k
            decay = decay.float().reshape(b, t, kv_heads, per).transpose(1, 2)
        if beta is not None:
            beta = beta.float().reshape(b, t, beta.shape[-1], 1).transpose(1, 2)
        out_state = q.dtype if state is None else state.dtype
        s = (
            q.new_zeros((b, kv_heads, d_k, d_v), dtype=torch.float32)
            if state is None
            else state.float()
        )
        scale = scale_attr or 1 / math.sqrt(d_k)
        ys = []
        for i in range(t):
            v_t = v4[:, :, i]
            if gated:
                s = s * torch.exp(decay[:, :, i]).unsqueeze(-1)
            if delta:
                v_t = beta[:, :, i] * (v_t - torch.einsum("bhdm,bhd->bhm", s, k4[:, :, i]))
            s = s + k4[:, :, i].unsqueeze(-1) * v_t.unsqueeze(-2)
            read = s.repeat_interleave(q_heads // kv_heads, 1)
            ys.append(scale * torch.einsum("bhd,bhdm->bhm", q4[:, :, i], read))
        y = torch.stack(ys, 2).transpose(1, 2).reshape(b, t, q_heads * d_v)
        return y.to(q.dtype), s.to(out_state)

    return run
