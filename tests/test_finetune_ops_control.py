"""The torch executor's control flow (If, Loop, Scan) against onnxruntime: hand-built
graphs whose bodies read outer tensors and hold weights of their own, gradients into a
branch's weight and its write-back into the branch, a refused op inside a branch named,
and the silero voice-activity detector (whose If nodes branch on the sample rate).

Torch runs on one thread (the ``one_thread`` fixture in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwcc.errors import HwccError
from hwcc.ir import onnx_io
from hwcc.ir.verify import run_onnx
from hwcc.train.graph_module import to_torch, write_back

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

RTOL, ATOL = 1e-5, 1e-6
N = helper.make_node
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _info(name, elem, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "case", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return onnx_io.from_proto(m)


def _same(graph, feeds):
    ref = run_onnx(graph, feeds)
    out = to_torch(graph)(**feeds)
    assert len(out) == len(ref)
    for o, r in zip(out, ref):
        o = o.detach().numpy()
        assert o.shape == r.shape and o.dtype == r.dtype
        np.testing.assert_allclose(o, r, rtol=RTOL, atol=ATOL)


def _if_graph(then_op="MatMul"):
    """y = If(sum(x) > 0): x @ W (W in the branch) + bias (outer) | x * scale (outer)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    then = helper.make_graph(
        [N(then_op, ["x", "W"], ["xw"], name="branch_matmul"), N("Add", ["xw", "bias"], ["t"])],
        "then",
        [],
        [_info("t", F)],
        [w],
    )
    other = helper.make_graph(
        [N("Mul", ["x", "scale"], ["e"]), N("ReduceSum", ["e", "axes"], ["s"], keepdims=1)],
        "else",
        [],
        [_info("s", F)],
    )
    nodes = [
        N("ReduceSum", ["x"], ["total"], keepdims=0),
        N("Greater", ["total", "zero"], ["cond"]),
        N("If", ["cond"], ["y"], name="choose", then_branch=then, else_branch=other),
    ]
    inits = [
        numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "bias"),
        numpy_helper.from_array(np.array([1, 2, 3, 4], np.float32), "scale"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
    ]
    return _model(nodes, [_info("x", F, [2, 4])], [_info("y", F)], inits)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["then", "else"])
def test_if_runs_the_branch_its_condition_picks(sign):
    x = sign * np.abs(np.random.default_rng(1).standard_normal((2, 4))).astype(np.float32)
    _same(_if_graph(), {"x": x})


def test_gradients_reach_a_branch_weight_and_are_written_back():
    graph = _if_graph()
    module = to_torch(graph)
    branch = [p for n, p in module.named_parameters() if n.startswith("body_")]
    assert len(branch) == 1  # the branch's W; bias is the outer module's
    x = torch.ones(2, 4)
    (y,) = module(x)
    y.sum().backward()
    assert branch[0].grad is not None and bool(branch[0].grad.abs().sum() > 0)
    with torch.no_grad():
        branch[0].add_(1.0)
    out = write_back(module, graph)
    then = out.node("choose").attr("then_branch").proto.g
    new = numpy_helper.to_array(then.initializer[0])
    old = numpy_helper.to_array(graph.node("choose").attr("then_branch").proto.g.initializer[0])
    np.testing.assert_allclose(new, old + 1.0)
    np.testing.assert_allclose(run_onnx(out, {"x": x.numpy()})[0], module(x)[0].detach().numpy())


def test_an_op_it_cannot_run_inside_a_branch_is_refused_with_its_node():
    with pytest.raises(HwccError, match=r"then_branch of node 'choose'.*branch_matmul"):
        to_torch(_if_graph(then_op="NoSuchOp"))


def test_loop_carries_values_whose_shape_grows_and_stacks_scan_outputs():
    """for i < M while acc sum < limit: acc += x * i; seen = concat(seen, i); scan acc."""
    body = helper.make_graph(
        [
            N("Cast", ["i"], ["fi"], to=F),
            N("Mul", ["x", "fi"], ["xi"]),
            N("Add", ["acc", "xi"], ["acc_out"]),
            N("Reshape", ["i", "one"], ["i1"]),
            N("Concat", ["seen", "i1"], ["seen_out"], axis=0),
            N("ReduceSum", ["acc_out"], ["total"], keepdims=0),
            N("Less", ["total", "limit"], ["go"]),
            N("Identity", ["acc_out"], ["scan"]),
        ],
        "body",
        [_info("i", I64, []), _info("c", B, []), _info("acc", F), _info("seen", I64)],
        [_info("go", B, []), _info("acc_out", F), _info("seen_out", I64), _info("scan", F)],
    )
    nodes = [
        N("Loop", ["M", "", "acc0", "seen0"], ["acc", "seen", "scans"], body=body, name="loop")
    ]
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array(40.0, np.float32), "limit"),
        numpy_helper.from_array(np.zeros(0, np.int64), "seen0"),
    ]
    graph = _model(
        nodes,
        [_info("M", I64, []), _info("x", F, [3]), _info("acc0", F, [3])],
        [_info("acc", F), _info("seen", I64), _info("scans", F)],
        inits,
    )
    x = np.array([1.0, 2.0, 0.5], np.float32)
    for trips in (0, 3, 10):  # none, all trips, stopped by the condition
        _same(graph, {"M": np.array(trips, np.int64), "x": x, "acc0": np.zeros(3, np.float32)})


def test_scan_runs_its_body_over_both_directions():
    body = helper.make_graph(
        [N("Add", ["s", "xt"], ["s_out"]), N("Mul", ["s_out", "w"], ["y"])],
        "body",
        [_info("s", F, [2]), _info("xt", F, [2])],
        [_info("s_out", F, [2]), _info("y", F, [2])],
    )
    scan = N(
        "Scan",
        ["s0", "x"],
        ["s", "ys"],
        body=body,
        num_scan_inputs=1,
        scan_input_directions=[1],
        scan_output_axes=[1],
    )
    w = numpy_helper.from_array(np.array([0.5, -1.0], np.float32), "w")
    graph = _model(
        [scan],
        [_info("s0", F, [2]), _info("x", F, [5, 2])],
        [_info("s", F), _info("ys", F)],
        [w],
    )
    rng = np.random.default_rng(2)
    _same(graph, {"s0": np.ones(2, np.float32), "x": rng.standard_normal((5, 2)).astype("f4")})


@pytest.mark.slow
def test_silero_vad_op15_matches_onnxruntime():
    practice = pytest.importorskip("bench.practice.fetch")
    from bench.practice.inputs import generate, session_feeds
    from bench.practice.models import get

    spec = get("silero_op15")
    path = practice.fetch(spec)
    graph = onnx_io.load(path, allow_dynamic=True)
    assert any(n.op_type == "If" for n in graph.nodes)
    module = to_torch(graph).eval()
    data = generate(spec, 3 * spec.shapes[spec.main_input][0])
    for feed in session_feeds(spec, data):
        ref = run_onnx(graph, feed)
        with torch.no_grad():
            out = module(**feed)
        for o, r in zip(out, ref):
            np.testing.assert_allclose(o.numpy(), r, rtol=1e-4, atol=1e-5)


def test_scan_8_runs_each_batch_entry():
    body = helper.make_graph(
        [N("Add", ["s", "xt"], ["s_out"]), N("Identity", ["s_out"], ["y"])],
        "body",
        [_info("s", F, [2]), _info("xt", F, [2])],
        [_info("s_out", F, [2]), _info("y", F, [2])],
    )
    scan = N("Scan", ["", "s0", "x"], ["s", "ys"], body=body, num_scan_inputs=1, directions=[1])
    graph = _model(
        [scan],
        [_info("s0", F, [3, 2]), _info("x", F, [3, 4, 2])],
        [_info("s", F), _info("ys", F)],
        opset=8,
    )
    rng = np.random.default_rng(3)
    _same(
        graph,
        {"s0": np.zeros((3, 2), np.float32), "x": rng.standard_normal((3, 4, 2)).astype("f4")},
    )
