"""finetune's torch executor against onnxruntime on the ops of hwcc/train/ops/logic_ops.py:
casts, Range, ConstantOfShape, Expand, Tile, comparisons, logic, Where, the variadic ops,
Size, ArgMax/ArgMin, CumSum and NonZero; one-node graphs (a few nodes where a case needs
a shape computed at run time), inputs of each dtype the op takes, older opsets where
exporters still write them, and the attribute values the builders refuse.

Float outputs are compared with the tolerances of tests/finetune_graphs.py; integer and
bool outputs exactly (rtol = atol = 0), and their dtypes must be onnxruntime's."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import ATOL, RTOL
from onnx import TensorProto, helper, numpy_helper

from hwcc.errors import HwccError
from hwcc.ir import Graph, onnx_io
from hwcc.ir.dtypes import onnx_type_of
from hwcc.ir.verify import run_onnx
from hwcc.train.graph_module import to_torch

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

N = helper.make_node
T = TensorProto


def _graph(nodes, feeds: dict, inits: dict, outputs: list[str], opset: int = 17) -> Graph:
    """A model of ``nodes`` whose inputs have the dtypes and shapes of ``feeds``; the
    outputs' types are left to onnxruntime (they may be bool or int64 here)."""
    g = helper.make_graph(
        nodes,
        "logic",
        [
            helper.make_tensor_value_info(n, onnx_type_of(v.dtype), list(v.shape))
            for n, v in feeds.items()
        ],
        [helper.make_empty_tensor_value_info(n) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return onnx_io.from_proto(model)


def _r(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ties(*shape, seed=0):
    """Small whole numbers as float32: comparisons and arg-extrema meet equal values."""
    return np.random.default_rng(seed).integers(-2, 3, shape).astype(np.float32)


def _b(*shape, seed=0):
    return np.random.default_rng(seed).random(shape) < 0.5


def _i(*v, dtype=np.int64):
    return np.array(v, dtype=dtype)


def _cases() -> dict[str, tuple]:
    """name -> (nodes, feeds, initializers, outputs, opset)."""
    x = _r(2, 3, 4) * 3
    return {
        "cast": (
            [
                N("Cast", ["x"], ["i32"], to=T.INT32),  # truncates towards zero
                N("Cast", ["x"], ["i8"], to=T.INT8),
                N("Cast", ["x"], ["bl"], to=T.BOOL),
                N("Cast", ["x"], ["f64"], to=T.DOUBLE),
                N("Cast", ["x"], ["f16"], to=T.FLOAT16),
                N("Cast", ["n"], ["nf"], to=T.FLOAT),
                N("Cast", ["m"], ["mf"], to=T.FLOAT),
                N("Cast", ["m"], ["mi"], to=T.INT64),
                N("CastLike", ["x", "like"], ["cl"]),
                N("CastLike", ["n", "x"], ["cl2"]),
            ],
            {"x": np.concatenate([x, np.zeros((2, 3, 1), np.float32)], 2), "n": _i(-3, 0, 7)},
            {"m": _b(2, 5), "like": _i(1)},
            ["i32", "i8", "bl", "f64", "f16", "nf", "mf", "mi", "cl", "cl2"],
            17,
        ),
        "cast_opset6": ([N("Cast", ["x"], ["y"], to=T.INT64)], {"x": x}, {}, ["y"], 6),
        "range": (
            [
                N("Range", ["s", "l", "d"], ["f"]),
                N("Range", ["is", "il", "id"], ["i"]),
                N("Range", ["is", "id", "id"], ["e"]),  # 10, 7, 4, 1, -2: limit -3 excluded
                N("Range", ["is", "il", "one"], ["e2"]),  # empty: 10 up to 1
            ],
            {"s": np.float32(0.5), "l": np.float32(3.2), "d": np.float32(0.7)},
            {"is": np.int64(10), "il": np.int64(1), "id": np.int64(-3), "one": np.int64(1)},
            ["f", "i", "e", "e2"],
            17,
        ),
        "constant_of_shape": (
            [
                N("ConstantOfShape", ["shp"], ["z"]),
                N(
                    "ConstantOfShape",
                    ["shp"],
                    ["k"],
                    value=numpy_helper.from_array(np.array([7], np.int64)),
                ),
                N("Shape", ["x"], ["xs"]),
                N(
                    "ConstantOfShape",
                    ["xs"],
                    ["h"],
                    value=numpy_helper.from_array(np.array([0.5], np.float32)),
                ),
                N("ConstantOfShape", ["none"], ["s"]),
            ],
            {"x": x},
            {"shp": _i(2, 3), "none": np.zeros(0, np.int64)},
            ["z", "k", "h", "s"],
            17,
        ),
        "expand": (
            [
                N("Expand", ["c", "s1"], ["a"]),
                N("Expand", ["x", "s2"], ["b"]),  # bidirectional: 1s in the shape keep x's dims
                N("Expand", ["c", "s3"], ["d"]),
            ],
            {"x": x, "c": _r(3, 1)},
            {"s1": _i(2, 1, 4), "s2": _i(1, 1), "s3": _i(3, 5)},
            ["a", "b", "d"],
            17,
        ),
        "tile": (
            [
                N("Tile", ["x", "r1"], ["a"]),
                N("Tile", ["n", "r2"], ["b"]),
            ],
            {"x": x, "n": _i(4, 5, 6)},
            {"r1": _i(2, 1, 3), "r2": _i(3)},
            ["a", "b"],
            17,
        ),
        "tile_opset6": ([N("Tile", ["x", "r"], ["y"])], {"x": x}, {"r": _i(1, 2, 1)}, ["y"], 6),
        "compare": (
            [N(op, ["a", "b"], [op]) for op in _CMP]
            + [
                N("Equal", ["n", "k"], ["ei"]),
                N("Greater", ["n", "k"], ["gi"]),
                N("Equal", ["p", "q"], ["eb"]),
            ],
            {"a": _ties(2, 3, 4), "b": _ties(4, seed=1), "n": _i(1, 2, 3, 4)},
            {"k": _i(3), "p": _b(3, 4), "q": _b(4, seed=2)},
            [*_CMP, "ei", "gi", "eb"],
            17,
        ),
        "compare_opset7": (
            [N("Equal", ["n", "k"], ["e"]), N("Greater", ["a", "b"], ["g"])],
            {"a": _ties(2, 3, 4), "b": _ties(3, 1, seed=1), "n": _i(1, 2, 3, 4)},
            {"k": _i(3)},
            ["e", "g"],
            7,
        ),
        "logic_where": (
            [
                N("Not", ["p"], ["n"]),
                N("And", ["p", "q"], ["a"]),
                N("Or", ["p", "q"], ["o"]),
                N("Xor", ["p", "q"], ["x"]),
                N("Where", ["w", "y", "z"], ["wf"]),
                N("Where", ["q", "i", "j"], ["wi"]),
            ],
            {"p": _b(2, 3, 4), "y": _r(3, 4), "i": _i(1, 2, 3, 4)},
            {"q": _b(4, seed=1), "w": _b(2, 1, 4, seed=2), "z": np.float32(-1.0), "j": _i(-5)},
            ["n", "a", "o", "x", "wf", "wi"],
            17,
        ),
        "variadic": (
            [N(op, ["a", "b", "c"], [op]) for op in ("Max", "Min", "Sum", "Mean")]
            + [N(op, ["a"], [op + "1"]) for op in ("Max", "Min", "Sum", "Mean")]
            + [N("Max", ["n", "k"], ["mi"]), N("Min", ["n", "k"], ["ni"])],
            {"a": _ties(2, 3, 4), "b": _r(4, seed=1), "c": _ties(3, 1, seed=2)},
            {"n": _i(-3, 0, 7, dtype=np.int32), "k": _i(2, dtype=np.int32)},
            ["Max", "Min", "Sum", "Mean", "Max1", "Min1", "Sum1", "Mean1", "mi", "ni"],
            17,
        ),
        "variadic_opset6": (  # no broadcasting yet: inputs of one shape
            [N(op, ["a", "b"], [op]) for op in ("Max", "Min", "Sum", "Mean")],
            {"a": _ties(2, 3), "b": _ties(2, 3, seed=1)},
            {},
            ["Max", "Min", "Sum", "Mean"],
            6,
        ),
        "size_arg": (
            [
                N("Size", ["a"], ["s"]),
                N("Size", ["e"], ["s0"]),
                N("ArgMax", ["a"], ["x0"]),
                N("ArgMax", ["a"], ["x1"], axis=-1, keepdims=0),
                N("ArgMin", ["a"], ["n1"], axis=1),
                N("ArgMax", ["a"], ["xl"], axis=2, select_last_index=1),
                N("ArgMin", ["a"], ["nl"], axis=-2, keepdims=0, select_last_index=1),
                N("ArgMin", ["k"], ["ni"], keepdims=0, select_last_index=1),
            ],
            {"a": _ties(3, 4, 5)},
            {"e": np.zeros((2, 0), np.float32), "k": _i(3, 1, 1, 4, dtype=np.int32)},
            ["s", "s0", "x0", "x1", "n1", "xl", "nl", "ni"],
            17,
        ),
        "argmax_opset11": (
            [N("ArgMax", ["a"], ["y"], axis=1, keepdims=0)],
            {"a": _ties(3, 4, 5)},
            {},
            ["y"],
            11,
        ),
        "cumsum": (
            [
                N("CumSum", ["x", "ax"], ["c"]),
                N("CumSum", ["x", "neg"], ["ce"], exclusive=1),
                N("CumSum", ["x", "ax"], ["cr"], reverse=1),
                N("CumSum", ["x", "neg"], ["cer"], exclusive=1, reverse=1),
                N("CumSum", ["n", "zero"], ["ci"], exclusive=1),
                N("CumSum", ["x", "dyn"], ["cd"], reverse=1),
            ],
            {"x": x, "dyn": np.int64(1)},
            {
                "ax": np.int32(1),
                "neg": _i(-1),
                "zero": np.int32(0),
                "n": _i(4, -2, 7, dtype=np.int32),
            },
            ["c", "ce", "cr", "cer", "ci", "cd"],
            17,
        ),
        "nonzero": (
            [N("NonZero", ["a"], ["f"]), N("NonZero", ["p"], ["b"]), N("NonZero", ["n"], ["i"])],
            {"a": _ties(3, 4), "p": _b(2, 3, 2)},
            {"n": _i(0, 3, 0, -1)},
            ["f", "b", "i"],
            17,
        ),
    }


_CMP = ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"]


def _assert_same(name: str, got, want: np.ndarray) -> None:
    got = got.detach().numpy()
    assert got.dtype == want.dtype, f"{name}: {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{name}: {got.shape} != {want.shape}"
    exact = want.dtype.kind in "biu"
    rtol, atol = (0, 0) if exact else (RTOL, ATOL)
    if want.dtype == np.float16:
        rtol, atol = 1e-3, 1e-3
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("case", sorted(_cases()))
def test_logic_ops_match_onnxruntime(case):
    nodes, feeds, inits, outputs, opset = _cases()[case]
    feeds = {n: np.asarray(v) for n, v in feeds.items()}  # onnxruntime takes arrays only
    graph = _graph(nodes, feeds, inits, outputs, opset)
    ref = run_onnx(graph, feeds)
    out = to_torch(graph)(**feeds)
    assert len(out) == len(outputs)
    for name, o, r in zip(outputs, out, ref):
        _assert_same(f"{case}/{name}", o, r)


def test_every_logic_op_is_covered():
    covered = {n.op_type for nodes, *_ in _cases().values() for n in nodes}
    wanted = {"Cast", "CastLike", "Range", "ConstantOfShape", "Expand", "Tile", *_CMP}
    wanted |= {"Not", "And", "Or", "Xor", "Where", "Max", "Min", "Mean", "Sum", "Size"}
    wanted |= {"ArgMax", "ArgMin", "CumSum", "NonZero"}
    assert wanted <= covered


def test_gradients_flow_through_float_ops():
    """Where, Expand, Tile, Max and CumSum pass gradients to their float inputs, as the
    same ops written with torch's own functions do."""
    graph = _graph(
        [
            N("Expand", ["a", "s"], ["e"]),
            N("Tile", ["e", "r"], ["t"]),
            N("Max", ["t", "b"], ["m"]),
            N("Where", ["w", "m", "b"], ["h"]),
            N("CumSum", ["h", "ax"], ["y"], reverse=1),
        ],
        {"a": _r(3, 1), "b": _r(3, 4, seed=1)},
        {"s": _i(3, 2), "r": _i(1, 2), "w": _b(3, 4, seed=2), "ax": np.int64(1)},
        ["y"],
    )
    a = torch.tensor(_r(3, 1), requires_grad=True)
    b = torch.tensor(_r(3, 4, seed=1), requires_grad=True)
    (y,) = to_torch(graph)(a, b)
    y.sum().backward()
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    w = torch.from_numpy(_b(3, 4, seed=2))
    h = torch.where(w, torch.maximum(a2.expand(3, 2).repeat(1, 2), b2), b2)
    h.flip(1).cumsum(1).flip(1).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), a2.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(b.grad.numpy(), b2.grad.numpy(), rtol=RTOL, atol=ATOL)
    assert a.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("nodes", "opset", "match"),
    [
        ([N("Cast", ["x"], ["y"], to=T.STRING)], 17, r"Cast.*to=8 has no torch dtype"),
        ([N("Cast", ["x"], ["y"], to=T.COMPLEX64)], 17, r"to=14 has no torch dtype"),
        ([N("Cast", ["x"], ["y"], to=T.FLOAT8E4M3FN)], 19, r"to=17 has no torch dtype"),
        ([N("Tile", ["x", "t", "ax"], ["y"])], 5, r"opset 5's Tile"),
        (
            [
                N(
                    "ConstantOfShape",
                    ["s"],
                    ["y"],
                    value=numpy_helper.from_array(np.array([1.0, 2.0], np.float32)),
                )
            ],
            17,
            r"its value has 2 elements",
        ),
        ([N("CumSum", ["x", "axes"], ["y"])], 17, r"its axis has 2 values"),
    ],
    ids=["cast_string", "cast_complex", "cast_float8", "tile_opset5", "fill_2", "cumsum_axes"],
)
def test_unsupported_attributes_are_refused(nodes, opset, match):
    inits = {"t": np.int64(2), "ax": np.int64(0), "s": _i(2), "axes": _i(0, 1)}
    graph = _graph(nodes, {"x": _r(2, 3)}, inits, ["y"], opset)
    with pytest.raises(HwccError, match=match) as err:
        to_torch(graph)
    assert err.value.hint  # says what to do instead
