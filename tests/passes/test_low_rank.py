"""low_rank: exactness at full rank in onnxruntime, a lossy rank's error against the SVD,
structure and cost flags on the same graphs, the knobs, and the cases where it must not
fire. The arithmetic and the error falling with the rank are in test_low_rank_error.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import run_onnx
from hwcc.ir.workload import analyze
from hwcc.passes.lib.low_rank_factor import factor
from hwcc.passes.low_rank import LowRank
from hwcc.testing import assert_equivalent, conv_graph, gemm_graph, matmul_graph, op_counts

RTOL, ATOL = 1e-4, 1e-5
FULL = {"rank_ratio": 1.0, "min_params_saving": -1.0}


def low_rank(graph: Graph, pass_=None, **knobs):
    ctx = PassContext(verify=False, knobs={"low_rank": knobs})  # the tests compare explicitly
    return (pass_ or get_pass("low_rank"))(graph, ctx)


def gemm(
    *, m=3, k=40, n=30, trans_a=0, trans_b=1, c_shape=(30,), alpha=1.0, beta=1.0, seed=0, relu=True
) -> Graph:
    """a -> Gemm(B, C) [-> Relu] -> y."""
    return gemm_graph(
        m=m,
        k=k,
        n=n,
        trans_a=trans_a,
        trans_b=trans_b,
        bias_shape=c_shape,
        alpha=alpha,
        beta=beta,
        relu=relu,
        seed=seed,
        names=("a", "B", "C"),
    )


def conv(*, cin=8, cout=12, k=3, hw=9, rank=2, group=1, bias=True, attrs=None, seed=0) -> Graph:
    """x -> Conv -> y."""
    return conv_graph(
        cin=cin,
        cout=cout,
        size=hw,
        kernel=k,
        rank=rank,
        group=group,
        bias=bias,
        seed=seed,
        **(attrs or {}),
    )


# ---------------------------------------------------------------------- exact at full rank
@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (30,), (3, 30), ()])
def test_gemm_at_full_rank_is_exact(trans_a, trans_b, c_shape):
    g = gemm(trans_a=trans_a, trans_b=trans_b, c_shape=c_shape, alpha=0.7, beta=1.3)
    result = low_rank(g, **FULL)
    assert result.details["factorised"]["fc"] == {
        "rank": 30,
        "of": 30,
        "params_before": 1200,
        "params_after": 2100,
    }
    assert op_counts(result.graph) == Counter({"Gemm": 2, "Relu": 1})
    first, second = result.graph.find("Gemm")
    assert second.name == "fc" and second.attrs["alpha"] == pytest.approx(0.7)
    assert second.attrs["beta"] == pytest.approx(1.3) and first.attrs["transA"] == trans_a
    assert second.inputs[2:] == (("C",) if c_shape is not None else ())  # the bias on the second
    assert first.meta["low_rank"] == second.meta["low_rank"] == {"rank": 30, "of": 30}
    assert "B" not in result.graph.tensors  # the dense weight is gone
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "left,x_shape,w_shape",
    [
        (False, (2, 5, 24), (24, 16)),
        (False, (24,), (24, 16)),
        (False, (7, 24), (24, 40)),
        (True, (3, 24, 6), (16, 24)),
        (True, (24, 6), (40, 24)),
    ],
)
def test_matmul_at_full_rank_is_exact(left, x_shape, w_shape):
    g = matmul_graph(x_shape=x_shape, w_shape=w_shape, left=left)
    result = low_rank(g, **FULL)
    assert op_counts(result.graph) == Counter({"MatMul": 2})
    r, out = min(w_shape), result.graph
    first, second = out.find("MatMul")
    if left:  # W·x ≈ A·(B·x): B is r × in, A is out × r
        assert first.inputs[1] == "x" and second.inputs[1] == first.outputs[0]
        assert out.tensors[first.inputs[0]].shape == (r, w_shape[1])
        assert out.tensors[second.inputs[0]].shape == (w_shape[0], r)
    else:  # x·W ≈ (x·Bᵀ)·Aᵀ
        assert first.inputs[0] == "x" and second.inputs[0] == first.outputs[0]
        assert out.tensors[first.inputs[1]].shape == (w_shape[0], r)
        assert out.tensors[second.inputs[1]].shape == (r, w_shape[1])
    assert result.graph.outputs == ["y"]  # the second factor writes the graph output
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "rank,k,attrs",
    [
        (2, 3, {"pads": [1, 1, 1, 1]}),
        (2, 3, {"strides": [2, 2], "dilations": [2, 1], "pads": [2, 0, 1, 3]}),
        (2, 5, {"auto_pad": "SAME_UPPER"}),
        (2, 1, {}),  # a 1x1 conv is a per-pixel Gemm
        (1, 3, {"strides": [2]}),
        (3, 3, {"pads": [1] * 6}),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_at_full_rank_is_exact(rank, k, attrs, bias):
    g = conv(rank=rank, k=k, attrs=attrs, bias=bias)
    result = low_rank(g, **FULL)
    full = min(12, 8 * k**rank)
    assert result.details["factorised"]["conv"]["rank"] == full
    first, second = result.graph.find("Conv")
    assert result.graph.tensors[first.inputs[1]].shape == (full, 8) + (k,) * rank
    assert result.graph.tensors[second.inputs[1]].shape == (12, full) + (1,) * rank
    assert {a: v for a, v in first.attrs.items() if a != "group"} == attrs  # same window
    assert second.attrs == {"kernel_shape": [1] * rank} and len(second.inputs) == (3 if bias else 2)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_input_graph_is_left_unchanged():
    g = gemm()
    before = dict(g.initializers)
    low_rank(g, rank_ratio=0.25)
    assert op_counts(g) == Counter({"Gemm": 1, "Relu": 1})
    assert g.initializers.keys() == before.keys()


# ---------------------------------------------------------------------- lossy ranks
def test_low_rank_gemm_error_is_the_dropped_singular_values():
    """At rank r the output error in onnxruntime is ``‖X·(W − W_r)ᵀ‖``, computed from the SVD."""
    g = gemm(m=64, c_shape=(30,), trans_b=1, relu=False)
    w = g.initializer("B").astype(np.float64)
    x = np.random.default_rng(1).normal(size=(64, 40)).astype(np.float32)
    ref = run_onnx(g, {"a": x})[0]
    for r in (1, 4, 10, 16, 29):
        got = run_onnx(low_rank(g, ranks=f"fc={r}", min_params_saving=-1.0).graph, {"a": x})[0]
        a, b = factor(w, r)
        want = np.linalg.norm(x @ (w - a @ b).T)
        assert np.linalg.norm(got - ref) == pytest.approx(want, rel=1e-4)


# ---------------------------------------------------------------------- cost view
def test_workload_sees_the_flag_and_the_smaller_conv():
    g = conv(cin=32, cout=64, k=3, hw=16, attrs={"pads": [1, 1, 1, 1]})
    result = low_rank(g, ranks="conv=8")
    before, after = analyze(g), analyze(result.graph)
    layers = [x for x in after.layers if x.kind == "conv"]
    assert len(layers) == 2 and all("low_rank" in x.flags for x in layers)
    d, c, k2, r = 64, 32, 9, 8
    assert before.macs / after.macs == pytest.approx(d * c * k2 / (r * (c * k2 + d)))
    assert after.params == r * (c * k2 + d) + d  # the bias stays


def test_python_api_ranks_and_knob_override():
    g = gemm(n=30, k=40)
    result = low_rank(g, pass_=LowRank(ranks={"fc": 5}))
    assert result.details["factorised"]["fc"]["rank"] == 5
    result = low_rank(g, pass_=LowRank(ranks={"fc": 5}), ranks="fc=7")
    assert result.details["factorised"]["fc"]["rank"] == 7


def test_layers_knob_limits_the_pass():
    g = gemm()
    g.add_initializer("B2", np.ones((30, 30), np.float32))
    g.add_node("Gemm", ["y", "B2"], ["z"], {"transB": 1}, name="fc2")
    g.outputs = ["z"]
    onnx_io.infer_shapes(g)
    result = low_rank(g, layers="fc2", rank_ratio=0.1)
    assert list(result.details["factorised"]) == ["fc2"] and op_counts(result.graph)["Gemm"] == 3


@pytest.mark.parametrize(
    "knobs,match",
    [
        ({"rank_ratio": 0.0}, "rank_ratio must be > 0"),
        ({"ranks": "fc=two"}, "bad entry"),
        ({"ranks": "nosuch=3"}, "no node named 'nosuch'"),
        ({"layers": "nosuch"}, "no node named 'nosuch'"),
    ],
)
def test_bad_knobs_are_user_errors(knobs, match):
    with pytest.raises(HwccError, match=match):
        low_rank(gemm(), **knobs)


# ---------------------------------------------------------------------- must not fire
def assert_not_factorised(g: Graph, why: str, **knobs) -> None:
    result = low_rank(g, **knobs)
    assert not result.modified and result.graph is g
    assert why in result.reason, result.reason


@pytest.mark.parametrize("group,cout", [(2, 12), (8, 8)])
def test_not_for_grouped_or_depthwise_conv(group, cout):
    assert_not_factorised(
        conv(cin=8, cout=cout, group=group), f"grouped convolution (group={group})"
    )


def test_not_when_the_weight_is_a_graph_input():
    g = gemm()
    g.add_input("B_in", dtypes.FLOAT, (30, 40))
    g.set_input(g.node("fc"), 1, "B_in")
    assert_not_factorised(g, "not a constant initializer")


def test_not_when_the_weight_is_an_overridable_initializer():
    g = conv()
    g.inputs.append("w")
    assert_not_factorised(g, "not a constant initializer")


def test_not_when_the_rank_saves_nothing():
    # rank 30 of 30: 30·(30 + 40) = 2100 weights against 1200
    assert_not_factorised(gemm(), "rank 30 of 30 needs 2100 weights against 1200", rank_ratio=1.0)
    # rank 17 of 30 saves 0.8 %, under the default 1 %
    assert_not_factorised(gemm(), "saving 0.8% < min_params_saving 1.0%", ranks="fc=17")


def test_1x1_conv_with_fewer_outputs_fires_only_when_it_saves():
    g = conv(cin=16, cout=8, k=1)  # d = 8 <= c = 16: full rank 8
    assert_not_factorised(g, "rank 8 of 8 needs 192 weights against 128", rank_ratio=1.0)
    result = low_rank(g, rank_ratio=0.25)  # rank 2: 48 weights
    assert result.details["factorised"]["conv"]["params_after"] == 48
    shapes = [result.graph.tensors[n.inputs[1]].shape for n in result.graph.find("Conv")]
    assert shapes == [(2, 16, 1, 1), (8, 2, 1, 1)]


def test_not_for_a_selection_matrix():
    """A MatMul by kept rows of the identity (how a pruned recurrent state is scattered
    back to its full size for the caller) moves values: no rank can go."""
    g = matmul_graph(x_shape=(1, 24), w_shape=(24, 40))
    keep = [0, 3, 5, 7, 8, 11, 12, 20, 21, 22, 23, 1, 2, 4, 6, 9, 10, 13, 14, 15, 16, 17, 18, 19]
    g.tensors["W"].data = np.eye(40, dtype=np.float32)[keep]
    assert_not_factorised(g, "only moves values", rank_ratio=0.5)
    g.tensors["W"].data[0, 1] = 0.5  # one value other than 0 or 1: a layer again
    assert "factorised" in low_rank(g, rank_ratio=0.5).details


def test_not_for_a_single_output_layer():
    assert_not_factorised(gemm(n=1, c_shape=(1,)), "rank 1 of 1", rank_ratio=0.01)


@pytest.mark.parametrize(
    "w_shape,x_shape,why", [((2, 24, 16), (2, 5, 24), "3-D, not a 2-D weight")]
)
def test_not_for_matmul_with_batched_weight(w_shape, x_shape, why):
    assert_not_factorised(matmul_graph(x_shape=x_shape, w_shape=w_shape), why)


def test_not_for_matmul_of_two_activations_or_two_constants():
    g = Graph("mm")
    g.add_input("a", dtypes.FLOAT, (4, 8))
    g.add_input("b", dtypes.FLOAT, (8, 6))
    g.add_node("MatMul", ["a", "b"], ["y"], name="mm")
    g.outputs.append("y")
    assert_not_factorised(g, "neither operand is a constant")
    g = matmul_graph()
    g.add_initializer("W2", np.ones((16, 16), np.float32))
    g.add_node("MatMul", ["W", "W2"], ["z"], name="consts")
    g.outputs.append("z")
    onnx_io.infer_shapes(g)
    result = low_rank(g)
    assert "both operands are constant" in result.details["rejected"]["consts"]


def test_not_twice_on_the_same_layer():
    g = low_rank(gemm(), rank_ratio=0.2).graph
    assert_not_factorised(g, "already a low-rank factor", rank_ratio=0.2)


def test_not_on_a_graph_without_layers():
    g = Graph("relu")
    g.add_input("x", dtypes.FLOAT, (2,))
    g.add_node("Relu", ["x"], ["y"])
    g.outputs.append("y")
    assert_not_factorised(g, "no Gemm, MatMul or Conv")


# ---------------------------------------------------------------------- property
@settings(max_examples=20, deadline=None)
@given(
    out=st.integers(2, 24),
    inp=st.integers(2, 24),
    trans_b=st.integers(0, 1),
    seed=st.integers(0, 2**16),
)
def test_property_full_rank_gemm_is_exact(out, inp, trans_b, seed):
    g = gemm(k=inp, n=out, trans_b=trans_b, c_shape=(out,), seed=seed)
    result = low_rank(g, **FULL)
    assert result.details["factorised"]["fc"]["rank"] == min(out, inp)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL, seed=seed, check_model=False)
