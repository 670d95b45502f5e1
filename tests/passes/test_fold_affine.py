"""fold_affine: scales and shifts by constants folded into the Convs beside them,
checked in onnxruntime on the same inputs with explicit tolerances, and the cases where
it must not fire."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.testing import assert_equivalent, op_counts

RTOL, ATOL = 1e-5, 1e-5
NO_VERIFY = PassContext(verify=False)  # the tests compare outputs themselves, explicitly


def fold(graph: Graph):
    return get_pass("fold_affine")(graph, NO_VERIFY)


def const(g: Graph, name: str, value) -> str:
    g.add_initializer(name, np.asarray(value, np.float32))
    return name


def conv(g: Graph, x: str, cin: int, cout: int, out: str, rng, *, groups=1, pad=0, k=3, bias=True):
    w = const(g, f"{out}.w", rng.normal(size=(cout, cin // groups, k, k)))
    ins = [x, w] + ([const(g, f"{out}.b", rng.normal(size=cout))] if bias else [])
    g.add_node("Conv", ins, [out], {"group": groups, "pads": [pad] * 4}, name=out)
    return out


def chain(*ops, cin=4, cout=6, groups=1, pad=0, bias=True, seed=0, after=()) -> Graph:
    """x -> Conv -> ops (each ``(op_type, constant)``) -> [after: Relu, Conv...] -> y."""
    rng = np.random.default_rng(seed)
    g = Graph("affine")
    g.add_input("x", dtypes.FLOAT, (2, cin, 9, 9))
    t = conv(g, "x", cin, cout, "c0", rng, bias=bias)
    for i, (op, value) in enumerate(ops):
        name = f"{op.lower()}{i}"
        g.add_node(op, [t, const(g, f"{name}.k", value)], [name], name=name)
        t = name
    for i, step in enumerate(after):
        if step == "Relu":
            g.add_node("Relu", [t], [f"relu{i}"], name=f"relu{i}")
            t = f"relu{i}"
        else:
            t = conv(g, t, cout, cout, f"c{i + 1}", rng, groups=groups, pad=pad, bias=bias)
    g.add_node("Identity", [t], ["y"])
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def per_channel(c: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 2.0, (c, 1, 1))


# ---------------------------------------------------------------------- into the Conv before
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "ops",
    [
        [("Mul", 1.7)],
        [("Add", -0.4)],
        [("Mul", per_channel(6)), ("Add", per_channel(6, 4))],
        [("Div", per_channel(6)), ("Sub", [0.3])],
        [("Mul", per_channel(6).reshape(1, 6, 1, 1)), ("Add", 0.2), ("Mul", 3.0)],
    ],
)
def test_affine_after_a_conv_folds_into_it(ops, bias):
    g = chain(*ops, bias=bias, after=("Relu",))
    result = fold(g)
    assert result.modified and result.details["into_producer"] == len(ops)
    assert op_counts(result.graph) == Counter({"Conv": 1, "Relu": 1, "Identity": 1})
    assert len(result.graph.node("c0").inputs) == 3  # a bias where there was none
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_constant_as_first_operand_folds():
    g = chain(bias=False, after=("Relu",))
    const(g, "k", 2.5)
    g.set_input(g.node("relu0"), 0, "m")
    g.add_node("Mul", ["k", "c0"], ["m"], name="m")
    onnx_io.infer_shapes(g)
    result = fold(g)
    assert result.details["into_producer"] == 1
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- into the Convs after
@pytest.mark.parametrize("groups", [1, 2, 6])
@pytest.mark.parametrize("pad", [0, 1])
def test_scale_after_an_activation_folds_into_the_next_conv(groups, pad):
    g = chain(after=("Relu",), groups=groups, pad=pad)
    g2 = _insert_after_relu(g, [("Mul", per_channel(6))], groups, pad)
    result = fold(g2)
    assert result.details["into_readers"] == 1
    assert op_counts(result.graph)["Mul"] == 0
    assert_equivalent(g2, result.graph, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("groups", [1, 3])
def test_scale_and_shift_fold_into_an_unpadded_conv(groups):
    g = _insert_after_relu(None, [("Mul", per_channel(6)), ("Add", per_channel(6, 5))], groups, 0)
    result = fold(g)
    assert result.details["into_readers"] == 2
    assert op_counts(result.graph) == Counter({"Conv": 2, "Relu": 1, "Identity": 1})
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_scale_and_shift_before_a_padded_conv_leave_only_the_shift():
    """A padded border would see the shift, not 0: the shift stays (moved first), the
    scale folds."""
    g = _insert_after_relu(None, [("Mul", per_channel(6)), ("Add", per_channel(6, 5))], 6, 1)
    result = fold(g)
    assert result.details == {"into_producer": 0, "into_readers": 1, "reordered": 1}
    counts = op_counts(result.graph)
    assert counts["Mul"] == 0 and counts["Add"] == 1
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def _insert_after_relu(g, ops, groups, pad, seed=0):
    """x -> Conv -> Relu -> ops -> Conv(groups, pad) -> y."""
    rng = np.random.default_rng(seed)
    g = Graph("after")
    g.add_input("x", dtypes.FLOAT, (2, 4, 9, 9))
    t = conv(g, "x", 4, 6, "c0", rng)
    g.add_node("Relu", [t], ["r"])
    t = "r"
    for i, (op, value) in enumerate(ops):
        g.add_node(op, [t, const(g, f"k{i}", value)], [f"a{i}"], name=f"a{i}")
        t = f"a{i}"
    conv(g, t, 6, 6, "c1", rng, groups=groups, pad=pad)
    g.add_node("Identity", ["c1"], ["y"])
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


# ---------------------------------------------------------------------- must not fire
def assert_not_folded(g: Graph, why: str) -> None:
    result = fold(g)
    assert not result.modified and result.graph is g
    assert why in result.reason, result.reason


def test_not_when_the_constant_varies_along_the_image():
    g = chain(("Mul", np.random.default_rng(0).normal(size=(6, 7, 7))), after=("Relu",))
    assert_not_folded(g, "sits next to a Conv")


def test_not_when_the_constant_would_broadcast_the_tensor():
    g = chain(("Add", np.ones((1, 1, 6, 1, 1))), after=("Relu",))
    assert_not_folded(g, "sits next to a Conv")


def test_not_when_the_conv_output_is_read_twice():
    g = chain(("Mul", 2.0), after=("Relu",))
    g.add_node("Sigmoid", ["c0"], ["side"])
    g.outputs.append("side")
    assert_not_folded(g, "sits next to a Conv")


def test_not_when_a_reader_is_not_a_conv():
    g = _insert_after_relu(None, [("Add", per_channel(6))], 1, 0)
    g.add_node("Sigmoid", ["a0"], ["side"])
    g.outputs.append("side")
    assert_not_folded(g, "sits next to a Conv")


def test_not_when_a_shift_feeds_a_padded_conv_alone():
    g = _insert_after_relu(None, [("Add", per_channel(6))], 1, 1)
    assert_not_folded(g, "sits next to a Conv")


def test_not_without_an_affine_op():
    g = chain(after=("Relu",))
    assert_not_folded(g, "no Mul, Div, Add or Sub by a constant")


def test_not_when_the_operand_is_computed():
    g = chain(after=("Relu",))
    g.add_node("Mul", ["relu0", "relu0"], ["sq"])
    g.set_input(g.node(g.producer("y").name), 0, "sq")
    onnx_io.infer_shapes(g)
    assert_not_folded(g, "no Mul, Div, Add or Sub by a constant")
