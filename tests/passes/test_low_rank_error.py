"""low_rank's arithmetic and its error: the truncated SVD split between two factors, the
choice and parsing of ranks, then the output error falling with the rank on a random conv
and on trained and zoo layers. Exactness, structure and refusals are in test_low_rank.py."""

from __future__ import annotations

import numpy as np
import pytest

import hwcc
from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import run_onnx
from hwcc.passes.lib.low_rank_factor import choose_rank, factor, param_counts, parse_ranks
from hwcc.testing import conv_graph, with_batch


def low_rank(graph: Graph, **knobs):
    ctx = PassContext(verify=False, knobs={"low_rank": knobs})  # the tests compare explicitly
    return get_pass("low_rank")(graph, ctx)


# ---------------------------------------------------------------------- the arithmetic
def test_factors_are_the_truncated_svd_split_evenly():
    w = np.random.default_rng(0).normal(size=(30, 20))
    s = np.linalg.svd(w, compute_uv=False)
    for r in (1, 5, 20):
        a, b = factor(w, r)
        assert a.shape == (30, r) and b.shape == (r, 20)
        # Eckart–Young: the residual is exactly the dropped singular values.
        assert np.linalg.norm(w - a @ b) ** 2 == pytest.approx(
            np.sum(s[r:] ** 2), rel=1e-8, abs=1e-9
        )
        # sqrt(Σ) on each side: column i of a and row i of b both have norm sqrt(σ_i).
        np.testing.assert_allclose(np.linalg.norm(a, axis=0), np.sqrt(s[:r]), rtol=1e-8)
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), np.sqrt(s[:r]), rtol=1e-8)
    a, b = factor(w.T, 20)  # a tall matrix: the Gram matrix of the other side
    np.testing.assert_allclose(a @ b, w.T, atol=1e-12)
    a, b = factor(np.zeros((4, 6)), 3)  # nothing to keep: finite zero factors
    assert np.isfinite(a).all() and np.isfinite(b).all() and not (a @ b).any()
    with pytest.raises(ValueError):
        factor(w, 21)


@pytest.mark.parametrize(
    "full,ratio,explicit,want",
    [
        (64, 0.5, None, 32),
        (64, 0.25, None, 16),
        (10, 0.25, None, 3),  # 2.5 rounds up
        (10, 0.01, None, 1),
        (10, 1.0, None, 10),
        (10, 0.5, 7, 7),
        (10, 0.5, 99, 10),
    ],
)
def test_rank_choice(full, ratio, explicit, want):
    assert choose_rank(full, ratio, explicit) == want


def test_param_counts_and_rank_parsing():
    assert param_counts(300, 64, 16) == (19200, 16 * 364)
    assert parse_ranks("fc1=64, conv2=8", {"fc1": 3, "x": 2}) == {"fc1": 64, "conv2": 8, "x": 2}
    for bad in ("fc1", "fc1=0", "fc1=x", "=3"):
        with pytest.raises(HwccError, match="NODE=RANK"):
            parse_ranks(bad)


# ---------------------------------------------------------------------- error falling with the rank
def test_layer_output_error_falls_with_rank_on_random_conv():
    g = conv_graph(cin=16, cout=24, size=8, group=1)
    feeds = {"x": np.random.default_rng(3).normal(size=(2, 16, 8, 8)).astype(np.float32)}
    errors, _ = _errors_by_rank(g, "conv", "y", feeds, [1, 2, 4, 8, 16, 24])
    assert _non_increasing(errors) and errors[-1] < 1e-5 and errors[0] > 0.3


def _errors_by_rank(g: Graph, layer: str, out: str, feeds, ranks) -> tuple[list[float], list]:
    """Relative Frobenius error of ``out`` for ``layer`` factorised at each rank, and every
    output of the factorised graphs."""
    ref = run_onnx(g, feeds)[g.outputs.index(out)]
    errors, outputs = [], []
    for r in ranks:
        result = low_rank(g, layers=layer, ranks=f"{layer}={r}", min_params_saving=-1.0)
        assert result.details["factorised"][layer]["rank"] == r
        outputs.append(run_onnx(result.graph, feeds))
        got = outputs[-1][result.graph.outputs.index(out)]
        errors.append(float(np.linalg.norm(got - ref) / np.linalg.norm(ref)))
    return errors, outputs


def _non_increasing(errors: list[float], slack: float = 1e-6) -> bool:
    return all(b <= a + slack for a, b in zip(errors, errors[1:]))


# lenet5-digits' 500x800 FC at rank 50: 65,000 weights instead of 400,000 (6.2x).
KEEPS = {("lenet5-digits", "/6/Gemm"): (50, 0.985), ("lenet300-digits", "/3/Gemm"): (25, 0.98)}


@pytest.mark.parametrize(
    "model,layer,ranks",
    [
        ("lenet300-digits", "/1/Gemm", [1, 2, 4, 8, 16, 32, 64]),
        ("lenet300-digits", "/3/Gemm", [1, 5, 10, 25, 50, 100]),
        ("lenet5-digits", "/2/Conv", [1, 2, 5, 10, 20, 50]),
        ("lenet5-digits", "/6/Gemm", [1, 10, 50, 500]),
        ("resnet-digits", "/1/body/body.0/body.0.0/Conv", [1, 2, 4, 8, 16, 32]),
    ],
)
def test_trained_layer_error_falls_with_rank_on_digits(
    model, layer, ranks, digits_test, report_line
):
    """Real weights, real inputs: the factorised layer's output error on the 359 test
    digits never grows with the rank, vanishes at full rank, where accuracy is unchanged."""
    x, labels = digits_test
    g = with_batch(hwcc.load(f"zoo:{model}"), len(x))
    out = g.node(layer).outputs[0]
    g.outputs.append(out)
    feeds = {g.real_inputs()[0]: x}
    errors, outputs = _errors_by_rank(g, layer, out, feeds, ranks)
    assert _non_increasing(errors), errors
    assert errors[-1] < 1e-5 and errors[0] > 0.05
    accuracy = [float((logits.argmax(1) == labels).mean()) for logits, _ in outputs]
    base = float((run_onnx(g, feeds)[0].argmax(1) == labels).mean())
    assert accuracy[-1] == base and accuracy[0] < base
    if (model, layer) in KEEPS:  # a rank that costs no accuracy on the test digits
        rank, floor = KEEPS[model, layer]
        assert accuracy[ranks.index(rank)] >= floor
    report_line(
        f"low_rank {model} {layer}: rank: rel. error / accuracy "
        + ", ".join(f"{r}: {e:.4f}/{a:.3f}" for r, e, a in zip(ranks, errors, accuracy))
        + f" (original {base:.3f})"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,layer,ranks",
    [
        ("resnet18", "/11/Gemm", [1, 8, 64, 256, 512]),
        ("resnet18", "/5/body/body.1/body.1.0/Conv", [1, 16, 64, 128, 256]),
        ("alexnet", "/classifier/classifier.7/Gemm", [1, 16, 128, 1000]),
        ("alexnet", "/features/features.8/Conv", [1, 16, 64, 384]),
    ],
)
def test_zoo_layer_error_falls_with_rank(model, layer, ranks):
    g = hwcc.load(f"zoo:{model}")
    out = g.node(layer).outputs[0]
    g.outputs.append(out)
    feeds = {
        g.real_inputs()[0]: np.random.default_rng(0)
        .normal(size=g.tensors[g.real_inputs()[0]].shape)
        .astype(np.float32)
    }
    errors, _ = _errors_by_rank(g, layer, out, feeds, ranks)
    assert _non_increasing(errors, 1e-5), errors
    assert errors[-1] < 1e-4
