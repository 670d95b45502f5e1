"""finetune's torch executor against onnxruntime on the ops of
hwcc/train/ops/recurrent_ops.py: LSTM, GRU and RNN, one-node graphs with W, R and B as
initializers, each op × direction × layout, with and without initial states, every
output; GRU with both ``linear_before_reset`` values; LSTM peepholes; ragged
``sequence_lens``; a gradient reaching W and R; and the attributes the builders refuse.

Layout 1 (batch first) is compared with onnxruntime's layout 0 on the same data,
transposed: onnxruntime's CPU kernels refuse layout 1 ("Batchwise recurrent operations
(layout == 1) are not supported")."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwcc.errors import HwccError
from hwcc.ir import Graph, onnx_io
from hwcc.ir.verify import run_onnx
from hwcc.train.graph_module import to_torch

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

RTOL, ATOL = 1e-4, 1e-5
SEQ, BATCH, INPUT, HIDDEN = 5, 3, 4, 6
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
OUTS = {"LSTM": ["y", "y_h", "y_c"], "GRU": ["y", "y_h"], "RNN": ["y", "y_h"]}
DIRECTIONS = ["forward", "reverse", "bidirectional"]


def _r(*shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 0.5).astype(np.float32)


def _graph(op, feeds: dict, inits: dict, outputs: list[str], **attrs) -> Graph:
    """A one-node model: inputs X, W, R, B, sequence_lens, initial_h, initial_c, P in
    ONNX's order, each present when ``feeds`` or ``inits`` has it."""
    order = ["x", "w", "r", "b", "lens", "h0", "c0", "p"]
    names = [n if n in feeds or n in inits else "" for n in order]
    while names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, outputs, hidden_size=HIDDEN, **attrs)
    g = helper.make_graph(
        [node],
        op.lower(),
        [
            helper.make_tensor_value_info(
                n, TensorProto.INT32 if n == "lens" else TensorProto.FLOAT, list(v.shape)
            )
            for n, v in feeds.items()
        ],
        [helper.make_empty_tensor_value_info(n) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    return onnx_io.from_proto(model)


def _data(op, direction, initial: bool, peephole=False, seed=0):
    """(feeds, initializers) in layout 0."""
    d, g = 2 if direction == "bidirectional" else 1, GATES[op]
    inits = {
        "w": _r(d, g * HIDDEN, INPUT, seed=seed + 1),
        "r": _r(d, g * HIDDEN, HIDDEN, seed=seed + 2),
        "b": _r(d, 2 * g * HIDDEN, seed=seed + 3),
    }
    feeds = {"x": _r(SEQ, BATCH, INPUT, seed=seed)}
    if initial:
        feeds["h0"] = _r(d, BATCH, HIDDEN, seed=seed + 4)
        if op == "LSTM":
            feeds["c0"] = _r(d, BATCH, HIDDEN, seed=seed + 5)
    if peephole:
        inits["p"] = _r(d, 3 * HIDDEN, seed=seed + 6)
    return feeds, inits


def _batch_first(feeds: dict) -> dict:
    out = dict(feeds)
    out["x"] = feeds["x"].transpose(1, 0, 2)
    for n in ("h0", "c0"):
        if n in feeds:
            out[n] = feeds[n].transpose(1, 0, 2)
    return out


def _to_layout1(name: str, ref: np.ndarray) -> np.ndarray:
    """An output of layout 0 as layout 1 writes it."""
    return ref.transpose(2, 0, 1, 3) if name == "y" else ref.transpose(1, 0, 2)


def _check(op, direction, layout, feeds, inits, **attrs):
    outputs = OUTS[op]
    ref = run_onnx(_graph(op, feeds, inits, outputs, direction=direction, **attrs), feeds)
    if layout == 1:
        ref = [_to_layout1(n, v) for n, v in zip(outputs, ref)]
        feeds = _batch_first(feeds)
    graph = _graph(op, feeds, inits, outputs, direction=direction, layout=layout, **attrs)
    out = to_torch(graph)(**feeds)
    assert len(out) == len(outputs)
    for name, o, want in zip(outputs, out, ref):
        got = o.detach().numpy()
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize(
    "op,direction,layout,initial",
    list(itertools.product(["LSTM", "GRU", "RNN"], DIRECTIONS, [0, 1], [False, True])),
)
def test_recurrent_ops_match_onnxruntime(op, direction, layout, initial):
    feeds, inits = _data(op, direction, initial)
    _check(op, direction, layout, feeds, inits)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("layout", [0, 1])
def test_gru_linear_before_reset_matches_onnxruntime(direction, layout):
    feeds, inits = _data("GRU", direction, True, seed=10)
    _check("GRU", direction, layout, feeds, inits, linear_before_reset=1)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_lstm_peepholes_match_onnxruntime(direction):
    feeds, inits = _data("LSTM", direction, True, peephole=True, seed=20)
    _check("LSTM", direction, 0, feeds, inits)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("lens", [[5, 5, 5], [5, 2, 3]])
def test_sequence_lens_match_onnxruntime(op, direction, lens):
    """Full lengths and ragged ones: Y is zero past each sequence's end, Y_h its last
    valid state, and a reverse direction starts at that sequence's last valid step."""
    feeds, inits = _data(op, direction, True, seed=30)
    feeds["lens"] = np.array(lens, dtype=np.int32)
    _check(op, direction, 0, feeds, inits)


def test_gradient_reaches_w_r_and_b():
    feeds, inits = _data("LSTM", "bidirectional", True)
    module = to_torch(_graph("LSTM", feeds, inits, OUTS["LSTM"], direction="bidirectional"))
    params = module.onnx_parameters
    assert {"w", "r", "b"} <= set(params)
    y, _, _ = module(**feeds)
    (y**2).sum().backward()
    for name in ("w", "r", "b"):
        grad = params[name].grad
        assert grad is not None and grad.shape == params[name].shape, name
        assert float(grad.abs().sum()) > 0, name


@pytest.mark.parametrize(
    "op,attrs,match",
    [
        ("LSTM", {"activations": ["Relu", "Tanh", "Tanh"]}, "activations"),
        ("GRU", {"activations": ["Sigmoid", "Relu"]}, "activations"),
        ("RNN", {"activations": ["Sigmoid"]}, "activations"),
        ("RNN", {"activations": ["Tanh"], "activation_alpha": [1.0]}, "activation_alpha"),
        ("GRU", {"activation_beta": [1.0, 1.0]}, "activation_beta"),
        ("LSTM", {"clip": 3.0}, "clip"),
        ("GRU", {"clip": 3.0}, "clip"),
        ("LSTM", {"input_forget": 1}, "input_forget"),
        ("RNN", {"direction": "sideways"}, "direction"),
    ],
)
def test_unsupported_attributes_are_refused(op, attrs, match):
    feeds, inits = _data(op, "forward", False)
    attrs.setdefault("direction", "forward")
    graph = _graph(op, feeds, inits, OUTS[op], **attrs)
    with pytest.raises(HwccError, match=match) as err:
        to_torch(graph)
    assert err.value.hint


def test_default_activations_spelled_out_are_accepted():
    feeds, inits = _data("GRU", "bidirectional", False)
    acts = ["Sigmoid", "Tanh"] * 2
    _check("GRU", "bidirectional", 0, feeds, inits, activations=acts)
