"""finetune's torch executor against onnxruntime for the ops of hwcc/train/ops/index_ops.py
and activation_ops.py: one small graph per op (or per setting of an op), the same inputs
to both, explicit tolerances; and the settings a builder refuses, refused by name.

Resize, Upsample, DepthToSpace and SpaceToDepth are in tests/test_finetune_ops_index_resample.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import ATOL, RTOL, check_against_ort, typed_model
from onnx import helper

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.train.graph_module import to_torch

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

N = helper.make_node
F32, I64 = np.float32, np.int64


def model(nodes, feeds, inits, outputs, opset=17) -> Graph:
    return typed_model(nodes, feeds, inits, outputs, opset)


def check(nodes, feeds, inits, outputs, opset=17, rtol=RTOL, atol=ATOL) -> None:
    check_against_ort(nodes, feeds, inits, outputs, opset=opset, rtol=rtol, atol=atol)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


# ---------------------------------------------------------------------- indexing
def test_gather_elements_negative_indices_and_axis():
    idx = np.array([[0, -1, 2], [3, 1, -4]], I64)
    check(
        [N("GatherElements", ["x", "i"], ["y"], axis=1)],
        {"x": rand(2, 4)},
        {"i": idx},
        {"y": F32},
    )
    check([N("GatherElements", ["x", "i"], ["y"])], {"x": rand(5, 3)}, {"i": idx.T}, {"y": F32})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_reductions(reduction):
    idx = np.array([[1, 0, 2], [-1, 0, 1]], I64)  # duplicates only where a reduction says
    if reduction != "none":
        idx = np.array([[1, 1, 2], [0, 2, 2]], I64)
    check(
        [N("ScatterElements", ["x", "i", "u"], ["y"], axis=1, reduction=reduction)],
        {"x": rand(2, 3, seed=1), "u": rand(2, 3, seed=2)},
        {"i": idx},
        {"y": F32},
        opset=18,
    )


@pytest.mark.parametrize(
    "shape, idx, batch_dims",
    [
        ((3, 4, 2), [[0, 1], [2, -1]], 0),
        ((3, 4, 2), [[[1]], [[0]], [[2]]], 0),
        ((3, 4, 2), [[1, 0, 1], [2, 3, -2]], 0),
        ((2, 4, 3), [[[1], [3]], [[0], [2]]], 1),
        ((2, 3, 4, 2), [[[0, 1]], [[2, 3]]], 1),
    ],
)
def test_gather_nd(shape, idx, batch_dims):
    check(
        [N("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)],
        {"x": rand(*shape)},
        {"i": np.array(idx, I64)},
        {"y": F32},
    )


@pytest.mark.parametrize("axis, largest, k", [(-1, 1, 3), (1, 0, 2), (0, 1, 1)])
def test_topk_values_and_indices(axis, largest, k):
    check(
        [N("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest)],
        {"x": rand(4, 5, 6)},
        {"k": np.array([k], I64)},
        {"v": F32, "i": I64},
    )


def test_topk_opset_1_attribute_k():
    check([N("TopK", ["x"], ["v", "i"], k=2)], {"x": rand(3, 5)}, {}, {"v": F32, "i": I64}, 9)


@pytest.mark.parametrize(
    "equation, shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("bij, bjk -> bik", [(2, 3, 4), (2, 4, 2)]),
        ("...ij->...ji", [(2, 3, 4)]),
        ("ii->i", [(4, 4)]),
        ("i,j->ij", [(3,), (4,)]),
        ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
    ],
)
def test_einsum(equation, shapes):
    feeds = {f"x{i}": rand(*s, seed=i) for i, s in enumerate(shapes)}
    check([N("Einsum", list(feeds), ["y"], equation=equation)], feeds, {}, {"y": F32})


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -1, 2])
def test_trilu(upper, k):
    inputs, inits = ["x"], {}
    if k is not None:
        inputs, inits = ["x", "k"], {"k": np.array(k, I64)}
    check([N("Trilu", inputs, ["y"], upper=upper)], {"x": rand(2, 4, 5)}, inits, {"y": F32})


# ---------------------------------------------------------------------- reductions
@pytest.mark.parametrize("op", ["ReduceProd", "ReduceL2", "ReduceLogSumExp"])
@pytest.mark.parametrize("axes, keep", [((1,), 1), ((0, 2), 0), (None, 1), ((-1,), 0)])
def test_reductions_opset_18_axes_input(op, axes, keep):
    inputs, inits = ["x"], {}
    if axes is not None:
        inputs, inits = ["x", "a"], {"a": np.array(axes, I64)}
    x = rand(3, 4, 5) * 0.8
    check([N(op, inputs, ["y"], keepdims=keep)], {"x": x}, inits, {"y": F32}, 18, rtol=1e-4)


@pytest.mark.parametrize("op", ["ReduceProd", "ReduceL2", "ReduceLogSumExp"])
def test_reductions_opset_13_axes_attribute(op):
    x = rand(3, 4, 5)
    check([N(op, ["x"], ["y"], axes=[0, 2], keepdims=1)], {"x": x}, {}, {"y": F32}, 13, 1e-4)


def test_reduction_empty_axes_noop():
    check(
        [N("ReduceL2", ["x"], ["y"], noop_with_empty_axes=1)],
        {"x": rand(2, 3)},
        {},
        {"y": F32},
        18,
    )


# ---------------------------------------------------------------------- normalisation
def test_instance_normalization():
    check(
        [N("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)],
        {"x": rand(2, 3, 5, 4)},
        {"s": rand(3, seed=1), "b": rand(3, seed=2)},
        {"y": F32},
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("opset, per", [(18, "group"), (21, "channel")])
def test_group_normalization_scale_per_group_then_per_channel(opset, per):
    groups, c = 2, 6
    n = groups if per == "group" else c
    check(
        [N("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=groups, epsilon=1e-4)],
        {"x": rand(2, c, 3, 3)},
        {"s": rand(n, seed=1), "b": rand(n, seed=2)},
        {"y": F32},
        opset,
        rtol=1e-4,
        atol=1e-5,
    )


def test_normalization_scales_are_trainable():
    graph = model(
        [N("InstanceNormalization", ["x", "s", "b"], ["y"])],
        {"x": rand(1, 2, 3, 3)},
        {"s": rand(2), "b": rand(2)},
        {"y": F32},
    )
    assert set(to_torch(graph).onnx_parameters) == {"s", "b"}


# ---------------------------------------------------------------------- elementwise
@pytest.mark.parametrize(
    "op, attrs, opset",
    [
        ("Selu", {}, 17),
        ("Selu", {"alpha": 1.5, "gamma": 0.8}, 17),
        ("Elu", {}, 17),
        ("Elu", {"alpha": 0.4}, 17),
        ("Celu", {"alpha": 2.0}, 17),
        ("Mish", {}, 18),
        ("Gelu", {}, 20),
        ("Gelu", {"approximate": "tanh"}, 20),
        ("ThresholdedRelu", {"alpha": 0.3}, 17),
        ("Sin", {}, 17),
        ("Cos", {}, 17),
        ("Sign", {}, 17),
    ],
)
def test_unary_elementwise(op, attrs, opset):
    x = rand(2, 3, 4) * 2
    x[0, 0, :2] = 0.0  # Sign of zero
    check([N(op, ["x"], ["y"], **attrs)], {"x": x}, {}, {"y": F32}, opset, rtol=1e-5, atol=1e-6)


def test_round_half_to_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -3.7, 4.2], F32)
    check([N("Round", ["x"], ["y"])], {"x": x}, {}, {"y": F32}, rtol=0, atol=0)


@pytest.mark.parametrize("slope", [(1,), (3, 1, 1), (4,)])
def test_prelu_broadcast_slope_is_a_weight(slope):
    nodes, feeds = [N("PRelu", ["x", "s"], ["y"])], {"x": rand(2, 3, 5, 4)}
    check(nodes, feeds, {"s": rand(*slope, seed=1)}, {"y": F32})
    graph = model(nodes, feeds, {"s": rand(*slope, seed=1)}, {"y": F32})
    assert set(to_torch(graph).onnx_parameters) == {"s"}


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_integer_sign_follows_the_attribute(fmod):
    a = np.array([-7, -3, 0, 4, 9, 13], I64)
    b = np.array([3, -2, 5, -3, 4, -5], I64)
    check([N("Mod", ["a", "b"], ["y"], fmod=fmod)], {"a": a, "b": b}, {}, {"y": I64}, atol=0)


def test_mod_float_fmod():
    a, b = rand(3, 4) * 5, np.abs(rand(3, 4, seed=1)) + 0.5
    check([N("Mod", ["a", "b"], ["y"], fmod=1)], {"a": a, "b": b}, {}, {"y": F32})


# ---------------------------------------------------------------------- refused
def test_refused_settings_say_what_and_where():
    graph = model([N("Gelu", ["x"], ["y"], approximate="erf")], {"x": rand(2)}, {}, {"y": F32}, 20)
    with pytest.raises(HwccError, match=r"node .*\(Gelu\).*approximate='erf'"):
        to_torch(graph)
    graph = model(
        [N("GroupNormalization", ["x", "s", "b"], ["y"])],
        {"x": rand(1, 2, 2)},
        {"s": rand(2), "b": rand(2)},
        {"y": F32},
        18,
    )
    with pytest.raises(HwccError, match="num_groups"):
        to_torch(graph)
