"""winograd: the F(2, 3) matrices against direct correlation, the lowered graph against
the Conv in onnxruntime (structure and numbers on the same graph), the 2.25x MAC cut as
the workload view sees it, and the convolutions it must not touch."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwcc
from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import run_onnx
from hwcc.ir.workload import analyze
from hwcc.passes.lib.winograd_math import AT, BT, G, additions, filter_transform
from hwcc.testing import assert_equivalent, conv_graph, op_counts, with_batch

RTOL, ATOL = 1e-4, 1e-5


def winograd(graph: Graph, **knobs):
    ctx = PassContext(verify=False, knobs={"winograd": knobs})  # the tests compare explicitly
    return get_pass("winograd")(graph, ctx)


def conv(
    *, n=2, c=5, m=7, h=8, w=8, k=3, bias=True, relu=True, dtype=np.float32, seed=0, **attrs
) -> Graph:
    """x -> Conv [-> Relu] -> y."""
    return conv_graph(
        batch=n,
        cin=c,
        cout=m,
        size=(h, w),
        kernel=k,
        bias=bias,
        relu=relu,
        dtype=dtype,
        seed=seed,
        **attrs,
    )


# ---------------------------------------------------------------------- the matrices
def _f23(d: np.ndarray, g: np.ndarray, bt=BT, gm=G, at=AT) -> np.ndarray:
    return at @ ((gm @ g) * (bt @ d))


def test_matrices_compute_1d_correlation_exactly():
    rng = np.random.default_rng(0)
    for _ in range(100):
        d, g = rng.normal(size=4), rng.normal(size=3)
        direct = np.array([d[i : i + 3] @ g for i in range(2)])
        np.testing.assert_allclose(_f23(d, g), direct, rtol=1e-12, atol=1e-12)


def test_matrices_compute_2d_correlation_exactly():
    rng = np.random.default_rng(1)
    for _ in range(50):
        d, g = rng.normal(size=(4, 4)), rng.normal(size=(3, 3))
        direct = np.array(
            [[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(2)] for i in range(2)]
        )
        y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
        np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("which", ["BT", "G", "AT"])
def test_a_single_sign_error_is_caught(which):
    """The check above is sharp: flipping the sign of any one non-zero entry of any of the
    three matrices breaks it (the transcription error the check exists for)."""
    rng = np.random.default_rng(2)
    d, g = rng.normal(size=4), rng.normal(size=3)
    direct = np.array([d[i : i + 3] @ g for i in range(2)])
    mats = {"BT": BT, "G": G, "AT": AT}
    for idx in zip(*np.nonzero(mats[which])):
        wrong = mats[which].copy()
        wrong[idx] = -wrong[idx]
        kw = {"bt": BT, "gm": G, "at": AT, {"BT": "bt", "G": "gm", "AT": "at"}[which]: wrong}
        assert not np.allclose(_f23(d, g, **kw), direct, atol=1e-6), (which, idx)


def test_additions_rebuild_the_matrices():
    for mat in (BT, AT):
        rebuilt = np.zeros_like(mat)
        for i, (plus, minus) in enumerate(additions(mat)):
            rebuilt[i, plus], rebuilt[i, minus] = 1, -1
        np.testing.assert_array_equal(rebuilt, mat)
    with pytest.raises(ValueError, match="0 and ±1"):
        additions(G)


def test_filter_transform_is_g_g_gt_per_filter():
    w = np.random.default_rng(3).normal(size=(4, 3, 3, 3))
    u = filter_transform(w)
    assert u.shape == (16, 4, 3)
    for m, c in [(0, 0), (3, 2), (1, 1)]:
        np.testing.assert_allclose(u[:, m, c].reshape(4, 4), G @ w[m, c] @ G.T, rtol=1e-14)


# ---------------------------------------------------------------------- lowering
LOWERED_OPS = {"Gather": 2, "Split": 4, "Concat": 4, "Transpose": 2, "MatMul": 1}


def assert_lowered(before: Graph, result, n_convs: int = 1) -> None:
    g = result.graph
    assert result.modified and len(result.details["lowered"]) == n_convs
    counts = op_counts(g)
    counts.subtract(op_counts(before))
    assert all(counts[op] == n * n_convs for op, n in LOWERED_OPS.items()), counts
    assert counts["Reshape"] >= 3 * n_convs  # a fourth shapes a run-time bias
    # Bᵀ, once per axis: 1 Add, 3 Sub; Aᵀ, once per axis: 2 Add, 2 Sub (+ the bias Add).
    assert counts["Sub"] == 10 * n_convs and counts["Add"] >= 6 * n_convs
    matmuls = g.find("MatMul")
    assert all(
        mm.meta["winograd"]["F"] == "2x2,3x3" and mm.meta["winograd"]["mults_per_output"] == 4
        for mm in matmuls
    )
    assert counts["Conv"] == -n_convs and not any(g.has_node(n) for n in result.details["lowered"])


@pytest.mark.parametrize(
    "h,w,pads",
    [
        (8, 8, [1, 1, 1, 1]),  # even output
        (7, 9, [1, 1, 1, 1]),  # odd output: the tiles overhang and are cropped
        (8, 8, [0, 0, 0, 0]),  # 6x6, no Pad needed
        (9, 6, [0, 0, 0, 0]),  # 7x4
        (6, 7, [2, 0, 1, 3]),  # asymmetric pads
        (5, 5, [2, 2, 2, 2]),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_lowered_conv_equals_the_conv(h, w, pads, bias):
    g = conv(h=h, w=w, pads=pads, bias=bias)
    result = winograd(g)
    assert_lowered(g, result)
    assert op_counts(result.graph)["Conv"] == 0 and op_counts(result.graph)["Relu"] == 1
    odd = (h + pads[0] + pads[2]) % 2 or (w + pads[1] + pads[3]) % 2
    assert op_counts(result.graph)["Slice"] == (1 if odd else 0)
    assert set(result.graph.initializers).isdisjoint({"w", "b"})  # the Conv's weight is gone
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad(auto_pad):
    g = conv(h=7, w=10, auto_pad=auto_pad)
    result = winograd(g)
    assert_lowered(g, result)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def _direct_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, pads) -> np.ndarray:
    """Cross-correlation as ONNX defines Conv, in float64, by the definition."""
    top, left, bot, right = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bot), (left, right)))
    p, q = xp.shape[2] - 2, xp.shape[3] - 2
    y = np.zeros((x.shape[0], w.shape[0], p, q))
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,mc->nmhw", xp[:, :, i : i + p, j : j + q], w[:, :, i, j])
    return y + b[None, :, None, None]


def test_conv_writing_a_graph_output_float64():
    """onnxruntime has no float64 Conv: the lowered graph is checked against the definition."""
    g = conv(relu=False, dtype=np.float64, h=6, w=11, pads=[1, 1, 1, 1])
    result = winograd(g)
    assert result.graph.outputs == ["y"] and result.graph.producer("y").op_type == "Add"
    assert result.graph.initializer(result.graph.find("MatMul")[0].inputs[0]).dtype == np.float64
    onnx.checker.check_model(onnx_io.to_proto(result.graph), full_check=True)
    x = np.random.default_rng(4).normal(size=(2, 5, 6, 11))
    want = _direct_conv(x, g.initializer("w"), g.initializer("b"), [1, 1, 1, 1])
    np.testing.assert_allclose(run_onnx(result.graph, {"x": x})[0], want, rtol=1e-12, atol=1e-12)


def test_float32_lowering_matches_the_definition_too():
    g = conv(relu=False, h=9, w=6, pads=[0, 2, 1, 0])
    x = np.random.default_rng(6).normal(size=(2, 5, 9, 6)).astype(np.float32)
    want = _direct_conv(x, g.initializer("w"), g.initializer("b"), [0, 2, 1, 0])
    got = run_onnx(winograd(g).graph, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_symbolic_batch_and_runtime_bias():
    g = conv(n="N", bias=False, pads=[1, 1, 1, 1])
    g.add_input("bias", dtypes.FLOAT, (7,))
    g.set_inputs(g.node("conv"), ["x", "w", "bias"])
    result = winograd(g)
    assert_lowered(g, result)
    rng = np.random.default_rng(5)
    for n in (1, 3):
        feeds = {
            "x": rng.normal(size=(n, 5, 8, 8)).astype(np.float32),
            "bias": rng.normal(size=7).astype(np.float32),
        }
        assert_equivalent(g, result.graph, feeds, rtol=RTOL, atol=ATOL, check_model=False)


def test_input_graph_is_left_unchanged():
    g = conv()
    winograd(g)
    assert op_counts(g) == Counter({"Conv": 1, "Relu": 1}) and set(g.initializers) == {"w", "b"}


def test_layers_knob_limits_the_pass():
    g = conv(relu=False, pads=[1, 1, 1, 1])
    g.rename_tensor("y", "c1")
    g.outputs = []
    g.add_initializer("w2", np.ones((7, 7, 3, 3), np.float32))
    g.add_node("Conv", ["c1", "w2"], ["y"], {"pads": [1, 1, 1, 1]}, name="conv2")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    result = winograd(g, layers="conv2")
    assert result.details["lowered"] == ["conv2"] and op_counts(result.graph)["Conv"] == 1
    assert_equivalent(g, result.graph, rtol=RTOL, atol=1e-4)
    with pytest.raises(HwccError, match="no node named 'nosuch'"):
        winograd(g, layers="nosuch")


# ---------------------------------------------------------------------- cost
def test_workload_sees_2_25x_fewer_macs_on_an_even_map():
    g = conv(n=1, c=64, m=32, h=56, w=56, pads=[1, 1, 1, 1], relu=False)
    result = winograd(g)
    before, after = analyze(g), analyze(result.graph)
    (direct,) = [x for x in before.layers if x.op_type == "Conv"]
    (mm,) = [x for x in after.layers if x.op_type == "MatMul"]
    assert "winograd" in mm.flags and direct.macs == 32 * 64 * 56 * 56 * 9
    assert mm.macs / direct.macs == pytest.approx(1 / 2.25)
    # The transforms are additions: the MatMul does every multiply of the lowered graph.
    assert after.macs == mm.macs
    assert after.params == 16 * 32 * 64 + 32  # U and the bias


def test_odd_map_saves_less_because_tiles_overhang():
    g = conv(n=1, c=8, m=8, h=7, w=7, relu=False)  # 5x5 output in 3x3 tiles
    result = winograd(g)
    ratio = analyze(result.graph).macs / analyze(g).macs
    assert ratio == pytest.approx(16 * 9 / (9 * 25))


def test_annotate_mode_flags_the_conv_and_changes_no_number():
    g = conv(n=1, c=16, m=16, h=12, w=12, pads=[1, 1, 1, 1])
    g.add_initializer("w2", np.ones((16, 16, 3, 3), np.float32))
    g.add_node("Conv", ["y", "w2"], ["z"], {"strides": [2, 2]}, name="strided")
    g.outputs = ["z"]
    onnx_io.infer_shapes(g)
    result = winograd(g, mode="annotate")
    assert (
        result.details["annotated"] == ["conv"]
        and "strides are [2, 2]" in result.details["rejected"]["strided"]
    )
    assert op_counts(result.graph) == op_counts(g)
    assert result.graph.node("conv").meta["winograd"]["lowered"] is False
    assert "winograd" not in g.node("conv").meta  # the input graph is untouched
    (layer,) = [x for x in analyze(result.graph).layers if "winograd" in x.flags]
    assert layer.name == "conv" and (layer.R, layer.S) == (3, 3)
    assert_equivalent(g, result.graph, rtol=0, atol=0, check_model=False)


# ---------------------------------------------------------------------- must not fire
def assert_not_lowered(g: Graph, why: str) -> None:
    result = winograd(g)
    assert not result.modified and result.graph is g and op_counts(g)["Conv"] >= 1
    assert why in result.reason, result.reason


@pytest.mark.parametrize(
    "attrs,why",
    [
        ({"strides": [2, 2]}, "strides are [2, 2]: Winograd tiles need stride 1"),
        ({"strides": [1, 2]}, "strides are [1, 2]"),
        ({"dilations": [2, 2]}, "dilated [2, 2]"),
        ({"group": 5}, "grouped convolution (group=5)"),  # depthwise: 5 groups of 1 channel
    ],
)
def test_not_for_strided_dilated_or_grouped(attrs, why):
    """Stride 2 would compute 4x the outputs needed; dilation spreads the window past the
    4x4 tile; grouped and depthwise Convs sum over channels per group, not in one MatMul."""
    assert_not_lowered(conv(m=5, h=12, w=12, **attrs), why)


@pytest.mark.parametrize("k", [1, 5])
def test_not_for_other_kernel_sizes(k):
    """1x1 has no window to share; 5x5 needs other matrices (F(2x2,5x5))."""
    assert_not_lowered(conv(k=k), f"kernel is {k}x{k}")


def test_not_when_the_weight_is_not_constant():
    g = conv()
    g.inputs.append("w")  # an overridable initializer
    assert_not_lowered(g, "not a constant initializer")


def test_not_for_1d_convolution():
    g = Graph("c1d")
    g.add_input("x", dtypes.FLOAT, (1, 2, 9))
    g.add_initializer("w", np.ones((3, 2, 3), np.float32))
    g.add_node("Conv", ["x", "w"], ["y"], name="conv")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    assert_not_lowered(g, "1-D convolution")


def test_not_for_unknown_spatial_size():
    g = conv(h="H", w=8)
    assert_not_lowered(g, "not all known")


def test_not_for_integer_or_half_precision():
    assert_not_lowered(conv(dtype=np.float16), "not float32 or float64")


def test_not_below_opset_13():
    g = conv()
    g.opset_imports[""] = 12
    assert_not_lowered(g, "opset is below 13")


def test_not_when_tiles_would_multiply_more():
    """A 1x1 output in a 2x2 tile: 16 multiplies for 1 output against 9."""
    assert_not_lowered(conv(h=3, w=3), "multiply more than the Conv")


# ---------------------------------------------------------------------- real graphs
@pytest.mark.parametrize("model,count", [("resnet-digits", 6), ("mobilenet-digits", 1)])
def test_trained_digits_models_on_real_data(model, count, digits_test):
    x, labels = digits_test
    g = with_batch(hwcc.load(f"zoo:{model}"), len(x))
    result = winograd(g)
    assert_lowered(g, result, count)
    assert all(
        "strides are [2, 2]" in why or "kernel is 1x1" in why or "group=" in why
        for why in result.details["rejected"].values()
    )
    onnx.checker.check_model(onnx_io.to_proto(result.graph), full_check=True)
    feeds = {g.real_inputs()[0]: x}
    (want,), (got,) = run_onnx(g, feeds), run_onnx(result.graph, feeds)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    assert np.array_equal(got.argmax(1), want.argmax(1)) and (got.argmax(1) == labels).mean() > 0.98


@pytest.mark.parametrize(
    "model,count",
    [
        ("squeezenet1_1", 8),
        pytest.param("resnet18", 13, marks=pytest.mark.slow),
        pytest.param("googlenet", 10, marks=pytest.mark.slow),
    ],
)
def test_zoo_architectures(model, count):
    g = hwcc.load(f"zoo:{model}")
    result = winograd(g)
    assert_lowered(g, result, count)
    before, after = analyze(g), analyze(result.graph)
    assert after.macs < before.macs
    assert_equivalent(g, result.graph, rtol=RTOL, atol=1e-5)


# ---------------------------------------------------------------------- property
@settings(max_examples=20, deadline=None)
@given(
    c=st.integers(1, 4),
    m=st.integers(1, 4),
    h=st.integers(3, 9),
    w=st.integers(3, 9),
    pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_property_lowering_is_exact(c, m, h, w, pads, seed):
    g = conv(n=1, c=c, m=m, h=h, w=w, pads=pads, seed=seed, relu=False)
    result = winograd(g)
    p, q = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    if 16 * -(-p // 2) * -(-q // 2) >= 9 * p * q:
        assert not result.modified and "multiply more" in result.reason
        return
    assert_lowered(g, result)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL, seed=seed, check_model=False)
