"""prune_weights: exact densities, magnitude order, numbers in onnxruntime (differentially,
against hand-made sparse models), EIE storage counted by hand, and where it must not fire."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwcc
from hwcc.cli.apply_view import apply_by_hand
from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes, onnx_io, workload
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import run_onnx
from hwcc.passes.prune_weights import PruneWeights, keep_count, magnitude_prune
from hwcc.testing import assert_equivalent, shared_weight_graph, weight_of

NO_VERIFY = PassContext(verify=False)  # the tests compare outputs themselves, explicitly


def prune(graph: Graph, density: float | None = None, pass_=None, **knobs):
    if density is not None:
        knobs["density"] = density
    ctx = PassContext(verify=False, knobs={"prune_weights": knobs})
    return (pass_ or get_pass("prune_weights"))(graph, ctx)


def conv_gemm(
    w_conv: np.ndarray | None = None, w_fc: np.ndarray | None = None, seed: int = 0
) -> Graph:
    """x[1,3,6,6] -> Conv(8, 3x3, bias) -> Relu -> Flatten -> Gemm(transB=1, bias) -> y[1,5]."""
    rng = np.random.default_rng(seed)
    g = Graph("conv_gemm")
    g.add_input("x", dtypes.FLOAT, (1, 3, 6, 6))
    g.add_initializer(
        "wc", rng.normal(size=(8, 3, 3, 3)).astype(np.float32) if w_conv is None else w_conv
    )
    g.add_initializer(
        "bc", rng.normal(size=8).astype(np.float32) * 1e-3
    )  # tiny: still never pruned
    g.add_node("Conv", ["x", "wc", "bc"], ["c"], name="conv")
    g.add_node("Relu", ["c"], ["r"])
    g.add_node("Flatten", ["r"], ["f"])
    g.add_initializer("wf", rng.normal(size=(5, 128)).astype(np.float32) if w_fc is None else w_fc)
    g.add_initializer("bf", rng.normal(size=5).astype(np.float32))
    g.add_node("Gemm", ["f", "wf", "bf"], ["y"], {"transB": 1}, name="fc")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def assert_magnitude_pruned(before: np.ndarray, after: np.ndarray, density: float) -> None:
    """Exactly round(density·n) survive (±1), unchanged, and none smaller than a pruned one."""
    nnz = np.count_nonzero(after)
    assert abs(nnz - density * before.size) <= 1
    kept = after != 0
    assert np.array_equal(after[kept], before[kept])
    pruned = ~kept & (before != 0)
    if pruned.any():
        assert np.abs(before[kept]).min() >= np.abs(before[pruned]).max()


# ---------------------------------------------------------------------- densities
@pytest.mark.parametrize("density", [0.03, 0.3, 0.77])
def test_zoo_lenet5_exact_density_per_layer(density):
    g = hwcc.load("zoo:lenet5-digits")
    result = get_pass("prune_weights")(
        g, PassContext(knobs={"prune_weights": {"density": density}})
    )
    assert result.modified
    layers = result.details["layers"]
    assert set(layers) == {n.name for n in g.nodes if n.op_type in ("Conv", "Gemm")}
    wl = {x.name: x for x in workload.analyze(result.graph).layers}
    for name, info in layers.items():
        before, after = weight_of(g, name), weight_of(result.graph, name)
        assert_magnitude_pruned(before, after, density)
        assert info["nonzeros"] == np.count_nonzero(after) == keep_count(after.size, density)
        assert wl[name].weight_density == pytest.approx(info["density"])
    for node in g.nodes:  # biases untouched, bit for bit
        if len(node.inputs) > 2:
            assert np.array_equal(
                g.initializer(node.inputs[2]), result.graph.initializer(node.inputs[2])
            )
    onnx.checker.check_model(onnx_io.to_proto(result.graph), full_check=True)
    v = result.details["verification"]  # the manager ran both models in onnxruntime
    assert v.samples == 2 and np.isfinite(v.max_abs_err)
    json.dumps({k: w for k, w in result.details.items() if k != "verification"})  # plain data


def test_per_layer_densities_by_constructor_and_by_knob():
    g = hwcc.load("zoo:lenet300-digits")
    names = [n.name for n in g.find("Gemm")]
    want = {names[0]: 0.05, names[2]: 0.5}
    by_api = prune(g, 0.2, pass_=PruneWeights(layer_density=want))
    by_json = prune(g, 0.2, layer_density=json.dumps(want))
    by_text = prune(g, 0.2, layer_density=",".join(f"{k}={v}" for k, v in want.items()))
    for result in (by_api, by_json, by_text):
        for name in names:
            d = want.get(name, 0.2)
            assert_magnitude_pruned(weight_of(g, name), weight_of(result.graph, name), d)
            assert result.details["layers"][name]["density_target"] == d
    only = prune(g, 1.0, layer_density=f"{names[1]}=0.25")  # density 1 elsewhere: only that layer
    assert set(only.details["layers"]) == {names[1]}
    assert np.array_equal(weight_of(g, names[0]), weight_of(only.graph, names[0]))


def test_matmul_and_gemm_operand_a_and_trans_b_0():
    rng = np.random.default_rng(3)
    g = Graph("mm")
    g.add_input("x", dtypes.FLOAT, (2, 6))
    g.add_initializer("B", rng.normal(size=(6, 4)).astype(np.float32))
    g.add_node("MatMul", ["x", "B"], ["h"], name="mm")
    g.add_initializer("A", rng.normal(size=(3, 2)).astype(np.float32))
    g.add_node("Gemm", ["A", "h"], ["y"], name="gemm_a")  # constant A: y = A·h
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    result = prune(g, 0.5)
    assert_magnitude_pruned(g.initializer("B"), result.graph.initializer("B"), 0.5)
    assert_magnitude_pruned(g.initializer("A"), result.graph.initializer("A"), 0.5)
    eie = result.details["layers"]
    assert (eie["mm"]["eie"]["rows"], eie["mm"]["eie"]["cols"]) == (4, 6)  # outputs × inputs
    assert (eie["gemm_a"]["eie"]["rows"], eie["gemm_a"]["eie"]["cols"]) == (3, 2)
    x = rng.normal(size=(2, 6)).astype(np.float32)
    Bp, Ap = result.graph.initializer("B"), result.graph.initializer("A")
    np.testing.assert_allclose(
        run_onnx(result.graph, {"x": x})[0], Ap @ (x @ Bp), rtol=1e-5, atol=1e-5
    )


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), density=st.floats(0.001, 1.0), seed=st.integers(0, 2**16))
def test_property_magnitude_prune_keeps_the_k_largest(n, density, seed):
    w = np.random.default_rng(seed).normal(size=n).astype(np.float32)
    w[: n // 4] = w[n // 4 : 2 * (n // 4)]  # ties
    k = keep_count(n, density)
    out = magnitude_prune(w, k)
    assert np.count_nonzero(out) == k and abs(k - density * n) <= max(1, 0.5 + 1e-9)
    assert_magnitude_pruned(w, out, k / n)


# ---------------------------------------------------------------------- differential
def test_pruning_tiny_weights_gives_the_hand_made_sparse_model():
    """Model A has exact zeros where its weights are small; model B has 1e-9 there
    instead. Pruning B at A's density gives A's weights bit for bit and A's outputs."""
    rng = np.random.default_rng(7)
    sparse = {}
    for name, shape in (("wc", (8, 3, 3, 3)), ("wf", (5, 128))):
        w = rng.normal(size=shape).astype(np.float32)
        w[np.abs(w) < 0.8] = 0.0
        sparse[name] = w
    a = conv_gemm(sparse["wc"], sparse["wf"])
    noisy = {k: np.where(w == 0, np.float32(1e-9), w).astype(np.float32) for k, w in sparse.items()}
    b = conv_gemm(noisy["wc"], noisy["wf"])
    d = {
        "conv": np.count_nonzero(sparse["wc"]) / sparse["wc"].size,
        "fc": np.count_nonzero(sparse["wf"]) / sparse["wf"].size,
    }
    result = prune(b, 1.0, layer_density=json.dumps(d))
    assert result.modified
    for node, w in (("conv", "wc"), ("fc", "wf")):
        assert np.array_equal(weight_of(result.graph, node), sparse[w])
    x = {"x": rng.normal(size=(1, 3, 6, 6)).astype(np.float32)}
    assert_equivalent(a, result.graph, x, rtol=1e-6, atol=1e-6)
    # A itself at its true density: nothing left to prune, outputs as they were.
    same = prune(a, 1.0, layer_density=json.dumps(d))
    assert not same.modified and "already" in same.reason
    assert_equivalent(a, same.graph, x, rtol=1e-6, atol=1e-6, check_model=False)


def test_shared_weight_is_pruned_once_or_copied():
    rng = np.random.default_rng(4)
    g = shared_weight_graph(rng.normal(size=(6, 6)).astype(np.float32))
    same = prune(g, 0.5)
    assert [n.inputs[1] for n in same.graph.find("MatMul")] == ["w", "w"]
    assert np.count_nonzero(same.graph.initializer("w")) == 18
    differ = prune(g, 0.5, layer_density="mm2=0.25")
    w1, w2 = (differ.graph.initializer(n.inputs[1]) for n in differ.graph.find("MatMul"))
    assert (np.count_nonzero(w1), np.count_nonzero(w2)) == (18, 9)
    x = rng.normal(size=(1, 6)).astype(np.float32)
    np.testing.assert_allclose(
        run_onnx(differ.graph, {"x": x})[0], x @ w1 @ w2, rtol=1e-5, atol=1e-5
    )


# ---------------------------------------------------------------------- EIE storage
def test_eie_storage_counted_by_hand():
    """A 40x2 Gemm weight (rows = outputs) with four non-zeros on 2 PEs.

    PE 0 holds rows 0, 2, ..., 38 (local rows 0..19), PE 1 rows 1, 3, ..., 39.
    Column 0: rows 0 and 36 are PE 0's local rows 0 and 18: a gap of 17 zeros, so one
    padding entry (z=15) and then the non-zero with z=1: 3 entries. Column 1: rows 1 and
    3 are PE 1's local rows 0 and 1: 2 entries. Entries 5 (padding 1), pointers 2·(2+1).
    """
    rng = np.random.default_rng(0)
    w = rng.uniform(-1e-3, 1e-3, size=(40, 2)).astype(np.float32)
    w[0, 0], w[36, 0], w[1, 1], w[3, 1] = 1.5, -2.0, 0.75, 3.0
    g = Graph("fc")
    g.add_input("x", dtypes.FLOAT, (1, 2))
    g.add_initializer("w", w)
    g.add_node("Gemm", ["x", "w"], ["y"], {"transB": 1}, name="fc")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    result = prune(g, 4 / 80, n_pes=2)
    eie = result.details["layers"]["fc"]["eie"]
    entries, padding, pointers = 5, 1, 2 * 3
    spmat, ptr = entries * (4 + 4), pointers * 16
    codebook = (1 + 4) * 16  # zero and the four distinct values, 16 bits each
    assert eie == {
        "rows": 40,
        "cols": 2,
        "nonzeros": 4,
        "entries": entries,
        "padding": padding,
        "pointers": pointers,
        "spmat_bits": spmat,
        "pointer_bits": ptr,
        "codebook_bits": codebook,
        "bits": spmat + ptr + codebook,
        "bits_per_nonzero": (40 + 96) / 4,
        "bytes": (40 + 96 + 80) // 8,
    }
    total = result.details["total"]
    assert total["dense_bytes"] == 320 and total["compressed_bytes"] == 27
    assert total["compression"] == pytest.approx(320 / 27)
    one_pe = prune(g, 4 / 80, n_pes=1).details["layers"]["fc"]["eie"]
    # one PE: column 0 holds rows 0 and 36 (gap 35: two paddings), column 1 rows 1 and 3.
    assert (one_pe["entries"], one_pe["padding"], one_pe["pointers"]) == (6, 2, 3)


def test_conv_matrix_view_is_filters_by_taps():
    g = conv_gemm()
    info = prune(g, 0.1).details["layers"]["conv"]["eie"]
    assert (info["rows"], info["cols"]) == (8, 27)
    assert info["nonzeros"] == keep_count(216, 0.1)


# ---------------------------------------------------------------------- by hand (CLI)
def test_apply_by_hand_and_bad_settings():
    g = conv_gemm()
    report = apply_by_hand(
        g, "prune_weights", {"density": "0.25"}, verify=True, rtol=1e-4, atol=1e-5
    )
    assert report.modified and report.verification is not None and not report.verification.passed
    assert "prune_weights (density=0.25" in report.summary()
    with pytest.raises(HwccError, match="outside"):
        prune(g, 0.0)
    with pytest.raises(HwccError, match="cannot be 1.5"):
        apply_by_hand(g, "prune_weights", {"density": "1.5"}, verify=False, rtol=0, atol=0)
    with pytest.raises(HwccError, match="no Conv, Gemm or MatMul named 'nope'"):
        prune(g, 0.5, layer_density="nope=0.1")
    with pytest.raises(HwccError, match="cannot read layer_density"):
        prune(g, 0.5, layer_density="conv=abc")


# ---------------------------------------------------------------------- must not fire
def assert_not_pruned(g: Graph, why: str, **knobs) -> None:
    result = prune(g, **knobs)
    assert not result.modified and result.graph is g
    assert why in result.reason, result.reason


def test_not_at_density_one():
    assert_not_pruned(conv_gemm(), "density is 1", density=1.0)


def test_not_without_weighted_layers():
    g = Graph("relu")
    g.add_input("x", dtypes.FLOAT, (2, 3))
    g.add_node("Relu", ["x"], ["y"])
    g.outputs.append("y")
    assert_not_pruned(g, "the graph has no Conv, Gemm or MatMul", density=0.1)


def test_not_for_runtime_or_overridable_weights():
    g = conv_gemm()
    g.add_input("w_in", dtypes.FLOAT, (8, 3, 3, 3))
    g.set_input(g.node("conv"), 1, "w_in")
    g.inputs.append("wf")  # an initializer listed as an input: a caller may override it
    assert_not_pruned(g, "no weight is a constant initializer", density=0.1)
    with pytest.raises(HwccError, match="cannot be changed"):
        prune(g, 0.5, layer_density="conv=0.1")


def test_not_for_quantized_weights_behind_dequantize():
    g = Graph("dq")
    g.add_input("x", dtypes.FLOAT, (1, 4))
    g.add_initializer("wq", np.arange(12, dtype=np.int8).reshape(4, 3))
    g.add_initializer("s", np.array(0.1, dtype=np.float32))
    g.add_node("DequantizeLinear", ["wq", "s"], ["w"])
    g.add_node("MatMul", ["x", "w"], ["y"], name="mm")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    assert_not_pruned(g, "mm: no operand is a constant initializer", density=0.1)


def test_not_when_already_sparse_enough():
    wf = np.zeros((5, 128), dtype=np.float32)
    wf[:, :3] = 1.0
    wc = np.zeros((8, 3, 3, 3), dtype=np.float32)
    wc[0, 0, 0, :] = 2.0
    result = prune(conv_gemm(wc, wf), 0.5)
    assert not result.modified and "already" in result.reason
    assert result.details["layers"]["fc"]["nonzeros"] == 15


# ---------------------------------------------------------------------- published figures
@pytest.mark.slow
def test_deep_compression_alexnet_figures(report_line):
    """Deep Compression (Han, Mao, Dally, ICLR 2016), Table 4: AlexNet pruned to 84/38/35/
    37/37 % (conv1-5) and 9/9/25 % (fc6-8) keeps 11 % of the weights; sharing at 8 bits
    (conv) and 5 bits (fc) stores it in 3.7 % of its float32 size (27x), 2.88 % (35x)
    after Huffman coding, which saves 20-30 %."""
    g = hwcc.load("zoo:alexnet")
    names = [n.name for n in g.nodes if n.op_type in ("Conv", "Gemm")]
    density = dict(zip(names, [0.84, 0.38, 0.35, 0.37, 0.37, 0.09, 0.09, 0.25]))
    bits = dict(zip(names, [8] * 5 + [5] * 3))
    pruned = prune(g, 1.0, layer_density=json.dumps(density))
    total = pruned.details["total"]
    assert total["density"] == pytest.approx(0.11, abs=0.005)
    for name, d in density.items():
        info = pruned.details["layers"][name]
        assert abs(info["nonzeros"] - d * info["weights"]) <= 1
    ctx = PassContext(
        verify=False, knobs={"quantize": {"mode": "kmeans", "layer_bits": json.dumps(bits)}}
    )
    shared = get_pass("quantize")(pruned.graph, ctx)
    t = shared.details["total"]
    fixed, huffman = t["bits_before"] / t["fixed_bits"], t["bits_before"] / t["huffman_bits"]
    report_line(
        f"Deep Compression AlexNet: density {total['density']:.3f} (paper 0.11), "
        f"{fixed:.1f}x fixed-length (paper 27x), {huffman:.1f}x Huffman (paper 35x), "
        f"Huffman saves {t['huffman_saving']:.0%} (paper 20-30 %); EIE 4-bit format "
        f"{total['compression']:.1f}x"
    )
    assert 22 < fixed < 32 and 30 < huffman < 40
    assert 0.2 <= t["huffman_saving"] <= 0.35
    for name in names:
        assert shared.details["layers"][name]["format"] == (
            "dense" if name == names[0] else "sparse"
        )
