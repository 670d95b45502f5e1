"""fold_batchnorm: structure (node counts, match count) and numbers (onnxruntime, same
inputs, explicit tolerances) on the same graphs, plus the cases where it must not fire."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.testing import assert_equivalent, op_counts

RTOL, ATOL = 1e-5, 1e-5
NO_VERIFY = PassContext(verify=False)  # the tests compare outputs themselves, explicitly


def fold(graph: Graph, ctx: PassContext = NO_VERIFY):
    return get_pass("fold_batchnorm")(graph, ctx)


def add_bn(
    g: Graph,
    x: str,
    channels: int,
    rng: np.random.Generator,
    *,
    eps: float = 1e-5,
    out: str = "bn_out",
    name: str = "bn",
    extra_outputs=(),
    attrs=None,
) -> None:
    params = {
        f"{name}.scale": rng.uniform(0.5, 2.0, channels),
        f"{name}.bias": rng.normal(size=channels),
        f"{name}.mean": rng.normal(size=channels),
        f"{name}.var": rng.uniform(0.1, 4.0, channels),
    }
    for key, value in params.items():
        g.add_initializer(key, value.astype(np.float32))
    g.add_node(
        "BatchNormalization",
        [x, *params],
        [out, *extra_outputs],
        {"epsilon": eps, **(attrs or {})},
        name=name,
    )


def conv_bn(*, cin=4, cout=6, groups=1, bias=True, rank=2, eps=1e-5, seed=0, relu=True) -> Graph:
    """x -> Conv -> BatchNormalization [-> Relu] -> y."""
    rng = np.random.default_rng(seed)
    g = Graph("conv_bn")
    g.add_input("x", dtypes.FLOAT, (2, cin) + (7,) * rank)
    g.add_initializer("w", rng.normal(size=(cout, cin // groups) + (3,) * rank).astype(np.float32))
    inputs = ["x", "w"]
    if bias:
        g.add_initializer("b", rng.normal(size=cout).astype(np.float32))
        inputs.append("b")
    g.add_node(
        "Conv", inputs, ["conv_out"], {"group": groups, "pads": [1] * (2 * rank)}, name="conv"
    )
    add_bn(g, "conv_out", cout, rng, eps=eps, out="bn_out" if relu else "y")
    if relu:
        g.add_node("Relu", ["bn_out"], ["y"])
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def gemm_bn(*, m=3, k=5, n=4, trans_b=0, c_shape=(4,), alpha=1.0, beta=1.0, seed=0) -> Graph:
    """a -> Gemm(B, C) -> BatchNormalization -> y."""
    rng = np.random.default_rng(seed)
    g = Graph("gemm_bn")
    g.add_input("a", dtypes.FLOAT, (m, k))
    g.add_initializer("B", rng.normal(size=(n, k) if trans_b else (k, n)).astype(np.float32))
    inputs = ["a", "B"]
    if c_shape is not None:
        g.add_initializer("C", rng.normal(size=c_shape).astype(np.float32))
        inputs.append("C")
    g.add_node(
        "Gemm", inputs, ["gemm_out"], {"transB": trans_b, "alpha": alpha, "beta": beta}, name="gemm"
    )
    add_bn(g, "gemm_out", n, rng, out="y")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


# ---------------------------------------------------------------------- folds
@pytest.mark.parametrize("groups,cin,cout", [(1, 4, 6), (2, 4, 6), (4, 4, 4), (4, 4, 8)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_bn_folds_for_any_groups_with_or_without_bias(groups, cin, cout, bias):
    g = conv_bn(cin=cin, cout=cout, groups=groups, bias=bias)
    result = fold(g)
    assert result.modified and result.details["folded"] == 1
    assert op_counts(result.graph) == Counter({"Conv": 1, "Relu": 1})
    conv = result.graph.node("conv")
    assert len(conv.inputs) == 3 and conv.inputs[1] == "w"  # the weight keeps its name
    assert set(result.graph.initializers) == {"w", conv.inputs[2]}  # BN's parameters are gone
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("rank", [1, 3])
def test_conv1d_and_conv3d_fold(rank):
    g = conv_bn(rank=rank, groups=2)
    result = fold(g)
    assert op_counts(result.graph)["BatchNormalization"] == 0
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_input_graph_is_left_unchanged():
    g = conv_bn()
    before = {n: a.copy() for n, a in g.initializers.items()}
    fold(g)
    assert op_counts(g)["BatchNormalization"] == 1
    assert set(g.initializers) == set(before)
    assert all(np.array_equal(g.initializers[n], a) for n, a in before.items())


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (), (4,), (1, 4), (3, 1), (3, 4)])
def test_gemm_bn_folds_for_trans_b_and_bias_shapes(trans_b, c_shape):
    g = gemm_bn(trans_b=trans_b, c_shape=c_shape, alpha=0.7, beta=1.3)
    result = fold(g)
    assert result.modified and result.details["folded"] == 1
    assert op_counts(result.graph) == Counter({"Gemm": 1})
    gemm = result.graph.node("gemm")
    assert gemm.attrs["beta"] == 1.0 and gemm.attrs["alpha"] == pytest.approx(0.7)
    assert result.graph.outputs == ["y"]  # the Gemm now writes the graph output itself
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_bn_writing_a_graph_output_hands_the_name_to_the_conv():
    g = conv_bn(relu=False)
    result = fold(g)
    assert result.graph.outputs == ["y"]
    assert result.graph.producer("y").name == "conv"
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_shared_weight_gets_a_new_name_for_each_fold():
    """Two Convs read one weight, each followed by its own BN: both fold, and neither
    fold writes over the weight the other Conv still reads."""
    rng = np.random.default_rng(1)
    g = Graph("shared")
    g.add_input("x", dtypes.FLOAT, (1, 3, 5, 5))
    g.add_initializer("w", rng.normal(size=(3, 3, 1, 1)).astype(np.float32))
    g.add_node("Conv", ["x", "w"], ["c1"], name="conv1")
    add_bn(g, "c1", 3, rng, out="b1", name="bn1")
    g.add_node("Conv", ["b1", "w"], ["c2"], name="conv2")
    add_bn(g, "c2", 3, rng, out="y", name="bn2")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    result = fold(g)
    assert result.details["folded"] == 2 and op_counts(result.graph) == Counter({"Conv": 2})
    w1, w2 = (result.graph.node(n).inputs[1] for n in ("conv1", "conv2"))
    assert w1 != w2 and "w" in (w1, w2)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_conv_followed_by_two_bns_folds_both():
    rng = np.random.default_rng(2)
    g = Graph("two_bn")
    g.add_input("x", dtypes.FLOAT, (1, 2, 4, 4))
    g.add_initializer("w", rng.normal(size=(3, 2, 3, 3)).astype(np.float32))
    g.add_node("Conv", ["x", "w"], ["c"], name="conv")
    add_bn(g, "c", 3, rng, out="b1", name="bn1")
    add_bn(g, "b1", 3, rng, out="y", name="bn2")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    result = fold(g)
    assert result.details["folded"] == 2 and op_counts(result.graph) == Counter({"Conv": 1})
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- must not fire
def assert_not_folded(g: Graph, why: str) -> None:
    result = fold(g)
    assert not result.modified
    assert result.graph is g and op_counts(g)["BatchNormalization"] >= 1
    assert why in result.reason, result.reason


def test_not_when_the_conv_output_has_another_reader():
    g = conv_bn()
    g.add_node("Sigmoid", ["conv_out"], ["side"])
    g.outputs.append("side")
    assert_not_folded(g, "also read elsewhere")


def test_not_when_the_conv_output_is_a_graph_output():
    g = conv_bn()
    g.outputs.append("conv_out")
    assert_not_folded(g, "also read elsewhere")


@pytest.mark.parametrize(
    "extra_outputs,attrs",
    [
        (["running_mean", "running_var"], {"training_mode": 1}),  # opset 14+
        ([], {"training_mode": 1}),
        (["mean", "var", "saved_mean", "saved_var"], {}),  # opset 9 training form
    ],
)
def test_not_in_training_mode(extra_outputs, attrs):
    rng = np.random.default_rng(0)
    g = Graph("train")
    g.add_input("x", dtypes.FLOAT, (2, 4, 5, 5))
    g.add_initializer("w", rng.normal(size=(6, 4, 3, 3)).astype(np.float32))
    g.add_node("Conv", ["x", "w"], ["conv_out"], name="conv")
    add_bn(g, "conv_out", 6, rng, out="y", extra_outputs=extra_outputs, attrs=attrs)
    g.outputs.append("y")
    assert_not_folded(g, "training mode")


def test_not_when_bn_parameters_are_not_initializers():
    g = conv_bn()
    g.add_input("runtime_mean", dtypes.FLOAT, (6,))
    g.set_input(g.node("bn"), 3, "runtime_mean")
    assert_not_folded(g, "not all constant initializers")


def test_not_when_bn_parameter_is_an_overridable_input():
    g = conv_bn()
    g.inputs.append("bn.var")  # an initializer listed as an input: a caller may override it
    assert_not_folded(g, "not all constant initializers")


def test_not_when_bn_follows_something_else():
    g = conv_bn()
    relu = g.add_node("Relu", ["conv_out"], ["r"], name="pre")
    g.set_input(g.node("bn"), 0, relu.outputs[0])
    assert_not_folded(g, "comes from a Relu, not a Conv or Gemm")


def test_not_when_conv_weight_is_not_constant():
    g = conv_bn()
    g.add_input("w_in", dtypes.FLOAT, (6, 4, 3, 3))
    g.set_input(g.node("conv"), 1, "w_in")
    assert_not_folded(g, "not constant initializers")


def test_not_for_gemm_with_trans_a():
    g = gemm_bn(m=5, k=3)
    g.node("gemm").attrs["transA"] = 1
    g.tensors["a"].shape = (3, 5)
    assert_not_folded(g, "transA=1")


def test_not_for_gemm_with_runtime_b():
    g = gemm_bn()
    g.add_input("B_in", dtypes.FLOAT, (5, 4))
    g.set_input(g.node("gemm"), 1, "B_in")
    assert_not_folded(g, "not constant initializers")


def test_no_batchnorm_at_all():
    g = conv_bn()
    g.replace_all_uses_with("bn_out", "conv_out")
    g.erase_node(g.node("bn"))
    result = fold(g)
    assert not result.modified and result.reason == "the graph has no BatchNormalization"


# ---------------------------------------------------------------------- real graphs
def test_torch_conv_bn_relu_and_linear_bn(export_torch):
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, groups=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=4),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 10),
        nn.BatchNorm1d(10),
    )
    for bn in (m for m in net if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 2.0)
        bn.bias.data.uniform_(-1, 1)
    g = export_torch(net, torch.randn(2, 3, 8, 8))
    assert op_counts(g)["BatchNormalization"] == 3
    result = fold(g)
    assert result.details["folded"] == 3
    assert op_counts(result.graph) == Counter({"Conv": 2, "Relu": 2, "Flatten": 1, "Gemm": 1})
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_torch_fresh_bn_after_identity_cleanup(export_torch):
    """A freshly built BN has mean == bias and var == weight, and the exporter shares such
    initializers through Identity nodes: fold_batchnorm does not fire until
    eliminate_dead has bypassed them."""
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    g = export_torch(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), torch.randn(1, 3, 6, 6))
    assert op_counts(g)["Identity"] == 2
    assert not fold(g).modified
    cleaned = get_pass("eliminate_dead")(g, NO_VERIFY).graph
    result = fold(cleaned)
    assert result.details["folded"] == 1 and op_counts(result.graph) == Counter({"Conv": 1})
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "name,count",
    [
        ("shufflenet", 49),
        pytest.param("resnet50", 53, marks=pytest.mark.slow),
        pytest.param("inception_v2", 69, marks=pytest.mark.slow),
    ],
)
def test_light_models_after_constant_folding(name, count, light_model):
    g = light_model(name)
    assert op_counts(g)["BatchNormalization"] == count
    assert not fold(g).modified  # the Conv weights are ConstantOfShape outputs until folded
    ctx = PassContext(verify=False, knobs={"fold_constants": {"max_bytes": 64 << 20}})
    constant = get_pass("fold_constants")(g, ctx).graph
    result = fold(constant)
    assert result.details["folded"] == count
    assert op_counts(result.graph)["BatchNormalization"] == 0
    assert op_counts(result.graph)["Conv"] == op_counts(g)["Conv"]
    assert len(result.graph) == len(constant) - count
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- property
@settings(max_examples=25, deadline=None)
@given(
    groups=st.sampled_from([1, 2, 3]),
    per_group_in=st.integers(1, 3),
    per_group_out=st.integers(1, 3),
    rank=st.integers(1, 2),
    bias=st.booleans(),
    eps=st.floats(1e-6, 1e-1),
    seed=st.integers(0, 2**16),
)
def test_property_conv_bn_fold_is_exact(groups, per_group_in, per_group_out, rank, bias, eps, seed):
    g = conv_bn(
        cin=groups * per_group_in,
        cout=groups * per_group_out,
        groups=groups,
        bias=bias,
        rank=rank,
        eps=eps,
        seed=seed,
    )
    result = fold(g)
    assert result.details["folded"] == 1 and op_counts(result.graph)["BatchNormalization"] == 0
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL, seed=seed, check_model=False)
