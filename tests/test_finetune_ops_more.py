"""The torch executor's later ops against onnxruntime, one graph each with explicit
tolerances: fused and linear attention, rotary embeddings, losses, bit operations and
unsigned integers, more math, integer matmuls, NonMaxSuppression, Unique and
TfIdfVectorizer (signal, sampling and pooling ops: tests/test_finetune_ops_sampling.py).

Torch runs on one thread (the ``one_thread`` fixture in tests/conftest.py); the graph
builder and the check are in tests/finetune_graphs.py."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import check_against_ort
from onnx import helper

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

N = helper.make_node
RNG = np.random.default_rng(7)


def _f(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _attention_cases():
    q, k, v = _f(2, 4, 3, 8), _f(2, 2, 5, 8), _f(2, 2, 5, 6)
    past_k, past_v = _f(2, 2, 2, 8), _f(2, 2, 2, 6)
    mask = RNG.random((3, 7)) > 0.3
    outs = {"y": np.float32, "pk": np.float32, "pv": np.float32, "qk": np.float32}
    return {
        "gqa_causal_past_mask": (
            N("Attention", ["q", "k", "v", "m", "past_k", "past_v"], list(outs), is_causal=1),
            {"q": q, "k": k, "v": v, "m": mask, "past_k": past_k, "past_v": past_v},
            outs,
        ),
        "3d_softcap_scale": (
            N(
                "Attention",
                ["q", "k", "v"],
                ["y"],
                q_num_heads=4,
                kv_num_heads=2,
                softcap=2.0,
                scale=0.3,
            ),
            {"q": _f(2, 3, 16), "k": _f(2, 5, 8), "v": _f(2, 5, 6)},
            {"y": np.float32},
        ),
        "float_mask_probabilities": (
            N("Attention", ["q", "k", "v", "m"], ["y", "", "", "qk"], qk_matmul_output_mode=3),
            {"q": _f(1, 2, 4, 8), "k": _f(1, 2, 6, 8), "v": _f(1, 2, 6, 8), "m": _f(4, 6)},
            {"y": np.float32, "qk": np.float32},
        ),
    }


@pytest.mark.parametrize("case", list(_attention_cases()))
def test_attention_matches_onnxruntime(case):
    node, feeds, outs = _attention_cases()[case]
    check_against_ort([node], feeds, {}, outs, opset=24, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_embedding_matches_onnxruntime(interleaved):
    x, cos, sin = _f(2, 3, 4, 8), _f(16, 2), _f(16, 2)
    pos = RNG.integers(0, 16, (2, 4))
    node = N(
        "RotaryEmbedding",
        ["x", "cos", "sin", "pos"],
        ["y"],
        interleaved=interleaved,
        rotary_embedding_dim=4,
    )
    feeds = {"x": x, "cos": cos, "sin": sin, "pos": pos}
    check_against_ort([node], feeds, {}, {"y": np.float32}, opset=23, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_losses_match_onnxruntime(reduction, weighted):
    scores, target = _f(3, 5, 2), RNG.integers(0, 5, (3, 2))
    target[0, 1] = -1  # ignored
    ins = ["x", "t", "w"] if weighted else ["x", "t"]
    feeds = {"x": scores, "t": target} | ({"w": np.abs(_f(5))} if weighted else {})
    sce = N("SoftmaxCrossEntropyLoss", ins, ["loss", "logp"], reduction=reduction, ignore_index=-1)
    outs = {"loss": np.float32, "logp": np.float32}
    check_against_ort([sce], feeds, {}, outs, opset=13, rtol=1e-5, atol=1e-6)
    nll = N("NegativeLogLikelihoodLoss", ins, ["loss"], reduction=reduction, ignore_index=-1)
    check_against_ort([nll], feeds, {}, {"loss": np.float32}, opset=13, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.uint64])  # onnxruntime's types
@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_bit_shift_matches_onnxruntime_at_every_width(dtype, direction):
    info = np.iinfo(dtype)
    x = np.array([info.min, info.max, 5, 1], dtype)
    n = np.array([0, 1, 3, info.bits - 1], dtype)
    node = N("BitShift", ["x", "n"], ["y"], direction=direction)
    check_against_ort([node], {"x": x, "n": n}, {}, {"y": dtype}, opset=11, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_unsigned_comparisons_extrema_and_bitwise_ops_match_onnxruntime(dtype):
    big = np.iinfo(dtype).max
    a = np.array([0, 1, big, big - 3, 7], dtype)
    b = np.array([1, 1, 2, big, 3], dtype)
    nodes = [
        N("Greater", ["a", "b"], ["gt"]),
        N("LessOrEqual", ["a", "b"], ["le"]),
        N("BitwiseXor", ["a", "b"], ["xor"]),
        N("BitwiseNot", ["a"], ["not"]),
    ]
    outs = {"gt": np.bool_, "le": np.bool_, "xor": dtype, "not": dtype}
    if dtype != np.uint16:  # onnxruntime has no uint16 Max, Min or Mod
        nodes += [N("Max", ["a", "b"], ["max"]), N("Min", ["a", "b"], ["min"])]
        nodes += [N("Mod", ["a", "b"], ["mod"])]
        outs |= {"max": dtype, "min": dtype, "mod": dtype}
    check_against_ort(nodes, {"a": a, "b": b}, {}, outs, opset=18, rtol=0, atol=0)


def test_bit_cast_keeps_the_bits_and_the_shape():
    x = np.array(-1.5, np.float32)
    node = N("BitCast", ["x"], ["y"], to=6)
    check_against_ort([node], {"x": x}, {}, {"y": np.int32}, opset=26, rtol=0, atol=0)


def _math_cases():
    x = _f(3, 4)
    idx = np.array([[0, 1], [2, 3], [0, 1]], np.int64)
    return {
        "trig": ([N(op, ["x"], [op]) for op in ("Tan", "Atan", "Sinh", "Asinh")], {"x": x}),
        "softsign_shrink_swish": (
            [N("Softsign", ["x"], ["a"]), N("Shrink", ["x"], ["b"], lambd=0.3, bias=0.1)],
            {"x": x},
        ),
        "hardmax": ([N("Hardmax", ["x"], ["h"], axis=0)], {"x": x}),
        "cumprod": (
            [N("CumProd", ["x", "ax"], ["c"], exclusive=1, reverse=1)],
            {"x": x, "ax": np.array(1, np.int64)},
        ),
        "reductions": (
            [N(op, ["x", "axes"], [op], keepdims=0) for op in ("ReduceL1", "ReduceSumSquare")],
            {"x": x, "axes": np.array([1], np.int64)},
        ),
        "scatter_nd_add": (
            [N("ScatterND", ["x", "i", "u"], ["y"], reduction="add")],
            {"x": x, "i": idx, "u": _f(3)},
        ),
        "compress_reverse": (
            [
                N("Compress", ["x", "keep"], ["c"], axis=1),
                N("ReverseSequence", ["x", "lens"], ["r"], batch_axis=0, time_axis=1),
            ],
            {"x": x, "keep": np.array([1, 0, 1], bool), "lens": np.array([1, 4, 2], np.int64)},
        ),
    }


@pytest.mark.parametrize("case", list(_math_cases()))
def test_math_ops_match_onnxruntime(case):
    nodes, feeds = _math_cases()[case]
    outs = {o: np.float32 for n in nodes for o in n.output}
    opset = 26 if case == "cumprod" else 18
    check_against_ort(nodes, feeds, {}, outs, opset=opset, rtol=1e-5, atol=1e-6)


def test_causal_conv_with_state_matches_onnxruntime():
    node = N("CausalConvWithState", ["x", "w", "b", "past"], ["y", "state"], activation="silu")
    feeds = {"x": _f(2, 4, 8), "w": _f(4, 1, 3), "b": _f(4), "past": _f(2, 4, 2)}
    outs = {"y": np.float32, "state": np.float32}
    check_against_ort([node], feeds, {}, outs, opset=27, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ["linear", "gated_delta"])
def test_linear_attention_matches_onnxruntime(rule):
    ins = ["q", "k", "v", "past"] + (["decay", "beta"] if rule == "gated_delta" else [])
    node = N(
        "LinearAttention", ins, ["y", "state"], q_num_heads=4, kv_num_heads=2, update_rule=rule
    )
    feeds = {"q": _f(2, 3, 16), "k": _f(2, 3, 8) / 2, "v": _f(2, 3, 6), "past": _f(2, 2, 4, 3)}
    if rule == "gated_delta":
        feeds |= {"decay": -np.abs(_f(2, 3, 8)), "beta": RNG.random((2, 3, 2)).astype(np.float32)}
    outs = {"y": np.float32, "state": np.float32}
    check_against_ort([node], feeds, {}, outs, opset=27, rtol=1e-4, atol=1e-5)


def test_integer_pow_keeps_the_base_type():
    nodes = [N("Pow", ["b", "e"], ["p"])]
    feeds = {"b": np.array([2, 3, -4], np.int64), "e": np.array([2.0, 0.5, 3.0], np.float32)}
    check_against_ort(nodes, feeds, {}, {"p": np.int64}, opset=15, rtol=0, atol=0)


def test_integer_matmuls_and_dynamic_quantization_match_onnxruntime():
    a = RNG.integers(0, 255, (3, 4)).astype(np.uint8)
    b = RNG.integers(0, 255, (4, 2)).astype(np.uint8)
    u8 = lambda v: np.array(v, np.uint8)  # noqa: E731
    scale = lambda v: np.array(v, np.float32)  # noqa: E731
    nodes = [
        N("MatMulInteger", ["a", "b", "za", "zb"], ["i"]),
        N("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["q"]),
        N("DynamicQuantizeLinear", ["x"], ["dy", "ds", "dz"]),
    ]
    feeds = {"a": a, "b": b, "za": u8(120), "zb": u8(7), "x": _f(2, 5)}
    feeds |= {"sa": scale(0.02), "sb": scale(0.01), "sy": scale(0.5), "zy": u8(100)}
    outs = {"i": np.int32, "q": np.uint8, "dy": np.uint8, "ds": np.float32, "dz": np.uint8}
    check_against_ort(nodes, feeds, {}, outs, opset=13, rtol=0, atol=0)


@pytest.mark.parametrize("center", [0, 1])
def test_non_max_suppression_matches_onnxruntime(center):
    boxes = RNG.uniform(0, 1, (2, 6, 4)).astype(np.float32)
    node = N("NonMaxSuppression", ["b", "s", "n", "iou", "floor"], ["sel"], center_point_box=center)
    feeds = {"b": boxes, "s": RNG.random((2, 2, 6)).astype(np.float32)}
    feeds |= {"n": np.array([3], np.int64), "iou": np.array([0.3], np.float32)}
    feeds["floor"] = np.array([0.1], np.float32)
    check_against_ort([node], feeds, {}, {"sel": np.int64}, opset=11, rtol=0, atol=0)


@pytest.mark.parametrize("attrs", [{"sorted": 1}, {"sorted": 0}, {"axis": 1, "sorted": 0}])
def test_unique_matches_onnxruntime(attrs):
    x = RNG.integers(0, 3, (3, 4)).astype(np.float32)
    node = N("Unique", ["x"], ["y", "first", "inverse", "counts"], **attrs)
    outs = {"y": np.float32, "first": np.int64, "inverse": np.int64, "counts": np.int64}
    check_against_ort([node], {"x": x}, {}, outs, opset=11, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["TF", "IDF", "TFIDF"])
def test_tfidf_vectorizer_matches_onnxruntime(mode):
    node = N(
        "TfIdfVectorizer",
        ["x"],
        ["y"],
        mode=mode,
        min_gram_length=1,
        max_gram_length=2,
        max_skip_count=2,
        ngram_counts=[0, 3],
        ngram_indexes=[0, 1, 2, 3, 4],
        pool_int64s=[2, 3, 5, 2, 3, 5, 4],
        weights=[0.5, 1.0, 2.0, 1.5, 3.0],
    )
    x = RNG.integers(2, 6, (2, 9)).astype(np.int64)
    check_against_ort([node], {"x": x}, {}, {"y": np.float32}, opset=9, rtol=0, atol=0)
