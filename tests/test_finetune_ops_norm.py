"""finetune's torch executor against onnxruntime for the normalisations (LayerNormalization's
Mean and InvStdDev outputs, and hwcc/train/ops/norm_ops.py: RMSNormalization,
MeanVarianceNormalization, LpNormalization) and for the elementwise arithmetic on unsigned
integers (hwcc/train/ops/elementwise.py): one small graph per setting, the same inputs to
both, explicit tolerances; and the settings a builder refuses, refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import check_against_ort
from finetune_graphs import typed_model as model
from onnx import helper

from hwcc.errors import HwccError
from hwcc.train.graph_module import to_torch

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

N = helper.make_node
F16, F32 = np.float16, np.float32
NORM_TOL = {"rtol": 1e-4, "atol": 1e-5}  # float32 statistics: summation order differs
EXACT = {"rtol": 0, "atol": 0}  # integer arithmetic


def check(nodes, feeds, inits, outputs, *, rtol, atol, opset=17) -> None:
    check_against_ort(nodes, feeds, inits, outputs, opset=opset, rtol=rtol, atol=atol)


def rand(*shape, seed=0, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(F32)


# ---------------------------------------------------------------------- LayerNormalization
@pytest.mark.parametrize("axis", [-1, 1, -2, 0])
def test_layer_norm_mean_and_inv_std_dev(axis):
    x = rand(2, 3, 4, scale=3.0, shift=2.0)
    w = rand(*x.shape[axis:], seed=1)
    b = rand(*x.shape[axis:], seed=2)
    check(
        [N("LayerNormalization", ["x", "w", "b"], ["y", "mean", "inv"], axis=axis, epsilon=1e-3)],
        {"x": x},
        {"w": w, "b": b},
        {"y": F32, "mean": F32, "inv": F32},
        **NORM_TOL,
    )


def test_layer_norm_inv_std_dev_only_and_no_bias():
    x = rand(3, 5)
    check(
        [N("LayerNormalization", ["x", "w"], ["y", "", "inv"])],
        {"x": x},
        {"w": rand(5, seed=1)},
        {"y": F32, "inv": F32},
        **NORM_TOL,
    )


def test_layer_norm_float16_input_float32_stash():
    x = rand(2, 8, scale=4.0).astype(F16)
    check(
        [N("LayerNormalization", ["x", "w", "b"], ["y", "mean", "inv"], stash_type=1)],
        {"x": x},
        {"w": rand(8, seed=1).astype(F16), "b": rand(8, seed=2).astype(F16)},
        {"y": F16, "mean": F32, "inv": F32},
        rtol=2e-3,  # float16's half ulp is 5e-4; one rounding of y, of w*y and of +b
        atol=2e-3,
    )


def test_layer_norm_scale_and_bias_stay_trainable():
    g = model(
        [N("LayerNormalization", ["x", "w", "b"], ["y", "mean", "inv"])],
        {"x": rand(2, 4)},
        {"w": rand(4, seed=1), "b": rand(4, seed=2)},
        {"y": F32, "mean": F32, "inv": F32},
    )
    assert set(to_torch(g).onnx_parameters) == {"w", "b"}


# ---------------------------------------------------------------------- norm_ops.py
@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_rms_norm(axis):
    x = rand(2, 3, 4, scale=2.0, shift=1.0)
    check(
        [N("RMSNormalization", ["x", "w"], ["y"], axis=axis, epsilon=1e-4)],
        {"x": x},
        {"w": rand(*x.shape[axis:], seed=1)},
        {"y": F32},
        opset=23,
        **NORM_TOL,
    )


def test_rms_norm_scale_is_trainable_and_learns():
    g = model(
        [N("RMSNormalization", ["x", "w"], ["y"])],
        {"x": rand(2, 4)},
        {"w": np.ones(4, F32)},
        {"y": F32},
        opset=23,
    )
    m = to_torch(g)
    (w,) = m.onnx_parameters.values()
    m(x=rand(2, 4))[0].sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


@pytest.mark.parametrize("axes", [None, [0, 2, 3], [1], [-1, -2]])
def test_mean_variance_normalization(axes):
    x = rand(2, 3, 4, 5, scale=3.0, shift=-1.0)
    attrs = {} if axes is None else {"axes": axes}
    check(
        [N("MeanVarianceNormalization", ["x"], ["y"], **attrs)],
        {"x": x},
        {},
        {"y": F32},
        **NORM_TOL,
    )


@pytest.mark.parametrize(("p", "axis"), [(2, -1), (1, -1), (2, 0), (1, 1)])
def test_lp_normalization_with_a_zero_vector(p, axis):
    x = rand(3, 4)
    x[1, :] = 0  # a zero row: its norm along the last axis is 0 and it stays 0
    x[:, 2] = 0  # a zero column, likewise along axis 0
    check(
        [N("LpNormalization", ["x"], ["y"], p=p, axis=axis)],
        {"x": x},
        {},
        {"y": F32},
        **NORM_TOL,
    )


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("node", "opset", "match"),
    [
        (N("LayerNormalization", ["x", "w"], ["y"], stash_type=7), 17, "stash_type 7"),
        (N("RMSNormalization", ["x", "w"], ["y"], stash_type=6), 23, "stash_type 6"),
        (N("LayerNormalization", ["x", "w"], ["y"], axis=2), 17, "axis 2 is outside"),
        (N("RMSNormalization", ["x", "w"], ["y"], axis=-3), 23, "axis -3 is outside"),
        (N("LpNormalization", ["x"], ["y"], p=3), 17, "p=3"),
    ],
)
def test_refused_by_name(node, opset, match):
    g = model([node], {"x": rand(2, 4)}, {"w": np.ones(4, F32)}, {"y": F32}, opset)
    with pytest.raises(HwccError, match=match) as err:
        to_torch(g)
    assert node.op_type in str(err.value)


# ---------------------------------------------------------------------- unsigned arithmetic
UINTS = [np.uint8, np.uint16, np.uint32, np.uint64]


def uints(dtype, *shape, seed=0, low=0):
    hi = np.iinfo(dtype).max
    v = np.random.default_rng(seed).integers(low, hi, shape, dtype=dtype, endpoint=True)
    v.flat[:4] = [hi, 0, hi - 1, max(low, 1)][: v.size]  # wrap-around edges
    return v


@pytest.mark.parametrize("dtype", UINTS)
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
def test_unsigned_arithmetic_wraps_around(op, dtype):
    check(
        [N(op, ["a", "b"], ["y"])],
        {"a": uints(dtype, 3, 5), "b": uints(dtype, 3, 5, seed=1)},
        {},
        {"y": dtype},
        **EXACT,
    )


@pytest.mark.parametrize("dtype", UINTS)
def test_unsigned_arithmetic_broadcasts(dtype):
    check(
        [N("Sub", ["a", "b"], ["d"]), N("Add", ["d", "c"], ["y"])],
        {"a": uints(dtype, 2, 3), "b": uints(dtype, 3, seed=1)},
        {"c": np.array([7], dtype)},
        {"y": dtype},
        **EXACT,
    )


@pytest.mark.parametrize("dtype", UINTS)
def test_unsigned_division_truncates(dtype):
    a = uints(dtype, 4, 6)
    b = uints(dtype, 4, 6, seed=1, low=1)
    b[0] = [1, 2, 3, 7, 255, 1000 % np.iinfo(dtype).max]  # small divisors too
    b[b == 0] = 1
    if dtype == np.uint64:
        b[1, :2] = [2**63, 2**63 + 5]  # divisors beyond int64's range
    check([N("Div", ["a", "b"], ["y"])], {"a": a, "b": b}, {}, {"y": dtype}, **EXACT)
