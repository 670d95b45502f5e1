"""fuse_hard_activations: hard-sigmoid and hard-swish written as arithmetic become
HardSigmoid (and a Mul), checked in onnxruntime on the same inputs with explicit
tolerances, and the cases where it must not fire."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.testing import assert_equivalent, op_counts

RTOL, ATOL = 1e-6, 1e-6
NO_VERIFY = PassContext(verify=False)  # the tests compare outputs themselves, explicitly


def fuse(graph: Graph):
    return get_pass("fuse_hard_activations")(graph, NO_VERIFY)


def hard(
    kind="swish", *, add=3.0, lo=0.0, hi=6.0, div=6.0, by_mul=False, swap=False, opset=17
) -> Graph:
    """x -> Add(3) -> Clip(0, 6) [-> Mul(x)] -> Div(6) (or Mul(1/6)) -> y."""
    g = Graph("hard")
    g.opset_imports[""] = opset
    g.add_input("x", dtypes.FLOAT, (2, 3, 5, 5))
    used = {"three": add, **({"sixth": 1 / div} if by_mul else {"six": div})}
    used.update({"lo": lo, "hi": hi} if opset >= 11 else {})
    for name, value in used.items():
        g.add_initializer(name, np.asarray(value, np.float32))
    g.add_node("Add", ["three", "x"] if swap else ["x", "three"], ["a"], name="add")
    if opset < 11:
        g.add_node("Clip", ["a"], ["c"], {"min": lo, "max": hi}, name="clip")
    else:
        g.add_node("Clip", ["a", "lo", "hi"], ["c"], name="clip")
    t = "c"
    if kind == "swish":
        g.add_node("Mul", ["c", "x"] if swap else ["x", "c"], ["m"], name="mul")
        t = "m"
    if by_mul:
        g.add_node("Mul", ["sixth", t] if swap else [t, "sixth"], ["y"], name="div")
    else:
        g.add_node("Div", [t, "six"], ["y"], name="div")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def feeds():
    """Inputs across every piece of the curve: below −3, between, above 3."""
    return {"x": np.random.default_rng(0).uniform(-6, 6, (2, 3, 5, 5)).astype(np.float32)}


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("by_mul", [False, True])
@pytest.mark.parametrize("opset", [9, 13])
def test_hard_swish_becomes_x_times_hard_sigmoid(swap, by_mul, opset):
    g = hard("swish", by_mul=by_mul, swap=swap, opset=opset)
    result = fuse(g)
    assert result.details == {"hard_sigmoid": 0, "hard_swish": 1}
    assert op_counts(result.graph) == Counter({"HardSigmoid": 1, "Mul": 1})
    hs = result.graph.find("HardSigmoid")[0]
    assert hs.attrs["alpha"] == pytest.approx(1 / 6) and hs.attrs["beta"] == 0.5
    assert result.graph.outputs == ["y"] and not result.graph.initializers
    assert_equivalent(g, result.graph, feeds(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("by_mul", [False, True])
def test_hard_sigmoid_becomes_one_op(by_mul):
    g = hard("sigmoid", by_mul=by_mul)
    result = fuse(g)
    assert result.details == {"hard_sigmoid": 1, "hard_swish": 0}
    assert op_counts(result.graph) == Counter({"HardSigmoid": 1})
    assert_equivalent(g, result.graph, feeds(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "change", [{"add": 2.0}, {"hi": 5.0}, {"lo": -1.0}, {"div": 5.0}, {"div": 6.0, "add": 3.5}]
)
def test_not_when_a_constant_differs(change):
    g = hard("swish", **change)
    result = fuse(g)
    assert not result.modified and result.graph is g
    assert "no Clip computes a hard-sigmoid" in result.reason


def test_not_when_an_intermediate_is_read_elsewhere():
    g = hard("swish")
    g.outputs.append("c")
    assert not fuse(g).modified


def test_not_when_the_product_is_with_another_tensor():
    g = hard("swish")
    g.add_input("z", dtypes.FLOAT, (2, 3, 5, 5))
    g.set_input(g.node("mul"), 0, "z")
    assert not fuse(g).modified


def test_not_without_a_clip():
    g = Graph("none")
    g.add_input("x", dtypes.FLOAT, (1, 2))
    g.add_node("Relu", ["x"], ["y"])
    g.outputs.append("y")
    result = fuse(g)
    assert not result.modified and result.reason == "the graph has no Clip"
