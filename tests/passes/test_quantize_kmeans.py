"""quantize_kmeans: weight sharing by k-means with Huffman-coded storage, and EIE's codebook
(zero slot, fixed-point values). Hand-checked sizes and codebooks, structure and numbers on
the same graphs, accuracy on the digits test split, and where the pass must not fire."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwcc.errors import HwccError
from hwcc.formats import huffman as _huffman
from hwcc.ir import Graph, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.models import digits
from hwcc.passes.lib import kmeans as _kmeans
from hwcc.passes.prune_weights import magnitude_prune
from hwcc.passes.quantize_kmeans import QuantizeKmeans
from hwcc.targets.base import load_target
from hwcc.testing import gemm_graph, weight_of


def share(graph: Graph, pass_=None, verify=False, **knobs):
    ctx = PassContext(verify=verify, knobs={"quantize_kmeans": knobs})
    return (pass_ or get_pass("quantize_kmeans"))(graph, ctx)


def test_linear_init_and_kmeans_on_a_hand_example():
    """Init [-1, 0, 1, 2]; -1 and -0.9 go to -1, 0.1 and 0.2 to 0, 1.9 and 2 to 2, 1 is
    empty and stays. One step moves them to the means; the next changes nothing."""
    w = np.array([-1.0, -0.9, 0.1, 0.2, 1.9, 2.0])
    np.testing.assert_array_equal(_kmeans.linear_init(w, 4), [-1, 0, 1, 2])
    centroids, steps = _kmeans.kmeans_1d(w, 4)
    np.testing.assert_allclose(centroids, [-0.95, 0.15, 1.0, 1.95], rtol=0, atol=1e-12)
    assert steps == 1
    shared = _kmeans.share_weights(w.astype(np.float32), 2)
    np.testing.assert_allclose(shared.values, [-0.95, -0.95, 0.15, 0.15, 1.95, 1.95], rtol=1e-6)
    assert not shared.sparse and list(shared.index) == [0, 0, 1, 1, 3, 3]


def test_huffman_hand_example():
    # counts 5, 2, 1, 1: merge 1+1, then 2+2, then 4+5 -> lengths 1, 2, 3, 3.
    assert list(_huffman.code_lengths([5, 2, 1, 1])) == [1, 2, 3, 3]
    assert _huffman.coded_bits([5, 2, 1, 1]) == 5 + 4 + 3 + 3
    assert list(_huffman.code_lengths([0, 7, 0])) == [0, 1, 0]  # one symbol still costs a bit
    assert _huffman.stream_bits(np.array([2, 2, 2])) == 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=40))
def test_property_huffman_is_a_complete_prefix_code_no_longer_than_fixed(counts):
    counts = np.array(counts)
    lengths = _huffman.code_lengths(counts)
    used = counts > 0
    if used.sum() >= 2:
        assert sum(2.0 ** -lengths[used]) == pytest.approx(1.0)  # Kraft: a full binary tree
    fixed = counts.sum() * max(1, math.ceil(math.log2(len(counts))))
    assert _huffman.coded_bits(counts) <= fixed


def test_kmeans_dense_layer_storage_by_hand():
    """Values {-3, -1, 1, 3}: the linear init of 4 centroids hits them exactly. Index
    counts 1, 1, 5, 1 -> Huffman lengths 3, 3, 1, 2 = 13 bits against 8·2 = 16."""
    w = np.array([[-3, -1, 1, 1], [1, 1, 1, 3]], dtype=np.float32)
    result = share(gemm_graph(w), bits=2)
    info = result.details["layers"]["fc"]
    assert info["sqnr_db"] == math.inf and info["format"] == "dense" and info["clusters"] == 4
    assert (info["index_bits"], info["index_huffman_bits"]) == (16, 13)
    assert info["overhead_bits"] == 4 * 32
    assert (info["fixed_bits"], info["huffman_bits"]) == (144, 141)
    assert info["huffman_saving"] == pytest.approx(3 / 16)
    assert info["bits_before"] == 8 * 32


def test_kmeans_sparse_layer_storage_by_hand():
    """Four non-zeros in a 40x2 weight (rows = outputs), 3 bits: room for 7 centroids and
    zero, so the four values are kept exactly (codebook: zero and them, 5·32 bits). CSC on
    one PE: column 0 holds rows 0 and 36 (a gap of 35: two padding entries, then z=3),
    column 1 rows 1 and 3 (z=1 each): 6 entries of 3+4 bits, 3 pointers of 16 bits.
    Huffman: indices {0: 2, four values: 1 each} -> 14 bits; relative indices
    {15: 2, 1: 2, 0: 1, 3: 1} -> 12 bits."""
    w = np.zeros((40, 2), dtype=np.float32)
    w[0, 0], w[36, 0], w[1, 1], w[3, 1] = 1.5, -2.0, 0.75, 3.0
    result = share(gemm_graph(w), bits=3)
    info = result.details["layers"]["fc"]
    assert np.array_equal(weight_of(result.graph, "fc"), w)  # 4 values <= 7 centroids: exact
    assert info["sparse"] and info["format"] == "sparse" and info["clusters"] == 4
    assert (info["entries"], info["padding"]) == (6, 2)
    assert info["index_bits"] == 6 * 7 and info["overhead_bits"] == 3 * 16 + 5 * 32
    assert info["index_huffman_bits"] == 14 + 12
    assert info["huffman_bits"] == 26 + 208 and info["fixed_bits"] == 42 + 208


@pytest.mark.parametrize("bits", [2, 4])
def test_kmeans_distinct_values_per_layer(lenet5, bits):
    result = share(lenet5, verify=True, bits=bits)
    for name, info in result.details["layers"].items():
        w = weight_of(result.graph, name)
        assert np.unique(w).size <= 2**bits and info["distinct_values"] == np.unique(w).size
        assert result.graph.node(name).meta["weight_bits"] == bits
        sharing = result.graph.node(name).meta["weight_sharing"]
        assert sharing == {"bits": bits, "clusters": 2**bits}
        assert info["huffman_bits"] <= info["fixed_bits"] < info["bits_before"]
    onnx.checker.check_model(onnx_io.to_proto(result.graph), full_check=True)
    total = result.details["total"]
    assert total["compression"] > 32 / bits * 0.9  # the codebooks are small next to the indices
    json.dumps({k: v for k, v in result.details.items() if k != "verification"})


def test_kmeans_sqnr_rises_with_bits_on_a_zoo_layer(lenet5):
    sqnr = [
        share(lenet5, bits=b, layers="/6/Gemm").details["sqnr_db"]["/6/Gemm"] for b in range(2, 9)
    ]
    assert all(b > a for a, b in zip(sqnr, sqnr[1:])), sqnr
    assert 7 < sqnr[0] < 10 and 33 < sqnr[-1] < 38  # about 5.5 dB a bit on this layer


def test_kmeans_on_a_pruned_layer_keeps_zeros_and_huffman_saves(lenet5):
    """Deep Compression's pipeline on one layer: prune to 10 %, share at 5 bits."""
    w = weight_of(lenet5, "/6/Gemm")
    pruned = magnitude_prune(w, w.size // 10)
    g = lenet5.copy()
    g.add_initializer(g.node("/6/Gemm").inputs[1], pruned)
    result = share(g, bits=5, layers="/6/Gemm")
    out = weight_of(result.graph, "/6/Gemm")
    assert np.array_equal(out == 0, pruned == 0)
    assert np.unique(out[out != 0]).size <= 31
    info = result.details["layers"]["/6/Gemm"]
    assert info["format"] == "sparse" and info["padding"] > 0
    assert 0.10 < info["huffman_saving"] < 0.30
    assert info["bits_before"] / info["huffman_bits"] > 30  # float32 dense -> 10 % at ~8 bits


def test_kmeans_per_layer_bits_and_model_numbers(lenet5, tmp_path, digits_accuracy, digits_logits):
    bits = {"/0/Conv": 8, "/8/Gemm": 3}
    for result in (
        share(lenet5, bits=6, layer_bits="/0/Conv=8,/8/Gemm=3"),
        share(lenet5, pass_=QuantizeKmeans(layer_bits=bits), bits=6),
    ):
        got = {n: i["bits"] for n, i in result.details["layers"].items()}
        assert got == {"/0/Conv": 8, "/2/Conv": 6, "/6/Gemm": 6, "/8/Gemm": 3}
    # 6 bits everywhere: the logits follow the float model's, and so does the accuracy.
    result = share(lenet5, bits=6)
    ref, out = digits_logits(lenet5), digits_logits(result.graph)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    base = digits_accuracy(lenet5, tmp_path, "f")
    assert abs(digits_accuracy(result.graph, tmp_path, "k6") - base) <= 0.01


def test_kmeans_twice_changes_nothing(lenet5):
    once = share(lenet5, bits=3)
    twice = share(once.graph, bits=3)
    assert not twice.modified and "already" in twice.reason


# ---------------------------------------------------------------------- kmeans: EIE's codebook
EIE_FORM = {"bits": 4, "zero_slot": True, "codebook_bits": 16}


@pytest.fixture(scope="module")
def lenet300_eie_form(lenet300):
    """lenet300-digits (dense) in EIE's legal form, read from the target's TOML."""
    form = load_target("eie").legal_form["quantize_kmeans"]
    assert form == EIE_FORM
    result = share(lenet300, **form)
    assert result.modified
    return result


def fixed_steps(w: np.ndarray, f: int) -> np.ndarray:
    """``w·2^f`` (exact in float64 for float32 ``w``)."""
    return w.astype(np.float64) * 2.0**f


def test_kmeans_zero_slot_and_fixed_codebook_by_hand():
    """Non-zeros {-1 ×2, 0.1, 0.3, 1.25 ×2}, 2 bits with a zero slot: 3 centroids from
    linspace(-1, 1.25, 3) = [-1, 0.125, 1.25]; 0.1 and 0.3 share 0.2, one Lloyd step.
    codebook_bits=4 (q in [-8, 7]): f = 2 (1.25·2^3 = 10 > 7), 0.2 -> round(0.8)/4 = 0.25.
    codebook_bits=3 (q in [-4, 3]): f = 1, 1.25 -> round(2.5)/2 = 1 (half to even) and
    0.2 -> round(0.4)/2 = 0: those two weights become zero, the decoder's value for them."""
    w = np.array([[1.25, 0.3, -1.0], [0.1, 1.25, -1.0]], dtype=np.float32)
    result = share(gemm_graph(w), bits=2, zero_slot=True, codebook_bits=4)
    out = weight_of(result.graph, "fc")
    np.testing.assert_array_equal(out, [[1.25, 0.25, -1.0], [0.25, 1.25, -1.0]])
    np.testing.assert_array_equal(fixed_steps(out, 2), [[5, 1, -4], [1, 5, -4]])
    info = result.details["layers"]["fc"]
    assert (info["clusters"], info["codebook_frac_bits"], info["rounded_to_zero"]) == (3, 2, 0)
    # [0, -1, 0.25, 1.25] at 4 bits
    assert info["format"] == "dense" and info["overhead_bits"] == 4 * 4
    assert result.graph.node("fc").meta["weight_sharing"] == {
        "bits": 2,
        "clusters": 3,
        "zero_slot": True,
        "codebook_bits": 4,
        "codebook_frac_bits": 2,
    }
    shared = _kmeans.share_weights(w, 2, zero_slot=True, codebook_bits=4)
    np.testing.assert_array_equal(shared.codebook, [0, -1, 0.25, 1.25])
    np.testing.assert_array_equal(shared.index, [[3, 2, 1], [2, 3, 1]])  # index 0 left for zero
    np.testing.assert_array_equal(shared.codebook[shared.index], out)
    # Without the zero slot, 4 centroids hold the 4 values exactly: the slot costs one value.
    np.testing.assert_array_equal(_kmeans.share_weights(w, 2).values, w)

    three = share(gemm_graph(w), bits=2, zero_slot=True, codebook_bits=3)
    np.testing.assert_array_equal(weight_of(three.graph, "fc"), [[1, 0, -1], [0, 1, -1]])
    info = three.details["layers"]["fc"]
    assert (info["clusters"], info["codebook_frac_bits"], info["rounded_to_zero"]) == (2, 1, 2)
    assert info["sparse"] and info["distinct_values"] == 3


@pytest.mark.parametrize("bits", [2, 4])
def test_kmeans_zero_slot_leaves_index_zero_for_zero_in_dense_layers(lenet300, bits):
    plain = share(lenet300, bits=bits)
    result = share(lenet300, verify=True, bits=bits, zero_slot=True)
    for name, info in result.details["layers"].items():
        w0, w = weight_of(lenet300, name), weight_of(result.graph, name)
        assert np.count_nonzero(w0 == 0) == 0  # the zoo model is dense ...
        # ... and fills every index without the slot
        assert np.unique(weight_of(plain.graph, name)).size == 2**bits
        values = set(np.unique(w).tolist()) | {0.0}  # the codebook: index 0 is zero
        assert len(values) <= 2**bits and np.count_nonzero(w == 0) == 0
        assert info["clusters"] == 2**bits - 1 and info["zero_slot"] and not info["sparse"]
        sharing = result.graph.node(name).meta["weight_sharing"]
        assert sharing == {"bits": bits, "clusters": 2**bits - 1, "zero_slot": True}
        shared = _kmeans.share_weights(w0, bits, zero_slot=True)
        assert shared.codebook[0] == 0 and len(shared.codebook) == 2**bits
        assert shared.index.min() >= 1
        np.testing.assert_array_equal(shared.codebook[shared.index], w)
    onnx.checker.check_model(onnx_io.to_proto(result.graph), full_check=True)


@pytest.mark.parametrize("book_bits", [8, 16])
def test_kmeans_fixed_point_codebook_is_exact(lenet300, book_bits):
    """Every weight is q·2^-f with an integer q of book_bits bits, f per layer; and no
    farther from the original than the float centroid it came from, plus half a step.
    At 8 bits (f = 6 on /1/Gemm) that layer's centroid nearest zero rounds to 0: its 2403
    weights become zero and 14 non-zero values are left (measured); at 16 bits none does."""
    floats = share(lenet300, bits=4, zero_slot=True)
    result = share(lenet300, bits=4, zero_slot=True, codebook_bits=book_bits)
    lo, hi = -(2 ** (book_bits - 1)), 2 ** (book_bits - 1) - 1
    for name, info in result.details["layers"].items():
        w0, w = weight_of(lenet300, name).astype(np.float64), weight_of(result.graph, name)
        f = result.graph.node(name).meta["weight_sharing"]["codebook_frac_bits"]
        assert f == info["codebook_frac_bits"]
        q = fixed_steps(w, f)
        assert np.array_equal(q, np.round(q)) and lo <= q.min() and q.max() <= hi
        assert 2 * q.min() < lo or 2 * q.max() > hi  # f is the most that fits: f + 1 would overflow
        zeros = 2403 if (book_bits, name) == (8, "/1/Gemm") else 0
        assert info["rounded_to_zero"] == np.count_nonzero(w == 0) == zeros
        assert np.unique(w[w != 0]).size == info["clusters"] == (14 if zeros else 15)
        near = np.abs(w0 - weight_of(floats.graph, name))
        assert np.all(np.abs(w0 - w) <= near + 2.0 ** -(f + 1) + 1e-6)
        assert info["overhead_bits"] == (info["clusters"] + 1) * book_bits
    onnx.checker.check_model(onnx_io.to_proto(result.graph), full_check=True)


def test_kmeans_zero_slot_keeps_exact_zeros_of_a_pruned_model(lenet300):
    ctx = PassContext(knobs={"prune_weights": {"density": 0.2}})
    pruned = get_pass("prune_weights")(lenet300, ctx).graph
    result = share(pruned, **EIE_FORM)
    for name, info in result.details["layers"].items():
        w0, w = weight_of(pruned, name), weight_of(result.graph, name)
        assert 0 < np.count_nonzero(w0 == 0) < w0.size
        np.testing.assert_array_equal(w == 0, w0 == 0)  # zeros stay, nothing else becomes zero
        assert np.unique(w).size <= 16 and 0 in w
        assert info["sparse"] and info["rounded_to_zero"] == 0
        q = fixed_steps(w, info["codebook_frac_bits"])
        assert np.array_equal(q, np.round(q)) and np.abs(q).max() <= 2**15


def test_kmeans_eie_form_differential_on_lenet300(
    lenet300, lenet300_eie_form, tmp_path, report_line, digits_accuracy, digits_logits
):
    """Original against EIE's form in onnxruntime: the logits of the whole digits test
    split within 10 % of the largest logit (measured 8.3 %), the same class for 98 % of
    the samples, accuracy within 1.5 points (measured 98.3 % -> 97.8 %)."""
    q = lenet300_eie_form.graph
    x = digits.load_split("test")[0]
    ref, out = digits_logits(lenet300), digits_logits(q)
    err = float(np.abs(out - ref).max())
    tol = 0.1 * float(np.abs(ref).max())
    assert err <= tol
    onnx.checker.check_model(onnx_io.to_proto(q), full_check=True)
    assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.98
    base, mine = digits_accuracy(lenet300, tmp_path, "f"), digits_accuracy(q, tmp_path, "eie")
    assert abs(base - mine) <= 0.015
    sqnr = lenet300_eie_form.details["sqnr_db"]
    assert all(17 < v < 20 for v in sqnr.values()), sqnr
    report_line(
        f"quantize_kmeans EIE form on lenet300-digits: max |logit error| {err:.3f} "
        f"(tolerance {tol:.3f}), "
        f"accuracy {base:.4f} -> {mine:.4f} on {len(x)} test samples, weight SQNR "
        + ", ".join(f"{k} {v:.1f} dB" for k, v in sqnr.items())
    )


def test_kmeans_eie_form_twice_changes_nothing(lenet300_eie_form):
    again = share(lenet300_eie_form.graph, **EIE_FORM)
    assert not again.modified and "already" in again.reason
    assert again.graph is lenet300_eie_form.graph
    for name, info in again.details["layers"].items():
        first = lenet300_eie_form.details["layers"][name]
        # kept exactly: 15 values for 15 centroids
        assert info["sqnr_db"] == math.inf and info["steps"] == 0
        assert info["codebook_frac_bits"] == first["codebook_frac_bits"]
        assert info["clusters"] == first["clusters"]


# ====================================================================== errors
def test_kmeans_bad_names_and_bits_are_errors(lenet5):
    with pytest.raises(HwccError, match="no Conv, Gemm or MatMul named 'conv9'"):
        share(lenet5, layers="conv9")
    with pytest.raises(HwccError, match="cannot be 9"):
        share(lenet5, bits=9)
    with pytest.raises(HwccError, match="'/8/Gemm' cannot be changed: it is not among the layers"):
        share(lenet5, layers="/0/Conv", layer_bits="/8/Gemm=3")
    with pytest.raises(HwccError, match="cannot read layer_bits"):
        share(lenet5, layer_bits="/0/Conv=eight")
    with pytest.raises(HwccError, match="gives '/0/Conv' 9 bits"):
        share(lenet5, pass_=QuantizeKmeans(layer_bits={"/0/Conv": 9}))
