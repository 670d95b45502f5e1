"""quantize: int8 (QDQ through onnxruntime), kmeans (weight sharing with Huffman-coded
storage) and fixed16 (16-bit fixed point). Structure and numbers on the same graphs,
accuracy on the digits test split, hand-checked sizes, and where the pass must not fire."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwcc
from hwcc.ir import dtypes, onnx_io, workload
from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.models import digits, model_path
from hwcc.ir.transform import PassContext, apply_by_hand, get_pass
from hwcc.formats import fixed_point as _fixed_point, huffman as _huffman
from hwcc.passes.lib import kmeans as _kmeans
from hwcc.passes.lib.calibration import Runner
from hwcc.passes.prune_weights import magnitude_prune
from hwcc.passes.quantize import Quantize
from hwcc.targets.base import load_target
from hwcc.ir.verify import run_onnx

LAYER_OPS = ("Conv", "Gemm", "MatMul")


@pytest.fixture(scope="module")
def train_x() -> np.ndarray:
    return digits.load_split("train")[0]


@pytest.fixture(scope="module")
def lenet5() -> Graph:
    return hwcc.load("zoo:lenet5-digits")


def quantize(graph: Graph, ctx_data=None, pass_=None, verify=False, **knobs):
    ctx = PassContext(verify=verify, data=ctx_data, knobs={"quantize": knobs})
    return (pass_ or get_pass("quantize"))(graph, ctx)


def accuracy(graph: Graph, tmp_path, name: str) -> float:
    """Top-1 on the digits test split, in onnxruntime."""
    return digits.onnx_accuracy(onnx_io.save(graph, tmp_path / f"{name}.onnx"), "test")


def digits_logits(graph: Graph) -> np.ndarray:
    """The logits of every test sample (the digits models take a batch of 1)."""
    runner = Runner(graph)
    return np.concatenate([runner.run({"input": x[None]})["logits"] for x in digits.load_split("test")[0]])


def gemm_model(w: np.ndarray, trans_b: int = 1, name: str = "fc") -> Graph:
    g = Graph(name)
    k = w.shape[1] if trans_b else w.shape[0]
    g.add_input("x", dtypes.FLOAT, (2, k))
    g.add_initializer("w", w.astype(np.float32))
    g.add_node("Gemm", ["x", "w"], ["y"], {"transB": trans_b}, name=name)
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def weight_of(g: Graph, node: str) -> np.ndarray:
    return g.initializer(g.node(node).inputs[1])


# ====================================================================== int8
def qdq_neighbours(g: Graph) -> tuple[set[str], set[str]]:
    """Nodes that QuantizeLinear/DequantizeLinear pairs feed, and nodes whose outputs they read."""
    fed, read = set(), set()
    for dq in g.find("DequantizeLinear"):
        fed |= {u.name for u in g.users(dq.outputs[0])}
    for q in g.find("QuantizeLinear"):
        p = g.producer(q.inputs[0])
        if p is not None:
            read.add(p.name)
    return fed, read


def assert_qdq_around(q: Graph, chosen: set[str]) -> None:
    fed, read = qdq_neighbours(q)
    for node in q.nodes:
        if node.op_type not in LAYER_OPS:
            continue
        sources = {(q.producer(t).op_type if q.producer(t) else "init") for t in node.inputs[:2]}
        if node.name in chosen:  # activations and weights come dequantized
            assert sources == {"DequantizeLinear"}, (node.name, sources)
            w = q.producer(node.inputs[1]).inputs[0]
            assert q.initializer(w).dtype == np.int8
        else:
            assert "DequantizeLinear" not in sources, node.name
    for q_node in q.find("QuantizeLinear"):
        (dq,) = q.users(q_node.outputs[0])
        readers = {u.name for u in q.users(dq.outputs[0])}
        source = q.producer(q_node.inputs[0])
        assert (source is not None and source.name in chosen) or readers <= chosen, (q_node.name, readers)


def test_int8_digits_accuracy_within_one_point(lenet5, train_x, tmp_path):
    result = quantize(lenet5, {"input": train_x}, verify=True, mode="int8")
    q = result.graph
    chosen = {n.name for n in lenet5.nodes if n.op_type in LAYER_OPS}
    assert result.modified and set(result.details["layers"]) == chosen
    assert_qdq_around(q, chosen)
    onnx.checker.check_model(onnx_io.to_proto(q), full_check=True)
    base, quant = accuracy(lenet5, tmp_path, "float"), accuracy(q, tmp_path, "int8")
    assert base == pytest.approx(0.9889, abs=1e-3)
    assert abs(quant - base) <= 0.01
    for layer in workload.analyze(q).layers:
        if layer.op_type in LAYER_OPS:
            assert (layer.weight_bits, layer.act_bits) == (8, 8)
    d = result.details
    assert d["calibration_data"] == "256 samples of the given data"
    assert all(35 < v < 60 for v in d["sqnr_db"].values()), d["sqnr_db"]
    assert all(30 < v < 60 for v in d["output_sqnr_db"].values()), d["output_sqnr_db"]
    assert 30 < d["model_output_sqnr_db"]["logits"] < 60
    assert "verification" in d  # the manager compared both models in onnxruntime
    json.dumps({k: v for k, v in d.items() if k != "verification"})  # plain data, for reports


def test_int8_weight_sqnr_matches_per_channel_symmetric_math(lenet5, train_x):
    """s_c = max|W_c| / 127, q = round(W / s_c): recomputed here, the SQNR agrees."""
    result = quantize(lenet5, {"input": train_x}, mode="int8", samples=8)
    for name, reported in result.details["sqnr_db"].items():
        w = weight_of(lenet5, name).astype(np.float64)
        flat = w.reshape(w.shape[0], -1)  # output channels are rows for Conv and for Gemm(transB=1)
        s = np.abs(flat).max(axis=1, keepdims=True) / 127
        deq = np.clip(np.round(flat / s), -127, 127) * s
        expect = 10 * math.log10(np.sum(flat ** 2) / np.sum((flat - deq) ** 2))
        assert reported == pytest.approx(expect, abs=0.05), name


def test_int8_chosen_layers_only_and_meta_kept(lenet5, train_x):
    g = lenet5.copy()
    g.node("/2/Conv").meta["winograd"] = True  # an earlier pass's annotation survives the round trip
    chosen = {"/0/Conv", "/8/Gemm"}
    result = quantize(g, {"input": train_x}, mode="int8", layers="/0/Conv, /8/Gemm", samples=32)
    assert set(result.details["layers"]) == chosen
    assert_qdq_around(result.graph, chosen)
    assert result.graph.node("/2/Conv").meta["winograd"] is True
    assert np.array_equal(weight_of(result.graph, "/6/Gemm"), weight_of(g, "/6/Gemm"))
    by_api = quantize(g, {"input": train_x}, pass_=Quantize(layers=sorted(chosen)), mode="int8", samples=32)
    assert set(by_api.details["layers"]) == chosen


@pytest.mark.parametrize("method", ["percentile", pytest.param("entropy", marks=pytest.mark.slow)])
def test_int8_calibration_methods(method, lenet5, train_x, tmp_path):
    minmax = quantize(lenet5, {"input": train_x}, mode="int8", samples=64)
    other = quantize(lenet5, {"input": train_x}, mode="int8", calibration=method, samples=64)
    scales = lambda g: {n: g.initializer(n) for n in g.initializers if n.endswith("_scale")}  # noqa: E731
    a, b = scales(minmax.graph), scales(other.graph)
    assert a.keys() == b.keys() and any(not np.array_equal(a[k], b[k]) for k in a)  # really another method
    assert abs(accuracy(other.graph, tmp_path, method) - accuracy(lenet5, tmp_path, "f")) <= 0.01


def test_int8_from_npz_through_apply_by_hand_knob_or_flag(tmp_path):
    g = hwcc.load("zoo:lenet300-digits")
    path = digits.write_npz("train", tmp_path / "calib.npz")  # has 'labels' too: ignored
    report = apply_by_hand(g, "quantize", {"mode": "int8", "data": str(path), "samples": "64"},
                           verify=True, rtol=1e-4, atol=1e-5)
    assert report.modified and report.ops_after["QuantizeLinear"] > 0
    assert report.result.details["calibration_data"] == "64 samples of the given data"
    by_flag = apply_by_hand(g, "quantize", {"mode": "int8", "samples": "8"}, data=str(path),  # --data
                            verify=False, rtol=0, atol=0)
    assert by_flag.result.details["calibration_data"] == "8 samples of the given data"


def test_int8_without_data_is_an_error_unless_random_is_allowed(lenet5):
    with pytest.raises(HwccError, match="needs calibration data") as e:
        quantize(lenet5, mode="int8")
    assert "random_calibration=true" in e.value.hint
    with pytest.warns(UserWarning, match="RANDOM"):
        result = quantize(lenet5, mode="int8", random_calibration=True)
    assert result.modified and "random" in result.details["warning"]
    x = digits.load_split("test")[0][:1]
    assert run_onnx(result.graph, {"input": x})[0].shape == (1, 10)


@pytest.mark.parametrize("data,knobs,match", [
    ({"pixels": np.zeros((4, 1, 8, 8), np.float32)}, {}, "no array for input"),
    ({"input": np.zeros((4, 64), np.float32)}, {}, "does not fit"),
    ({"input": np.zeros((4, 1, 8, 8), np.float32)}, {"data": "calib.npz"}, "given twice"),
    (None, {"data": "no/such/file.npz"}, "does not exist"),
])
def test_int8_bad_data(lenet5, data, knobs, match):
    with pytest.raises(HwccError, match=match):
        quantize(lenet5, data, mode="int8", **knobs)


# ====================================================================== kmeans
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
    result = quantize(gemm_model(w), mode="kmeans", bits=2)
    info = result.details["layers"]["fc"]
    assert info["sqnr_db"] == math.inf and info["format"] == "dense" and info["clusters"] == 4
    assert (info["index_bits"], info["index_huffman_bits"], info["overhead_bits"]) == (16, 13, 4 * 32)
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
    result = quantize(gemm_model(w), mode="kmeans", bits=3)
    info = result.details["layers"]["fc"]
    assert np.array_equal(weight_of(result.graph, "fc"), w)  # 4 values <= 7 centroids: exact
    assert info["sparse"] and info["format"] == "sparse" and info["clusters"] == 4
    assert (info["entries"], info["padding"]) == (6, 2)
    assert info["index_bits"] == 6 * 7 and info["overhead_bits"] == 3 * 16 + 5 * 32
    assert info["index_huffman_bits"] == 14 + 12
    assert info["huffman_bits"] == 26 + 208 and info["fixed_bits"] == 42 + 208


@pytest.mark.parametrize("bits", [2, 4])
def test_kmeans_distinct_values_per_layer(lenet5, bits):
    result = quantize(lenet5, verify=True, mode="kmeans", bits=bits)
    for name, info in result.details["layers"].items():
        w = weight_of(result.graph, name)
        assert np.unique(w).size <= 2 ** bits and info["distinct_values"] == np.unique(w).size
        assert result.graph.node(name).meta["weight_bits"] == bits
        assert result.graph.node(name).meta["weight_sharing"] == {"bits": bits, "clusters": 2 ** bits}
        assert info["huffman_bits"] <= info["fixed_bits"] < info["bits_before"]
    onnx.checker.check_model(onnx_io.to_proto(result.graph), full_check=True)
    total = result.details["total"]
    assert total["compression"] > 32 / bits * 0.9  # the codebooks are small next to the indices
    json.dumps({k: v for k, v in result.details.items() if k != "verification"})


def test_kmeans_sqnr_rises_with_bits_on_a_zoo_layer(lenet5):
    sqnr = [quantize(lenet5, mode="kmeans", bits=b, layers="/6/Gemm").details["sqnr_db"]["/6/Gemm"]
            for b in range(2, 9)]
    assert all(b > a for a, b in zip(sqnr, sqnr[1:])), sqnr
    assert 7 < sqnr[0] < 10 and 33 < sqnr[-1] < 38  # about 5.5 dB a bit on this layer


def test_kmeans_on_a_pruned_layer_keeps_zeros_and_huffman_saves(lenet5):
    """Deep Compression's pipeline on one layer: prune to 10 %, share at 5 bits."""
    w = weight_of(lenet5, "/6/Gemm")
    pruned = magnitude_prune(w, w.size // 10)
    g = lenet5.copy()
    g.add_initializer(g.node("/6/Gemm").inputs[1], pruned)
    result = quantize(g, mode="kmeans", bits=5, layers="/6/Gemm")
    out = weight_of(result.graph, "/6/Gemm")
    assert np.array_equal(out == 0, pruned == 0)
    assert np.unique(out[out != 0]).size <= 31
    info = result.details["layers"]["/6/Gemm"]
    assert info["format"] == "sparse" and info["padding"] > 0
    assert 0.10 < info["huffman_saving"] < 0.30
    assert info["bits_before"] / info["huffman_bits"] > 30  # float32 dense -> 10 % at ~8 bits


def test_kmeans_per_layer_bits_and_model_numbers(lenet5, tmp_path):
    bits = {"/0/Conv": 8, "/8/Gemm": 3}
    for result in (quantize(lenet5, mode="kmeans", bits=6, layer_bits="/0/Conv=8,/8/Gemm=3"),
                   quantize(lenet5, pass_=Quantize(layer_bits=bits), mode="kmeans", bits=6)):
        got = {n: i["bits"] for n, i in result.details["layers"].items()}
        assert got == {"/0/Conv": 8, "/2/Conv": 6, "/6/Gemm": 6, "/8/Gemm": 3}
    # 6 bits everywhere: the logits follow the float model's, and so does the accuracy.
    result = quantize(lenet5, mode="kmeans", bits=6)
    ref, out = digits_logits(lenet5), digits_logits(result.graph)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    assert abs(accuracy(result.graph, tmp_path, "k6") - accuracy(lenet5, tmp_path, "f")) <= 0.01


def test_kmeans_twice_changes_nothing(lenet5):
    once = quantize(lenet5, mode="kmeans", bits=3)
    twice = quantize(once.graph, mode="kmeans", bits=3)
    assert not twice.modified and "already" in twice.reason


# ---------------------------------------------------------------------- kmeans: EIE's codebook
EIE_FORM = {"mode": "kmeans", "bits": 4, "zero_slot": True, "codebook_bits": 16}


@pytest.fixture(scope="module")
def lenet300() -> Graph:
    return onnx_io.load(model_path("lenet300-digits"))


@pytest.fixture(scope="module")
def lenet300_eie_form(lenet300):
    """lenet300-digits (dense) in EIE's legal form, read from the target's TOML."""
    form = load_target("eie").legal_form["quantize"]
    assert form == EIE_FORM
    result = quantize(lenet300, **form)
    assert result.modified
    return result


def fixed_steps(w: np.ndarray, f: int) -> np.ndarray:
    """``w·2^f`` (exact in float64 for float32 ``w``)."""
    return w.astype(np.float64) * 2.0 ** f


def test_kmeans_zero_slot_and_fixed_codebook_by_hand():
    """Non-zeros {-1 ×2, 0.1, 0.3, 1.25 ×2}, 2 bits with a zero slot: 3 centroids from
    linspace(-1, 1.25, 3) = [-1, 0.125, 1.25]; 0.1 and 0.3 share 0.2, one Lloyd step.
    codebook_bits=4 (q in [-8, 7]): f = 2 (1.25·2^3 = 10 > 7), 0.2 -> round(0.8)/4 = 0.25.
    codebook_bits=3 (q in [-4, 3]): f = 1, 1.25 -> round(2.5)/2 = 1 (half to even) and
    0.2 -> round(0.4)/2 = 0: those two weights become zero, the decoder's value for them."""
    w = np.array([[1.25, 0.3, -1.0], [0.1, 1.25, -1.0]], dtype=np.float32)
    result = quantize(gemm_model(w), mode="kmeans", bits=2, zero_slot=True, codebook_bits=4)
    out = weight_of(result.graph, "fc")
    np.testing.assert_array_equal(out, [[1.25, 0.25, -1.0], [0.25, 1.25, -1.0]])
    np.testing.assert_array_equal(fixed_steps(out, 2), [[5, 1, -4], [1, 5, -4]])
    info = result.details["layers"]["fc"]
    assert (info["clusters"], info["codebook_frac_bits"], info["rounded_to_zero"]) == (3, 2, 0)
    assert info["format"] == "dense" and info["overhead_bits"] == 4 * 4  # [0, -1, 0.25, 1.25] at 4 bits
    assert result.graph.node("fc").meta["weight_sharing"] == {
        "bits": 2, "clusters": 3, "zero_slot": True, "codebook_bits": 4, "codebook_frac_bits": 2}
    shared = _kmeans.share_weights(w, 2, zero_slot=True, codebook_bits=4)
    np.testing.assert_array_equal(shared.codebook, [0, -1, 0.25, 1.25])
    np.testing.assert_array_equal(shared.index, [[3, 2, 1], [2, 3, 1]])  # index 0 left for zero
    np.testing.assert_array_equal(shared.codebook[shared.index], out)
    # Without the zero slot, 4 centroids hold the 4 values exactly: the slot costs one value.
    np.testing.assert_array_equal(_kmeans.share_weights(w, 2).values, w)

    three = quantize(gemm_model(w), mode="kmeans", bits=2, zero_slot=True, codebook_bits=3)
    np.testing.assert_array_equal(weight_of(three.graph, "fc"), [[1, 0, -1], [0, 1, -1]])
    info = three.details["layers"]["fc"]
    assert (info["clusters"], info["codebook_frac_bits"], info["rounded_to_zero"]) == (2, 1, 2)
    assert info["sparse"] and info["distinct_values"] == 3


@pytest.mark.parametrize("bits", [2, 4])
def test_kmeans_zero_slot_leaves_index_zero_for_zero_in_dense_layers(lenet300, bits):
    plain = quantize(lenet300, mode="kmeans", bits=bits)
    result = quantize(lenet300, verify=True, mode="kmeans", bits=bits, zero_slot=True)
    for name, info in result.details["layers"].items():
        w0, w = weight_of(lenet300, name), weight_of(result.graph, name)
        assert np.count_nonzero(w0 == 0) == 0  # the zoo model is dense ...
        assert np.unique(weight_of(plain.graph, name)).size == 2 ** bits  # ... and fills every index without the slot
        values = set(np.unique(w).tolist()) | {0.0}  # the codebook: index 0 is zero
        assert len(values) <= 2 ** bits and np.count_nonzero(w == 0) == 0
        assert info["clusters"] == 2 ** bits - 1 and info["zero_slot"] and not info["sparse"]
        assert result.graph.node(name).meta["weight_sharing"] == {"bits": bits, "clusters": 2 ** bits - 1,
                                                                  "zero_slot": True}
        shared = _kmeans.share_weights(w0, bits, zero_slot=True)
        assert shared.codebook[0] == 0 and len(shared.codebook) == 2 ** bits and shared.index.min() >= 1
        np.testing.assert_array_equal(shared.codebook[shared.index], w)
    onnx.checker.check_model(onnx_io.to_proto(result.graph), full_check=True)


@pytest.mark.parametrize("book_bits", [8, 16])
def test_kmeans_fixed_point_codebook_is_exact(lenet300, book_bits):
    """Every weight is q·2^-f with an integer q of book_bits bits, f per layer; and no
    farther from the original than the float centroid it came from, plus half a step.
    At 8 bits (f = 6 on /1/Gemm) that layer's centroid nearest zero rounds to 0: its 2403
    weights become zero and 14 non-zero values are left (measured); at 16 bits none does."""
    floats = quantize(lenet300, mode="kmeans", bits=4, zero_slot=True)
    result = quantize(lenet300, mode="kmeans", bits=4, zero_slot=True, codebook_bits=book_bits)
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
    pruned = get_pass("prune_weights")(lenet300, PassContext(knobs={"prune_weights": {"density": 0.2}})).graph
    result = quantize(pruned, **EIE_FORM)
    for name, info in result.details["layers"].items():
        w0, w = weight_of(pruned, name), weight_of(result.graph, name)
        assert 0 < np.count_nonzero(w0 == 0) < w0.size
        np.testing.assert_array_equal(w == 0, w0 == 0)  # zeros stay, nothing else becomes zero
        assert np.unique(w).size <= 16 and 0 in w and info["sparse"] and info["rounded_to_zero"] == 0
        q = fixed_steps(w, info["codebook_frac_bits"])
        assert np.array_equal(q, np.round(q)) and np.abs(q).max() <= 2 ** 15


def test_kmeans_eie_form_differential_on_lenet300(lenet300, lenet300_eie_form, tmp_path, report_line):
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
    base, mine = accuracy(lenet300, tmp_path, "f"), accuracy(q, tmp_path, "eie")
    assert abs(base - mine) <= 0.015
    sqnr = lenet300_eie_form.details["sqnr_db"]
    assert all(17 < v < 20 for v in sqnr.values()), sqnr
    report_line(f"quantize EIE form on lenet300-digits: max |logit error| {err:.3f} (tolerance {tol:.3f}), "
                f"accuracy {base:.4f} -> {mine:.4f} on {len(x)} test samples, weight SQNR "
                + ", ".join(f"{k} {v:.1f} dB" for k, v in sqnr.items()))


def test_kmeans_eie_form_twice_changes_nothing(lenet300_eie_form):
    again = quantize(lenet300_eie_form.graph, **EIE_FORM)
    assert not again.modified and "already" in again.reason and again.graph is lenet300_eie_form.graph
    for name, info in again.details["layers"].items():
        first = lenet300_eie_form.details["layers"][name]
        assert info["sqnr_db"] == math.inf and info["steps"] == 0  # kept exactly: 15 values for 15 centroids
        assert (info["codebook_frac_bits"], info["clusters"]) == (first["codebook_frac_bits"], first["clusters"])


def test_kmeans_only_knobs_are_errors_in_other_modes(lenet5):
    for knob, value in (("zero_slot", True), ("codebook_bits", 16)):
        for mode in ("int8", "fixed16"):
            with pytest.raises(HwccError, match=f"'{knob}' does not apply to mode={mode}"):
                quantize(lenet5, mode=mode, **{knob: value})
    with pytest.raises(HwccError, match="cannot be 25"):
        apply_by_hand(lenet5, "quantize", {"mode": "kmeans", "codebook_bits": "25"}, verify=False, rtol=0, atol=0)


# ====================================================================== fixed16
@pytest.mark.parametrize("lo,hi,f", [(-1.0, 1.0, 14), (-1.0, 0.5, 15), (0.0, 0.0, 15),
                                     (-0.5000001, 0.0, 16), (-3.0, 100.0, 8), (0.0, 1e-3, 24)])
def test_frac_bits_fit_the_range(lo, hi, f):
    assert _fixed_point.frac_bits(lo, hi) == f
    q = np.round(np.array([lo, hi]) * 2.0 ** f)
    assert q.min() >= -32768 and q.max() <= 32767
    if hi or lo:  # one more fraction bit would overflow
        q1 = np.round(np.array([lo, hi]) * 2.0 ** (f + 1))
        assert q1.min() < -32768 or q1.max() > 32767


def test_fixed16_zoo_values_sqnr_and_outputs(lenet5, train_x, tmp_path):
    result = quantize(lenet5, {"input": train_x}, verify=True, mode="fixed16")
    for name, info in result.details["layers"].items():
        w0, w = weight_of(lenet5, name), weight_of(result.graph, name).astype(np.float64)
        f = info["weight_frac_bits"]
        steps = w * 2.0 ** f
        assert np.array_equal(steps, np.round(steps)) and np.abs(steps).max() <= 32768  # multiples of 2^-f
        assert np.abs(w - w0).max() <= 2.0 ** -(f + 1)  # round to nearest
        assert info["sqnr_db"] > 75
        meta = result.graph.node(name).meta
        assert meta["weight_bits"] == 16 and meta["act_bits"] == 16
        assert meta["fixed_point"] == {"total_bits": 16, "weight_frac_bits": f,
                                       "act_frac_bits": info["act_frac_bits"],
                                       "out_frac_bits": info["out_frac_bits"]}
    # The input pixels lie in [0, 1]: 14 fraction bits (1.0·2^15 would overflow).
    assert result.details["layers"]["/0/Conv"]["act_frac_bits"] == 14
    ref, out = digits_logits(lenet5), digits_logits(result.graph)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    assert accuracy(result.graph, tmp_path, "fx") == accuracy(lenet5, tmp_path, "f")
    flags = {x.name: x.flags for x in workload.analyze(result.graph).layers}
    assert "fixed_point" in flags["/0/Conv"]


def test_fixed16_without_data_leaves_activations_unset():
    g = hwcc.load("zoo:resnet-digits")
    result = quantize(g, mode="fixed16")
    assert result.details["calibration_data"] is None
    for name, info in result.details["layers"].items():
        assert info["act_frac_bits"] is None and "act_bits" not in result.graph.node(name).meta
        assert info["sqnr_db"] > 70
    again = quantize(result.graph, mode="fixed16")
    assert not again.modified  # already 16-bit fixed point, already annotated


def test_fixed16_shared_weight_stays_shared():
    rng = np.random.default_rng(0)
    g = Graph("shared")
    g.add_input("x", dtypes.FLOAT, (1, 6))
    g.add_initializer("w", rng.normal(size=(6, 6)).astype(np.float32))
    g.add_node("MatMul", ["x", "w"], ["h"], name="mm1")
    g.add_node("MatMul", ["h", "w"], ["y"], name="mm2")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    result = quantize(g, mode="fixed16")
    assert [n.inputs[1] for n in result.graph.find("MatMul")] == ["w", "w"]
    x = rng.normal(size=(1, 6)).astype(np.float32)
    wq = result.graph.initializer("w")
    np.testing.assert_allclose(run_onnx(result.graph, {"x": x})[0], x @ wq @ wq, rtol=1e-5, atol=1e-5)


# ====================================================================== must not fire / errors
def test_not_without_weighted_layers():
    g = Graph("relu")
    g.add_input("x", dtypes.FLOAT, (2, 3))
    g.add_node("Relu", ["x"], ["y"])
    g.outputs.append("y")
    for mode in ("int8", "kmeans", "fixed16"):
        result = quantize(g, mode=mode)
        assert not result.modified and result.reason == "the graph has no Conv, Gemm or MatMul"


def test_not_with_an_empty_layer_list(lenet5):
    for mode in ("int8", "kmeans", "fixed16"):
        result = quantize(lenet5, mode=mode, layers="")
        assert not result.modified and result.graph is lenet5 and result.reason == "the layers list is empty"


def test_not_for_runtime_weights():
    g = gemm_model(np.ones((3, 4)))
    g.add_input("w_in", dtypes.FLOAT, (3, 4))
    g.set_input(g.node("fc"), 1, "w_in")
    for mode in ("int8", "kmeans", "fixed16"):
        result = quantize(g, mode=mode)
        assert not result.modified and "no Conv, Gemm or MatMul has constant float weights" in result.reason
    with pytest.raises(HwccError, match="cannot be changed"):
        quantize(g, mode="kmeans", layers="fc")


def test_knobs_for_another_mode_and_bad_names_are_errors(lenet5):
    with pytest.raises(HwccError, match="'bits' does not apply to mode=int8"):
        quantize(lenet5, mode="int8", bits=4)
    with pytest.raises(HwccError, match="'calibration' does not apply to mode=kmeans"):
        quantize(lenet5, mode="kmeans", calibration="entropy")
    with pytest.raises(HwccError, match="no Conv, Gemm or MatMul named 'conv9'"):
        quantize(lenet5, mode="kmeans", layers="conv9")
    with pytest.raises(HwccError, match="cannot be 9"):
        apply_by_hand(lenet5, "quantize", {"mode": "kmeans", "bits": "9"}, verify=False, rtol=0, atol=0)
    with pytest.raises(HwccError, match="'/8/Gemm' cannot be changed: it is not among the layers"):
        quantize(lenet5, mode="kmeans", layers="/0/Conv", layer_bits="/8/Gemm=3")
    with pytest.raises(HwccError, match="cannot read layer_bits"):
        quantize(lenet5, mode="kmeans", layer_bits="/0/Conv=eight")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # kmeans needs no data and warns about nothing
        assert quantize(lenet5, mode="kmeans", bits=8, layers="/8/Gemm").modified
