"""Recurrent ops: LSTM, GRU and RNN in ONNX's own weight layouts, trainable W, R and B; and
CausalConvWithState, a depthwise causal convolution that carries its last inputs.

The recurrence is written out in torch: the input projection ``X W^T + Wb`` of every
time step in one matmul, then a loop over time with one matmul ``H R^T`` per step, so
gradients reach W, R and B (and the initial states) through plain autograd. Weights keep
ONNX's layouts (W ``[num_directions, gates*hidden, input]``, R ``[.., gates*hidden,
hidden]``, B ``[.., 2*gates*hidden]`` = ``[Wb, Rb]``) and gate orders (LSTM i, o, f, c;
GRU z, r, h), so training writes them back unchanged.

Supported: ``direction`` forward, reverse and bidirectional; ``layout`` 0 (time first)
and 1 (batch first); ``sequence_lens``, ragged ones included (past a sequence's length
its state is held and its Y is zero; a reverse direction starts at the sequence's last
valid step); ``initial_h``, ``initial_c``; LSTM peepholes ``P``; GRU's
``linear_before_reset`` 0 and 1. Refused by name: ``activations`` other than the
defaults, ``activation_alpha``, ``activation_beta``, ``clip`` and LSTM's
``input_forget``.
"""

from __future__ import annotations

import torch

from hwcc.ir import Node
from hwcc.train.ops.registry import BuildContext, OpFn, register, reject

# op -> (gates, default activations of one direction)
_SPEC = {
    "LSTM": (4, ("sigmoid", "tanh", "tanh")),
    "GRU": (3, ("sigmoid", "tanh")),
    "RNN": (1, ("tanh",)),
}
_DIRECTIONS = ("forward", "reverse", "bidirectional")


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _check(node: Node) -> tuple[str, int]:
    """The node's direction and layout, after refusing what the builders do not run."""
    direction = _text(node.attr("direction", "forward"))
    if direction not in _DIRECTIONS:
        raise reject(node, f"direction {direction!r}", f"use one of {', '.join(_DIRECTIONS)}")
    layout = int(node.attr("layout", 0))
    if layout not in (0, 1):
        raise reject(node, f"layout {layout}", "use layout 0 (time first) or 1 (batch first)")
    _, default = _SPEC[node.op_type]
    acts = node.attr("activations")
    if acts is not None:
        given = tuple(_text(a).lower() for a in acts)
        if given != default * (2 if direction == "bidirectional" else 1):
            raise reject(
                node,
                f"activations {list(given)} are not the defaults",
                f"only the default activations ({', '.join(default)}) are supported",
            )
    for attr in ("activation_alpha", "activation_beta", "clip"):
        if node.attr(attr) is not None:
            raise reject(
                node, f"attribute {attr!r} is set", f"remove {attr!r} (only its default runs)"
            )
    if node.op_type == "LSTM" and int(node.attr("input_forget", 0)):
        raise reject(node, "attribute 'input_forget' is 1", "use input_forget = 0")
    return direction, layout


def _lstm_cell(hidden: int, p):
    def step(g, h, c, r, rb):
        g = g + h @ r.t() + rb
        i, o, f, cand = g.split(hidden, -1)
        if p is not None:
            pi, po, pf = p.split(hidden, -1)
            i, f = i + pi * c, f + pf * c
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(cand)
        if p is not None:
            o = o + po * c
        return torch.sigmoid(o) * torch.tanh(c), c

    return step


def _gru_cell(hidden: int, before_reset: bool):
    def step(g, h, c, r, rb):
        gz, gr, gh = g.split(hidden, -1)
        rz, rr, rh = r.split(hidden, 0)
        bz, br, bh = rb.split(hidden, -1)
        z = torch.sigmoid(gz + h @ rz.t() + bz)
        reset = torch.sigmoid(gr + h @ rr.t() + br)
        if before_reset:
            cand = torch.tanh(gh + reset * (h @ rh.t() + bh))
        else:
            cand = torch.tanh(gh + (reset * h) @ rh.t() + bh)
        return (1 - z) * cand + z * h, c

    return step


def _rnn_cell(hidden: int):
    def step(g, h, c, r, rb):
        return torch.tanh(g + h @ r.t() + rb), c

    return step


def _run_direction(step, xs, w, r, b, h, c, mask, reverse: bool):
    """One direction over time-first ``xs`` [seq, batch, input]: (Y [seq, batch, hidden],
    last h, last c). ``mask`` [seq, batch, 1] marks the valid steps (None: all)."""
    gates = w.shape[0]
    wb, rb = (None, None) if b is None else (b[:gates], b[gates:])
    proj = xs @ w.t()
    if wb is not None:
        proj = proj + wb
    if rb is None:
        rb = torch.zeros(gates, dtype=xs.dtype, device=xs.device)
    order = range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0])
    ys: list = [None] * xs.shape[0]
    for t in order:
        h_new, c_new = step(proj[t], h, c, r, rb)
        if mask is None:
            h, c, ys[t] = h_new, c_new, h_new
        else:
            m = mask[t]
            h = torch.where(m, h_new, h)
            c = None if c is None else torch.where(m, c_new, c)
            ys[t] = torch.where(m, h_new, torch.zeros_like(h_new))
    return torch.stack(ys), h, c


def _build(node: Node, ctx: BuildContext) -> OpFn:
    op = node.op_type
    direction, layout = _check(node)
    dirs = ["forward"] if direction == "forward" else ["reverse"]
    if direction == "bidirectional":
        dirs = ["forward", "reverse"]
    hidden_attr = node.attr("hidden_size")
    before_reset = bool(int(node.attr("linear_before_reset", 0)))

    def run(x, w, r, b=None, lens=None, h0=None, c0=None, p=None):
        hidden = int(hidden_attr) if hidden_attr is not None else r.shape[-1]
        if op == "LSTM":
            cell = lambda d: _lstm_cell(hidden, None if p is None else p[d])  # noqa: E731
        elif op == "GRU":
            cell = lambda d: _gru_cell(hidden, before_reset)  # noqa: E731
        else:
            cell = lambda d: _rnn_cell(hidden)  # noqa: E731
        if layout == 1:  # batch first -> time first; states [batch, dirs, hidden] -> [dirs, ..]
            x = x.transpose(0, 1)
            h0 = None if h0 is None else h0.transpose(0, 1)
            c0 = None if c0 is None else c0.transpose(0, 1)
        seq, batch = x.shape[0], x.shape[1]
        zeros = x.new_zeros(batch, hidden)
        mask = None
        if lens is not None:
            steps = torch.arange(seq, device=x.device).unsqueeze(1)
            valid = steps < lens.to(x.device).reshape(1, -1).long()
            if not bool(valid.all()):
                mask = valid.unsqueeze(-1)
        ys, hs, cs = [], [], []
        for d, name in enumerate(dirs):
            h = zeros if h0 is None else h0[d]
            c = None if op != "LSTM" else zeros if c0 is None else c0[d]
            y, h, c = _run_direction(
                cell(d), x, w[d], r[d], None if b is None else b[d], h, c, mask, name == "reverse"
            )
            ys.append(y)
            hs.append(h)
            cs.append(c)
        y = torch.stack(ys, 1)  # [seq, dirs, batch, hidden]
        y_h = torch.stack(hs)  # [dirs, batch, hidden]
        y_c = torch.stack(cs) if op == "LSTM" else None
        if layout == 1:
            y = y.permute(2, 0, 1, 3)
            y_h = y_h.transpose(0, 1)
            y_c = None if y_c is None else y_c.transpose(0, 1)
        return (y, y_h, y_c) if op == "LSTM" else (y, y_h)

    return run


@register("LSTM", weights=(1, 2, 3), outputs=3)
def _lstm(node: Node, ctx: BuildContext) -> OpFn:
    return _build(node, ctx)


@register("GRU", "RNN", weights=(1, 2, 3), outputs=2)
def _gru_rnn(node: Node, ctx: BuildContext) -> OpFn:
    return _build(node, ctx)


@register("CausalConvWithState", weights=(1, 2), outputs=2)
def _causal_conv_with_state(node: Node, ctx: BuildContext) -> OpFn:
    activation = node.attr("activation", "none")
    activation = activation.decode() if isinstance(activation, bytes) else activation
    if activation not in ("none", "silu", "swish"):
        raise reject(node, f"activation {activation!r} is unknown", "use none, silu or swish")

    def run(x, w, b=None, past=None):
        k = w.shape[2]
        if past is None:
            past = x.new_zeros((x.shape[0], x.shape[1], k - 1))
        padded = torch.cat([past, x], 2)
        y = torch.nn.functional.conv1d(padded, w, b, groups=x.shape[1])
        if activation != "none":
            y = (y.float() * torch.sigmoid(y.float())).to(x.dtype)
        return y, padded[:, :, padded.shape[2] - (k - 1) :]

    return run
