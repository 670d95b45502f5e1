"""The torch executor's later ops against onnxruntime, one graph each with explicit
tolerances: fused attention and rotary embeddings, losses, signal processing, grid
sampling, bit operations and the rest of what ONNX's node tests asked for.

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
