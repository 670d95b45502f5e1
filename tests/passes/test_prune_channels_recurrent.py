"""prune_channels on the hidden size of LSTM, GRU and RNN nodes (the rule of
passes/lib/depgraph_recurrent.py): every prunable group of small one-layer models
(forward and bidirectional, with and without B, a constant initial state, peepholes, GRU's
linear_before_reset) prunes to a valid model with the expected shapes; removing hidden
units whose weights are all zero changes no output (onnxruntime, explicit tolerances); a
state fed by the caller is read through a selection of the kept units (the rest of that
case: test_prune_channels_state.py); l2 importance sums a
unit's rows over every gate; the pass API prunes an LSTM end to end; and the torch
fine-tune executor runs the pruned model.

Each model reads its input through a MatMul + Relu (so the recurrent layer's input
channels form a group too) and feeds its outputs to MatMul heads. Layout 1 (batch first)
is checked with the torch executor only: onnxruntime's CPU kernels refuse it ("Batchwise
recurrent operations (layout == 1) are not supported")."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from channel_checks import (
    ATOL,
    RTOL,
    assert_channels_removed,
    check_runs,
    hidden_group,
    keep_but,
    prune,
)
from onnx import TensorProto, helper, numpy_helper

from hwcc.ir import Graph, onnx_io
from hwcc.ir.verify import random_feeds, run_onnx
from hwcc.passes.lib.channel_prune import prune_group
from hwcc.passes.lib.depgraph import analyze
from hwcc.passes.lib.depgraph_recurrent import GATES
from hwcc.passes.lib.importance import scores

SEQ, BATCH, FEAT, INPUT, HIDDEN, OUT = 5, 2, 3, 4, 6, 3
ZERO = (1, 4)  # the hidden units the equivalence tests zero


def _r(rng, *shape):
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


def _model(
    op: str,
    direction: str = "forward",
    *,
    bias: bool = True,
    state: str | None = None,
    peephole: bool = False,
    layout: int = 0,
    head: str = "squeeze",
    zero: tuple[int, ...] = (),
    big: tuple[int, ...] = (),
    seed: int = 0,
    **attrs,
) -> Graph:
    """``x → MatMul(pre) → Relu → op → heads``.

    Args:
        state: ``None``, ``"const"`` (initial_h, and initial_c for LSTM, as initializers),
            ``"zeros"`` (zeros of the input's batch size, computed at run time) or
            ``"input"`` (as graph inputs, like a streaming model's state).
        head: how Y is read: ``squeeze`` (drop the direction axis, one direction),
            ``reduce`` (sum over the directions), ``reshape`` (Transpose(0,2,1,3) and
            Reshape to ``[S, B, dirs·H]``, as a bidirectional OCR recogniser does) or
            ``output`` (Y_h is a graph output). Y_h feeds a MatMul head (except with
            ``output``); an LSTM's Y_c is left unread.
        zero: hidden units whose W and R rows, R column, B entries and initial states are
            set to zero (their hidden state stays exactly 0).
        big: hidden units whose W rows are scaled by 10.
    """
    rng = np.random.default_rng(seed)
    dirs, g, h = (2 if direction == "bidirectional" else 1), GATES[op], HIDDEN
    inits = {
        "w_pre": _r(rng, FEAT, INPUT),
        "w": _r(rng, dirs, g * h, INPUT),
        "r": _r(rng, dirs, g * h, h),
    }
    if bias:
        inits["b"] = _r(rng, dirs, 2 * g * h)
    state_shape = [dirs, BATCH, h] if layout == 0 else [BATCH, dirs, h]
    states = ["h0", "c0"] if op == "LSTM" else ["h0"]
    if state == "const":
        inits.update({n: _r(rng, *state_shape) for n in states})
    if peephole:
        inits["p"] = _r(rng, dirs, 3 * h)
    for j in big:
        inits["w"][:, [j + k * h for k in range(g)]] *= 10
    for j in zero:
        rows = [j + k * h for k in range(g)]
        inits["w"][:, rows] = 0
        inits["r"][:, rows] = 0
        inits["r"][:, :, j] = 0
        if bias:
            inits["b"][:, [j + k * h for k in range(2 * g)]] = 0
        for n in states:
            if n in inits:
                inits[n][:, :, j] = 0

    x_shape = [SEQ, BATCH, FEAT] if layout == 0 else [BATCH, SEQ, FEAT]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    if state == "input":
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in states]
    names = ["xr", "w", "r", "b" if bias else "", "", "h0" if state else ""]
    if op == "LSTM":
        names += ["c0" if state else "", "p" if peephole else ""]
    while names[-1] == "":
        names.pop()
    outs = ["y", "y_h", "y_c"] if op == "LSTM" else ["y", "y_h"]
    nodes = [
        helper.make_node("MatMul", ["x", "w_pre"], ["xm"], name="pre"),
        helper.make_node("Relu", ["xm"], ["xr"], name="relu"),
    ]
    if state == "zeros":  # torch.zeros(dirs, x.size(1), H), as exporters write it
        inits.update(dirs=np.array([dirs]), hid=np.array([h]), one=np.array([1]))
        nodes += [
            helper.make_node("Shape", ["x"], ["x_shape"], name="shape"),
            helper.make_node("Gather", ["x_shape", "one"], ["batch"], name="batch"),
            helper.make_node("Concat", ["dirs", "batch", "hid"], ["state_shape"], axis=0),
        ]
        zeros = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
        nodes += [
            helper.make_node(
                "ConstantOfShape", ["state_shape"], [n], name=f"{n}_zeros", value=zeros
            )
            for n in states
        ]
    nodes += [
        helper.make_node(
            op, names, outs, name="rnn", hidden_size=h, direction=direction, **attrs,
            **({"layout": layout} if layout else {}),
        ),
    ]  # fmt: skip
    outputs = ["out"]
    dir_axis = 1 if layout == 0 else 2
    if head == "squeeze":
        inits["axes"] = np.array([dir_axis], dtype=np.int64)
        nodes.append(helper.make_node("Squeeze", ["y", "axes"], ["ys"], name="squeeze"))
    elif head == "reduce":
        inits["axes"] = np.array([dir_axis], dtype=np.int64)
        nodes.append(helper.make_node("ReduceSum", ["y", "axes"], ["ys"], name="sum", keepdims=0))
    elif head == "reshape":
        inits["shape"] = np.array([SEQ, BATCH, dirs * h], dtype=np.int64)
        nodes += [
            helper.make_node("Transpose", ["y"], ["yt"], name="transpose", perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", ["yt", "shape"], ["ys"], name="reshape"),
        ]
    width = dirs * h if head == "reshape" else h
    if head == "output":
        inits["w_out"] = _r(rng, h, OUT)
        nodes.append(helper.make_node("MatMul", ["y", "w_out"], ["out"], name="head"))
        outputs.append("y_h")
    else:
        inits["w_out"] = _r(rng, width, OUT)
        inits["w_h"] = _r(rng, h, OUT)
        nodes += [
            helper.make_node("MatMul", ["ys", "w_out"], ["out"], name="head"),
            helper.make_node("MatMul", ["y_h", "w_h"], ["out_h"], name="head_h"),
        ]
        outputs.append("out_h")
    graph = helper.make_graph(
        nodes,
        op.lower(),
        inputs,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(v, n) for n, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    return onnx_io.from_proto(model)


def _close(before: Graph, after: Graph, feeds=None) -> None:
    feeds = feeds or random_feeds(before, 0)
    for name, want, got in zip(before.outputs, run_onnx(before, feeds), run_onnx(after, feeds)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)


CASES = [
    pytest.param(op, direction, head, bias, state, id=f"{op}-{direction}-{head}-b{bias}-{state}")
    for op in GATES
    for direction, head in [("forward", "squeeze"), ("reverse", "squeeze"),
                            ("bidirectional", "reduce")]
    for bias, state in [(True, None), (False, None), (True, "const")]
]  # fmt: skip


@pytest.mark.parametrize("op,direction,head,bias,state", CASES)
def test_every_group_prunes_to_a_valid_model(op, direction, head, bias, state):
    graph = _model(op, direction, bias=bias, state=state, head=head)
    groups = [g for g in analyze(graph).groups() if g.prunable]
    assert {g.producers for g in groups} == {("pre",), ("rnn",)}
    for grp in groups:
        pruned = prune_group(graph, grp, keep_but(grp, (0, 2)))
        check_runs(graph, pruned)
        assert_channels_removed(graph, pruned, grp, 2)
    hidden = hidden_group(graph)
    assert set(hidden.consumers) == {"rnn", "head", "head_h"}
    pruned = prune_group(graph, hidden, keep_but(hidden, (0, 2)))
    rnn, g = pruned.node("rnn"), GATES[op]
    assert rnn.attrs["hidden_size"] == HIDDEN - 2
    dirs = 2 if direction == "bidirectional" else 1
    assert pruned.initializer("w").shape == (dirs, g * (HIDDEN - 2), INPUT)
    assert pruned.initializer("r").shape == (dirs, g * (HIDDEN - 2), HIDDEN - 2)
    if bias:
        assert pruned.initializer("b").shape == (dirs, 2 * g * (HIDDEN - 2))
    if state:
        assert pruned.initializer("h0").shape == (dirs, BATCH, HIDDEN - 2)


@pytest.mark.parametrize("op,direction,head,bias,state", CASES)
def test_removing_zero_units_changes_nothing(op, direction, head, bias, state):
    graph = _model(op, direction, bias=bias, state=state, head=head, zero=ZERO)
    hidden = hidden_group(graph)
    pruned = prune_group(graph, hidden, keep_but(hidden, ZERO))
    assert_channels_removed(graph, pruned, hidden, len(ZERO))
    _close(graph, pruned)


def test_kept_rows_are_the_units_rows_at_every_gate():
    """Unit j keeps rows j + g·H of W and R for each gate g, B's 2·G blocks, R's column j,
    the initial states' entry j and the peepholes' 3 blocks."""
    graph = _model("LSTM", "bidirectional", state="const", peephole=True, head="reduce")
    hidden, keep, h = hidden_group(graph), [0, 3, 5], HIDDEN
    pruned = prune_group(graph, hidden, keep)
    rows = lambda blocks: [j + k * h for k in range(blocks) for j in keep]  # noqa: E731
    np.testing.assert_array_equal(pruned.initializer("w"), graph.initializer("w")[:, rows(4)])
    r = graph.initializer("r")[:, rows(4)][:, :, keep]
    np.testing.assert_array_equal(pruned.initializer("r"), r)
    np.testing.assert_array_equal(pruned.initializer("b"), graph.initializer("b")[:, rows(8)])
    np.testing.assert_array_equal(pruned.initializer("p"), graph.initializer("p")[:, rows(3)])
    for n in ("h0", "c0"):
        np.testing.assert_array_equal(pruned.initializer(n), graph.initializer(n)[:, :, keep])
    check_runs(graph, pruned)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_peepholes_and_gru_linear_before_reset(direction):
    head = "squeeze" if direction == "forward" else "reduce"
    for op, kw in [("LSTM", {"peephole": True}), ("GRU", {"linear_before_reset": 1})]:
        graph = _model(op, direction, state="const", head=head, zero=ZERO, **kw)
        hidden = hidden_group(graph)
        assert hidden.prunable, hidden.reason
        pruned = prune_group(graph, hidden, keep_but(hidden, ZERO))
        check_runs(graph, pruned)
        _close(graph, pruned)


@pytest.mark.parametrize("op", list(GATES))
def test_zero_state_computed_at_run_time_is_omitted(op):
    """A ConstantOfShape of zeros sized from the input is the op's default state: the
    pruned layer drops that input and the shape computation behind it."""
    graph = _model(op, "bidirectional", state="zeros", head="reduce", zero=ZERO)
    hidden = hidden_group(graph)
    assert hidden.prunable, hidden.reason
    pruned = prune_group(graph, hidden, keep_but(hidden, ZERO))
    rnn = pruned.node("rnn")
    assert all(not t for t in rnn.inputs[5:])
    assert not {n.op_type for n in pruned.nodes} & {"ConstantOfShape", "Shape", "Gather", "Concat"}
    assert not {"dirs", "hid", "one"} & set(pruned.tensors)
    check_runs(graph, pruned)
    _close(graph, pruned)


def test_state_fed_by_the_caller_is_selected_to_the_kept_units():
    """silero-vad's LSTM: h and c are graph inputs. The hidden units go, each state read
    through a Gather of the kept units; the input channels can go too."""
    graph = _model("LSTM", state="input", zero=ZERO)
    hidden = hidden_group(graph)
    assert hidden.prunable, hidden.reason
    pruned = prune_group(graph, hidden, keep_but(hidden, ZERO))
    rnn = pruned.node("rnn")
    for i, name in ((5, "h0"), (6, "c0")):
        pick = pruned.producer(rnn.inputs[i])
        assert pick.op_type == "Gather" and pick.inputs[0] == name and pick.attrs["axis"] == 2
        assert pruned.initializer(pick.inputs[1]).tolist() == keep_but(hidden, ZERO)
    check_runs(graph, pruned)
    feeds = random_feeds(graph, 0)
    for n in ("h0", "c0"):
        feeds[n][:, :, list(ZERO)] = 0  # the zero units' state is 0, as the model keeps it
    _close(graph, pruned, feeds)
    pre = next(g for g in analyze(graph).groups() if g.producers == ("pre",))
    assert pre.prunable and pre.consumers == ("rnn",)


def test_state_output_keeps_the_hidden_size():
    graph = _model("GRU", head="output")
    hidden = hidden_group(graph)
    assert not hidden.prunable
    assert "graph output 'y_h'" in hidden.reason


def test_non_constant_weight_blocks_the_input_channels():
    graph = _model("RNN")
    graph.inputs = list(graph.inputs) + ["r"]  # a caller may now feed R
    a = analyze(graph)
    pre = next(g for g in a.groups() if g.producers == ("pre",))
    assert not pre.prunable and "weights are not constant" in pre.reason
    assert all(g.producers != ("rnn",) for g in a.groups())


@pytest.mark.parametrize("op", list(GATES))
def test_l2_sums_a_units_rows_over_every_gate(op):
    graph = _model(op, "bidirectional", head="reduce", zero=(2,), big=(3,))
    g, h = GATES[op], HIDDEN
    w, r = graph.initializer("w"), graph.initializer("r")
    hidden = hidden_group(graph)
    score = scores(hidden.analysis, [hidden], "l2")[hidden.id]
    assert score[2] == 0 and score.argmax() == 3 and (np.delete(score, 2) > 0).all()
    want = [
        np.sqrt(
            sum(
                float((m[:, j + k * h].astype(np.float64) ** 2).sum())
                for m in (w, r)
                for k in range(g)
            )
        )
        for j in range(h)
    ]
    np.testing.assert_allclose(score, want, rtol=1e-12)
    l1 = scores(hidden.analysis, [hidden], "l1")[hidden.id]
    assert l1[2] == 0 and l1.argmax() == 3


def test_prune_channels_pass_prunes_an_lstm_end_to_end():
    graph = _model("LSTM", "bidirectional", state="const", head="reduce", zero=ZERO)
    result = prune(graph, verify=False, group="rnn", k=len(ZERO))
    assert result.modified
    assert result.details["pruned"] == {"rnn": (HIDDEN, HIDDEN - len(ZERO))}
    assert result.graph.node("rnn").attrs["hidden_size"] == HIDDEN - len(ZERO)
    check_runs(graph, result.graph)
    _close(graph, result.graph)  # l2 picked the zero units
    by_activation = prune(graph, group="rnn", k=len(ZERO), criterion="activation",
                          data=random_feeds(graph, 1))  # fmt: skip
    _close(graph, by_activation.graph)  # the zero units never fire
    everything = prune(graph, ratio=0.5)
    assert set(everything.details["pruned"]) == {"pre", "rnn"}
    assert everything.graph.node("rnn").attrs["hidden_size"] == HIDDEN // 2
    check_runs(graph, everything.graph)


@pytest.mark.parametrize("op", list(GATES))
def test_finetune_executor_runs_the_pruned_model(op):
    torch = pytest.importorskip("torch")
    from hwcc.train.graph_module import to_torch

    graph = _model(op, "bidirectional", state="const", head="reduce")
    hidden = hidden_group(graph)
    pruned = prune_group(graph, hidden, keep_but(hidden, (1, 2)))
    feeds = random_feeds(graph, 0)
    want = run_onnx(pruned, feeds)
    with torch.no_grad():
        got = to_torch(pruned)(**feeds)
    for name, o, w in zip(pruned.outputs, got, want):
        np.testing.assert_allclose(o.numpy(), w, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("op", list(GATES))
def test_layout_1_prunes_with_the_batch_first_shapes(op):
    """Batch first: Y is [B, S, dirs, H], the states [B, dirs, H]. onnxruntime refuses
    layout 1, so the zero-unit equivalence is checked with the torch executor."""
    torch = pytest.importorskip("torch")
    from hwcc.train.graph_module import to_torch

    graph = _model(op, state="const", layout=1, zero=ZERO)
    hidden = hidden_group(graph)
    assert hidden.prunable, hidden.reason
    a = hidden.analysis
    assert a.layout["y"].axis == 3 and a.layout["y_h"].axis == 2
    pruned = prune_group(graph, hidden, keep_but(hidden, ZERO))
    assert_channels_removed(graph, pruned, hidden, len(ZERO))
    assert pruned.initializer("h0").shape == (BATCH, 1, HIDDEN - len(ZERO))
    onnx.checker.check_model(onnx_io.to_proto(pruned), full_check=True)
    feeds = random_feeds(graph, 0)
    with torch.no_grad():
        want, got = to_torch(graph)(**feeds), to_torch(pruned)(**feeds)
    for name, o, w in zip(graph.outputs, got, want):
        np.testing.assert_allclose(o.numpy(), w.numpy(), rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_bidirectional_through_transpose_and_reshape(op):
    """ddddocr's recogniser: Y [S, 2, B, H] → Transpose(0,2,1,3) → Reshape [S, B, 2H] →
    MatMul. Unit j is position j and H + j of the Reshape: the classifier loses both rows."""
    graph = _model(op, "bidirectional", head="reshape", zero=ZERO)
    hidden = hidden_group(graph)
    assert hidden.prunable, hidden.reason
    pruned = prune_group(graph, hidden, keep_but(hidden, ZERO))
    check_runs(graph, pruned)
    assert pruned.initializer("w_out").shape == (2 * (HIDDEN - len(ZERO)), OUT)
    _close(graph, pruned)
