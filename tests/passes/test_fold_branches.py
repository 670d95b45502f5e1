"""fold_constants on an ``If`` whose condition is a constant (passes/lib/branches.py): the
branch it takes replaces it, nested ones too, and the model computes the same outputs
(onnxruntime, same inputs, explicit tolerances). It must not fire where the condition is
computed at run time, and it keeps an ``If`` it cannot inline, saying why."""

from __future__ import annotations

from collections import Counter

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from hwcc.ir import Graph, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import random_feeds, run_onnx
from hwcc.testing import op_counts

RTOL, ATOL = 1e-6, 1e-6
F = TensorProto.FLOAT


def fold(graph: Graph):
    return get_pass("fold_constants")(graph, PassContext(verify=False))


def _branch(name: str, nodes, outputs, inits=()) -> object:
    return helper.make_graph(
        nodes, name, [], [helper.make_tensor_value_info(o, F, None) for o in outputs], list(inits)
    )


def _model(nodes, inputs, outputs, inits=(), opset=17) -> Graph:
    graph = helper.make_graph(
        nodes,
        "branches",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(o, F, None) for o in outputs],
        list(inits),
    )
    return onnx_io.from_proto(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    )


def _shape_if(prefix: str, x: str, out: str, then_op: str = "Squeeze", else_op: str = "Identity"):
    """A test of a shape as exporters write one, ``If(Equal(Shape(x)[1], 1))``; by
    default torch's ``squeeze(1)`` on a dim that may not be 1 (Squeeze or Identity)."""
    p = prefix
    inits = [
        numpy_helper.from_array(np.array(1, np.int64), f"{p}_one"),
        numpy_helper.from_array(np.array([1], np.int64), f"{p}_axes"),
    ]
    args = {"Squeeze": [x, f"{p}_axes"]}
    then = _branch(
        f"{p}_then", [helper.make_node(then_op, args.get(then_op, [x]), [f"{p}_t"])], [f"{p}_t"]
    )
    other = _branch(f"{p}_else", [helper.make_node(else_op, [x], [f"{p}_e"])], [f"{p}_e"])
    nodes = [
        helper.make_node("Shape", [x], [f"{p}_shape"]),
        helper.make_node("Gather", [f"{p}_shape", f"{p}_one"], [f"{p}_dim"]),
        helper.make_node("Equal", [f"{p}_dim", f"{p}_one"], [f"{p}_cond"]),
        helper.make_node("If", [f"{p}_cond"], [out], then_branch=then, else_branch=other),
    ]
    return nodes, inits


def test_a_shape_test_inlines_the_branch_it_takes():
    for dim, op in ((1, "Neg"), (3, "Abs")):
        nodes, inits = _shape_if("a", "t", "s", "Neg", "Abs")
        nodes = [helper.make_node("Relu", ["x"], ["t"]), *nodes]
        nodes.append(helper.make_node("Sigmoid", ["s"], ["y"]))
        g = _model(nodes, {"x": (F, [2, dim, 4])}, ["y"], inits)
        result = fold(g)
        assert result.modified and result.details["inlined"] == 1
        assert op_counts(result.graph) == Counter({"Relu": 1, op: 1, "Sigmoid": 1})
        feeds = random_feeds(g, 0)
        (want,), (got,) = run_onnx(g, feeds), run_onnx(result.graph, feeds)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_nested_ifs_fold_once_the_outer_one_is_inlined():
    """The outer branch holds a second If whose condition reads a shape inside it (as
    a recurrent layer's wrapper does in silero-vad): it folds on the next sweep."""
    inner, inner_inits = _shape_if("in", "u", "v")
    body = _branch(
        "outer_then",
        [helper.make_node("Relu", ["x"], ["u"]), *inner, helper.make_node("Neg", ["v"], ["w"])],
        ["w"],
        inner_inits,
    )
    other = _branch("outer_else", [helper.make_node("Abs", ["x"], ["z"])], ["z"])
    nodes = [
        helper.make_node("If", ["go"], ["r"], then_branch=body, else_branch=other),
        helper.make_node("Sigmoid", ["r"], ["y"]),
    ]
    g = _model(nodes, {"x": (F, [2, 1, 4])}, ["y"], [numpy_helper.from_array(np.array(True), "go")])
    result = fold(g)
    assert result.details["inlined"] == 2
    assert op_counts(result.graph) == Counter({"Relu": 1, "Squeeze": 1, "Neg": 1, "Sigmoid": 1})
    feeds = random_feeds(g, 0)
    np.testing.assert_allclose(
        run_onnx(result.graph, feeds)[0], run_onnx(g, feeds)[0], rtol=RTOL, atol=ATOL
    )


def test_a_branch_that_returns_its_own_constant_folds_to_it():
    k = numpy_helper.from_array(np.array([1, -2, 3], np.float32), "k")
    then = _branch("then", [], ["k"], [k])  # hands back its initializer
    other = _branch("else", [helper.make_node("Neg", ["x"], ["n"])], ["n"])
    nodes = [
        helper.make_node("If", ["go"], ["r"], then_branch=then, else_branch=other),
        helper.make_node("Sigmoid", ["r"], ["y"]),
    ]
    g = _model(nodes, {"x": (F, [3])}, ["y"], [numpy_helper.from_array(np.array(True), "go")])
    result = fold(g)
    assert op_counts(result.graph) == Counter({"Sigmoid": 1})  # Identity(k) folded too
    np.testing.assert_array_equal(result.graph.initializer("r"), [1, -2, 3])
    feeds = random_feeds(g, 0)
    np.testing.assert_allclose(
        run_onnx(result.graph, feeds)[0], run_onnx(g, feeds)[0], rtol=RTOL, atol=ATOL
    )


def test_not_when_the_condition_depends_on_the_data():
    then = _branch("then", [helper.make_node("Neg", ["x"], ["n"])], ["n"])
    other = _branch("else", [helper.make_node("Abs", ["x"], ["a"])], ["a"])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other),
    ]
    g = _model(nodes, {"x": (F, [3])}, ["y"], [numpy_helper.from_array(np.float32(0), "zero")])
    result = fold(g)
    assert not result.modified
    assert op_counts(result.graph)["If"] == 1


def test_a_branch_whose_names_clash_with_the_graph_is_kept_with_the_reason():
    then = _branch("then", [helper.make_node("Neg", ["x"], ["t"])], ["t"])  # t exists outside
    other = _branch("else", [helper.make_node("Abs", ["x"], ["a"])], ["a"])
    nodes = [
        helper.make_node("Relu", ["x"], ["t"]),
        helper.make_node("If", ["go"], ["r"], then_branch=then, else_branch=other),
        helper.make_node("Add", ["r", "t"], ["y"]),
    ]
    g = _model(nodes, {"x": (F, [3])}, ["y"], [numpy_helper.from_array(np.array(True), "go")])
    result = fold(g)
    assert op_counts(result.graph)["If"] == 1
    (why,) = result.details["skipped"].values()
    assert "defines 't', a name the graph already has" in why
