"""prune_channels on a recurrent layer whose state is fed by and returned to the caller
(the select and scatter sites of passes/lib/depgraph_recurrent.py), as torch exports a
streaming LSTM or GRU: h (and c) are graph inputs, Y_h (and Y_c) graph outputs.

The hidden units are prunable and the model keeps its interface: every graph input and
output keeps its shape, the states are read through a Gather of the kept units and
returned through a 0/1 MatMul that puts zeros in the removed ones. Removing silent units
(zero weights, zero state) changes no output, over several calls that carry the state
(onnxruntime, explicit tolerances); removing live units changes them; pruning again
composes with the first pruning; the torch executor runs the result; h and c stacked
into one state (silero-vad) prune together; and the cases the rules cannot follow still
keep the hidden size, with their reason."""

from __future__ import annotations

import numpy as np
import pytest
from channel_checks import ATOL, RTOL, check_runs, hidden_group, keep_but
from onnx import TensorProto, helper, numpy_helper

from hwcc.ir import Graph, onnx_io
from hwcc.ir.verify import random_feeds, run_onnx
from hwcc.passes.lib.channel_prune import prune_group
from hwcc.passes.lib.depgraph import analyze
from hwcc.passes.lib.depgraph_recurrent import GATES

SEQ, BATCH, FEAT, INPUT, HIDDEN, OUT = 5, 2, 3, 4, 6, 3
ZERO = (1, 4)  # the hidden units the equivalence tests silence


def _r(rng, *shape):
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


def _model(op: str, direction: str = "forward", route: str = "direct", zero=(), seed=0) -> Graph:
    """``x → MatMul → Relu → op(h, c) → Squeeze → MatMul → out``, the states returned.

    Args:
        route: how Y_h reaches the graph output ``hn``: ``direct``, ``identity``,
            ``transpose`` (perm 1,0,2: the units stay on the last axis), ``moved`` (perm
            2,0,1: the units on axis 0), ``sequence`` (Y is returned too, as ``y``).
        zero: hidden units whose W and R rows, R column and B entries are zero.
    """
    rng = np.random.default_rng(seed)
    dirs, g, h = (2 if direction == "bidirectional" else 1), GATES[op], HIDDEN
    inits = {
        "w_pre": _r(rng, FEAT, INPUT),
        "w": _r(rng, dirs, g * h, INPUT),
        "r": _r(rng, dirs, g * h, h),
        "b": _r(rng, dirs, 2 * g * h),
        "w_out": _r(rng, h, OUT),
        "axes": np.array([1], dtype=np.int64),
    }
    for j in zero:
        inits["w"][:, [j + k * h for k in range(g)]] = 0
        inits["r"][:, [j + k * h for k in range(g)]] = 0
        inits["r"][:, :, j] = 0
        inits["b"][:, [j + k * h for k in range(2 * g)]] = 0
    states = ["h", "c"] if op == "LSTM" else ["h"]
    returned = {"h": "y_h", "c": "y_c"}
    nodes = [
        helper.make_node("MatMul", ["x", "w_pre"], ["xm"], name="pre"),
        helper.make_node("Relu", ["xm"], ["xr"], name="relu"),
        helper.make_node(
            op,
            ["xr", "w", "r", "b", "", *states],
            ["y", *(returned[s] for s in states)],
            name="rnn",
            hidden_size=h,
            direction=direction,
        ),
        helper.make_node("ReduceSum", ["y", "axes"], ["ys"], name="sum", keepdims=0),
        helper.make_node("MatMul", ["ys", "w_out"], ["out"], name="head"),
    ]
    perm = {"transpose": [1, 0, 2], "moved": [2, 0, 1]}.get(route)
    if route == "identity":
        nodes.append(helper.make_node("Identity", ["y_h"], ["hn"], name="route"))
    elif perm:
        nodes.append(helper.make_node("Transpose", ["y_h"], ["hn"], name="route", perm=perm))
    hn = "y_h" if route in ("direct", "sequence") else "hn"
    outputs = ["out", hn] + (["y_c"] if op == "LSTM" else [])
    outputs += ["y"] if route == "sequence" else []
    state_shape = [dirs, BATCH, h]
    graph = helper.make_graph(
        nodes,
        f"streaming_{op.lower()}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [SEQ, BATCH, FEAT])]
        + [helper.make_tensor_value_info(s, TensorProto.FLOAT, state_shape) for s in states],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(v, n) for n, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    return onnx_io.from_proto(model)


def _feeds(graph: Graph, seed: int = 0, silent=ZERO) -> dict[str, np.ndarray]:
    """Random inputs and states, the states zero at the ``silent`` units (a stream starts
    from zeros, and a unit with zero weights keeps its state at zero)."""
    feeds = random_feeds(graph, seed)
    for name in graph.inputs:
        if name != "x":
            feeds[name][:, :, list(silent)] = 0
    return feeds


def _stream(graph: Graph, calls: int = 3) -> list[list[np.ndarray]]:
    """The outputs of ``calls`` calls, each fed the states the previous one returned."""
    feeds, runs = _feeds(graph), []
    states = [n for n in graph.inputs if n != "x"]
    for k in range(calls):
        outs = run_onnx(graph, {**feeds, "x": random_feeds(graph, 10 + k)["x"]})
        runs.append(outs)
        feeds.update(zip(states, outs[1 : 1 + len(states)]))
    return runs


def _interface(graph: Graph) -> dict[str, tuple]:
    return {n: tuple(graph.tensors[n].shape) for n in [*graph.inputs, *graph.outputs]}


CASES = [
    pytest.param(op, direction, route, id=f"{op}-{direction}-{route}")
    for op in ("LSTM", "GRU")
    for direction, route in [("forward", "direct"), ("bidirectional", "direct"),
                             ("forward", "identity"), ("bidirectional", "transpose")]
]  # fmt: skip


@pytest.mark.parametrize("op,direction,route", CASES)
def test_the_hidden_units_prune_behind_the_same_interface(op, direction, route):
    graph = _model(op, direction, route)
    hidden = hidden_group(graph)
    assert hidden.prunable, hidden.reason
    keep = keep_but(hidden, (0, 2))
    pruned = prune_group(graph, hidden, keep)
    check_runs(graph, pruned)
    assert _interface(pruned) == _interface(graph)
    rnn = pruned.node("rnn")
    assert rnn.attrs["hidden_size"] == HIDDEN - 2
    for i, name in zip((5, 6), ["h", "c"] if op == "LSTM" else ["h"]):
        pick = pruned.producer(rnn.inputs[i])
        assert (pick.op_type, pick.inputs[0], pick.attrs["axis"]) == ("Gather", name, 2)
        assert pruned.initializer(pick.inputs[1]).tolist() == keep
    for out in pruned.outputs[1:]:
        scatter = pruned.producer(out)
        assert scatter.op_type == "MatMul"
        p = pruned.initializer(scatter.inputs[1])
        np.testing.assert_array_equal(p, np.eye(HIDDEN, dtype=np.float32)[keep])


@pytest.mark.parametrize("op,direction,route", CASES)
def test_removing_silent_units_changes_no_output_over_a_stream(op, direction, route):
    graph = _model(op, direction, route, zero=ZERO)
    hidden = hidden_group(graph)
    pruned = prune_group(graph, hidden, keep_but(hidden, ZERO))
    for k, (want, got) in enumerate(zip(_stream(graph), _stream(pruned))):
        for name, w, o in zip(graph.outputs, want, got):
            assert o.shape == w.shape, name
            np.testing.assert_allclose(o, w, rtol=RTOL, atol=ATOL, err_msg=f"call {k}: {name}")


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_removing_live_units_changes_the_outputs(op):
    graph = _model(op)
    hidden = hidden_group(graph)
    pruned = prune_group(graph, hidden, keep_but(hidden, (0, 2)))
    feeds = _feeds(graph, silent=())
    want, got = run_onnx(graph, feeds), run_onnx(pruned, feeds)
    assert not np.allclose(got[0], want[0], rtol=RTOL, atol=ATOL)
    for w, o in zip(want[1:], got[1:]):  # the states: zeros where the units went
        assert o.shape == w.shape
        assert (o[..., [0, 2]] == 0).all() and (o[..., keep_but(hidden, (0, 2))] != 0).all()


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_pruning_again_composes_with_the_first_pruning(op):
    """The second pruning cuts the Gather's indices and the MatMul's rows: no new node,
    and the same function as removing both sets of units at once."""
    graph = _model(op, "bidirectional", zero=ZERO)
    hidden = hidden_group(graph)
    once = prune_group(graph, hidden, keep_but(hidden, ZERO[:1]))
    again = hidden_group(once)
    assert again.prunable, again.reason
    twice = prune_group(once, again, keep_but(again, (ZERO[1] - 1,)))
    assert len(twice.nodes) == len(once.nodes)
    both = prune_group(graph, hidden, keep_but(hidden, ZERO))
    assert twice.node("rnn").attrs["hidden_size"] == HIDDEN - len(ZERO)
    check_runs(graph, twice)
    for name, w, o in zip(graph.outputs, _stream(both), _stream(twice)):
        for a, b in zip(w, o):
            np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL, err_msg=name)
    for name, w, o in zip(graph.outputs, _stream(graph)[-1], _stream(twice)[-1]):
        np.testing.assert_allclose(o, w, rtol=RTOL, atol=ATOL, err_msg=name)


def test_units_moved_off_the_last_axis_of_the_returned_state_keep_the_hidden_size():
    hidden = hidden_group(_model("LSTM", route="moved"))
    assert not hidden.prunable
    assert "graph output 'hn', a returned state whose units are not on its last axis" in (
        hidden.reason
    )


def test_a_returned_sequence_is_no_state():
    """Y is the layer's result, not its state: it keeps its units."""
    hidden = hidden_group(_model("GRU", route="sequence"))
    assert not hidden.prunable and "they reach the graph output 'y'" in hidden.reason


def test_a_state_that_is_not_one_value_per_unit_keeps_the_hidden_size():
    graph = _model("GRU")
    graph.tensors["h"].shape = (1, BATCH, HIDDEN + 1)
    hidden = hidden_group(graph)
    assert not hidden.prunable and "initial_h 'h' that is not one value per unit" in hidden.reason


def test_a_weight_that_is_not_constant_keeps_the_hidden_size():
    graph = _model("LSTM")
    graph.inputs = list(graph.inputs) + ["r"]  # a caller may now feed R
    groups = analyze(graph).groups()
    assert all(g.producers != ("rnn",) for g in groups)
    pre = next(g for g in groups if g.producers == ("pre",))
    assert not pre.prunable and "weights are not constant" in pre.reason


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_finetune_executor_runs_the_pruned_model(op):
    torch = pytest.importorskip("torch")
    from hwcc.train.graph_module import to_torch

    graph = _model(op, "bidirectional")
    hidden = hidden_group(graph)
    pruned = prune_group(graph, hidden, keep_but(hidden, (1, 2)))
    feeds = _feeds(graph, silent=())
    want = run_onnx(pruned, feeds)
    module = to_torch(pruned)
    with torch.no_grad():
        got = module(**feeds)
    for name, o, w in zip(pruned.outputs, got, want):
        np.testing.assert_allclose(o.numpy(), w, rtol=1e-4, atol=1e-4, err_msg=name)
    # the 0/1 scatter matrices are the interface, not weights: fine-tuning leaves them
    scatter = {pruned.producer(o).inputs[1] for o in pruned.outputs[1:]}
    assert scatter and not scatter & set(module.onnx_parameters)
    assert {"w", "r", "b"} <= set(module.onnx_parameters)


def _stacked(zero=(), seed=0) -> Graph:
    """An LSTM whose h and c travel as one state ``[2, batch, hidden]``, as silero-vad
    writes it: ``Gather(state, 0)`` and ``Gather(state, 1)`` feed the layer, and its Y_h
    and Y_c are concatenated along axis 0 (not the units' axis) into the returned state."""
    rng = np.random.default_rng(seed)
    h, g = HIDDEN, GATES["LSTM"]
    inits = {
        "w": _r(rng, 1, g * h, FEAT),
        "r": _r(rng, 1, g * h, h),
        "b": _r(rng, 1, 2 * g * h),
        "w_out": _r(rng, h, OUT),
        "i0": np.array(0, np.int64),
        "i1": np.array(1, np.int64),
        "ax0": np.array([0], np.int64),
    }
    for j in zero:
        inits["w"][:, [j + k * h for k in range(g)]] = 0
        inits["r"][:, [j + k * h for k in range(g)]] = 0
        inits["r"][:, :, j] = 0
        inits["b"][:, [j + k * h for k in range(2 * g)]] = 0
    nodes = [
        helper.make_node("Gather", ["state", "i0"], ["h2"], axis=0),
        helper.make_node("Gather", ["state", "i1"], ["c2"], axis=0),
        helper.make_node("Unsqueeze", ["h2", "ax0"], ["h0"]),
        helper.make_node("Unsqueeze", ["c2", "ax0"], ["c0"]),
        helper.make_node(
            "LSTM", ["x", "w", "r", "b", "", "h0", "c0"], ["y", "y_h", "y_c"], name="rnn",
            hidden_size=h,
        ),
        helper.make_node("Concat", ["y_h", "y_c"], ["state_out"], axis=0),
        helper.make_node("MatMul", ["y_h", "w_out"], ["out"], name="head"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "stacked_state",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [SEQ, BATCH, FEAT]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, BATCH, h]),
        ],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("out", "state_out")],
        [numpy_helper.from_array(v, n) for n, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    return onnx_io.from_proto(model)


def test_h_and_c_stacked_into_one_state_prune_together():
    graph = _stacked(zero=ZERO)
    hidden = hidden_group(graph)
    assert hidden.prunable, hidden.reason
    pruned = prune_group(graph, hidden, keep_but(hidden, ZERO))
    check_runs(graph, pruned)
    assert _interface(pruned) == _interface(graph)
    assert pruned.producer("state_out").op_type == "MatMul"  # scattered back to full size
    for k, (want, got) in enumerate(zip(_stream(graph), _stream(pruned))):
        for name, w, o in zip(graph.outputs, want, got):
            np.testing.assert_allclose(o, w, rtol=RTOL, atol=ATOL, err_msg=f"call {k}: {name}")
    live = prune_group(graph, hidden, keep_but(hidden, (0, 2)))
    feeds = _feeds(graph)
    assert not np.allclose(run_onnx(live, feeds)[0], run_onnx(graph, feeds)[0], atol=ATOL)


def test_a_concat_along_another_axis_with_a_fixed_operand_keeps_the_hidden_size():
    graph = _stacked()  # Y_h stacked with a constant of its shape: its units cannot shrink
    graph.add_initializer("k", np.zeros((1, BATCH, HIDDEN), np.float32))
    graph.set_inputs(graph.producer("state_out"), ["y_h", "k"])
    hidden = hidden_group(graph)
    assert not hidden.prunable and "not their channel axis" in hidden.reason
