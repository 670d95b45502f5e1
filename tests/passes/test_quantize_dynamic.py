"""quantize_dynamic: MatMul and Gemm as int8 DynamicQuantizeMatMul, checked in onnxruntime
on the same inputs against the int8 arithmetic written out in numpy (exact up to float
rounding) and against the float model (int8's error), and the cases where it must not fire."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import run_onnx
from hwcc.testing import op_counts

K, N = 64, 96


def quantize(graph: Graph, **knobs):
    return get_pass("quantize_dynamic")(
        graph, PassContext(verify=False, knobs={"quantize_dynamic": knobs})
    )


def matmul(bias=True, rank=3, k=K, n=N, seed=0) -> Graph:
    """a -> MatMul(W) [-> Add(b)] -> y."""
    rng = np.random.default_rng(seed)
    g = Graph("mm")
    g.add_input("a", dtypes.FLOAT, (2, 5, k)[-rank:])
    g.add_initializer("W", rng.normal(size=(k, n)).astype(np.float32))
    g.add_node("MatMul", ["a", "W"], ["m" if bias else "y"], name="mm")
    if bias:
        g.add_initializer("b", rng.normal(size=n).astype(np.float32))
        g.add_node("Add", ["m", "b"], ["y"], name="bias")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def gemm(c_shape=(N,), trans_b=1, alpha=0.5, beta=2.0, seed=1) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph("gemm")
    g.add_input("a", dtypes.FLOAT, (3, K))
    g.add_initializer("B", rng.normal(size=(N, K) if trans_b else (K, N)).astype(np.float32))
    ins = ["a", "B"]
    if c_shape is not None:
        g.add_initializer("C", rng.normal(size=c_shape).astype(np.float32))
        ins.append("C")
    g.add_node("Gemm", ins, ["y"], {"transB": trans_b, "alpha": alpha, "beta": beta}, name="g")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def feeds(g: Graph, seed=2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=g.tensor(n).shape).astype(np.float32) for n in g.real_inputs()}


def reference(g: Graph, a: np.ndarray) -> np.ndarray:
    """The int8 arithmetic of the quantized graph's single DynamicQuantizeMatMul, in numpy:
    ``a`` to uint8 per tensor (onnxruntime's DynamicQuantizeLinear), times the int8
    weights, scaled, plus the bias."""
    (node,) = g.find("DynamicQuantizeMatMul")
    wq, s = (g.initializer(t) for t in node.inputs[1:3])
    lo, hi = min(0.0, float(a.min())), max(0.0, float(a.max()))
    a_scale = np.float32((hi - lo) / 255)
    zp = np.clip(np.round(-lo / a_scale), 0, 255)
    aq = np.clip(np.round(a / a_scale) + zp, 0, 255)
    y = ((aq - zp) @ wq.astype(np.float64)) * (float(a_scale) * s.astype(np.float64))
    if len(node.inputs) > 4 and node.inputs[4]:
        y = y + g.initializer(node.inputs[4])
    return y


def outputs(g: Graph, f) -> np.ndarray:
    return run_onnx(g, f)[0]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("per_channel", [False, True])
def test_matmul_becomes_dynamic_int8_with_its_bias(bias, per_channel):
    g = matmul(bias=bias)
    result = quantize(g, reduce_range=True, per_channel=per_channel)
    q = result.graph
    assert op_counts(q) == Counter({"DynamicQuantizeMatMul": 1})
    assert result.details["layers"]["mm"]["bias"] is bias
    assert q.outputs == ["y"] and q.opset_imports["com.microsoft"] == 1
    f = feeds(g)
    got, want = outputs(q, f), reference(q, f["a"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # onnxruntime does the math
    ref = outputs(g, f)
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()  # and int8 stays near float


@pytest.mark.parametrize("c_shape", [(N,), (), None])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_takes_alpha_and_beta_c_as_bias(c_shape, trans_b):
    g = gemm(c_shape=c_shape, trans_b=trans_b)
    q = quantize(g, reduce_range=True).graph
    assert op_counts(q) == Counter({"DynamicQuantizeMatMul": 1})
    f = feeds(g)
    np.testing.assert_allclose(outputs(q, f), reference(q, f["a"]), rtol=1e-4, atol=1e-4)
    ref = outputs(g, f)
    assert np.abs(outputs(q, f) - ref).max() <= 0.05 * np.abs(ref).max()


def test_gemm_with_a_matrix_c_keeps_it_as_an_add():
    g = gemm(c_shape=(3, N))
    q = quantize(g, reduce_range=True).graph
    assert op_counts(q) == Counter({"DynamicQuantizeMatMul": 1, "Add": 1})
    f = feeds(g)
    ref = outputs(g, f)
    assert np.abs(outputs(q, f) - ref).max() <= 0.05 * np.abs(ref).max()


def test_weights_per_layer_share_one_scale_and_per_channel_one_per_column():
    for per_channel, distinct in ((False, 1), (True, N)):
        q = quantize(matmul(), per_channel=per_channel).graph
        (node,) = q.find("DynamicQuantizeMatMul")
        assert len(np.unique(q.initializer(node.inputs[2]))) == distinct
        assert np.abs(q.initializer(node.inputs[1])).max() == 127


def test_reduce_range_keeps_weights_to_seven_bits():
    q = quantize(matmul(), reduce_range=True).graph
    (node,) = q.find("DynamicQuantizeMatMul")
    assert np.abs(q.initializer(node.inputs[1])).max() == 63


def test_input_graph_is_left_unchanged():
    g = matmul()
    quantize(g)
    assert op_counts(g) == Counter({"MatMul": 1, "Add": 1})


# ---------------------------------------------------------------------- must not fire
def test_not_on_a_small_layer():
    result = quantize(matmul(k=8, n=8))
    assert not result.modified and "fewer than min_weights=4096" in result.reason


def test_not_on_a_conv():
    g = Graph("conv")
    g.add_input("x", dtypes.FLOAT, (1, 64, 8, 8))
    g.add_initializer("w", np.ones((128, 64, 3, 3), np.float32))
    g.add_node("Conv", ["x", "w"], ["y"], name="conv")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    result = quantize(g)
    assert not result.modified and "a Conv" in result.reason


def test_not_when_both_operands_are_computed():
    g = Graph("attn")
    g.add_input("q", dtypes.FLOAT, (2, 5, K))
    g.add_input("k", dtypes.FLOAT, (2, K, 5))
    g.add_node("MatMul", ["q", "k"], ["y"], name="scores")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    result = quantize(g)
    assert not result.modified and "constant float weights" in result.reason


def test_not_when_the_constant_is_batched_or_first():
    g = Graph("batched")
    g.add_input("a", dtypes.FLOAT, (2, 5, K))
    g.add_initializer("W", np.ones((2, K, N), np.float32))
    g.add_node("MatMul", ["a", "W"], ["y"], name="mm")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    assert "not a 2-D second operand" in quantize(g).reason


# ---------------------------------------------------------------------- fine-tuning it
def two_layers() -> Graph:
    """a -> MatMul(W0) -> Relu -> MatMul(W1) + b1 -> y; only the second gets quantized."""
    rng = np.random.default_rng(3)
    g = Graph("two")
    g.add_input("a", dtypes.FLOAT, (4, K))
    g.add_initializer("W0", rng.normal(size=(K, K)).astype(np.float32))
    g.add_initializer("W1", rng.normal(size=(K, N)).astype(np.float32))
    g.add_initializer("b1", rng.normal(size=N).astype(np.float32))
    g.add_node("MatMul", ["a", "W0"], ["h"], name="mm0")
    g.add_node("Relu", ["h"], ["r"], name="relu")
    g.add_node("MatMul", ["r", "W1"], ["m"], name="mm1")
    g.add_node("Add", ["m", "b1"], ["y"], name="bias")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def test_the_torch_executor_runs_it_as_onnxruntime_does():
    torch = pytest.importorskip("torch")
    from hwcc.train.graph_module import to_torch

    q = quantize(two_layers(), layers="mm1", reduce_range=True).graph
    f = feeds(q)
    (got,) = to_torch(q)(**{k: torch.from_numpy(v) for k, v in f.items()})
    np.testing.assert_allclose(got.detach().numpy(), outputs(q, f), rtol=1e-4, atol=1e-3)


def test_fine_tuning_trains_through_it_and_keeps_its_int8_weights():
    pytest.importorskip("torch")
    from hwcc.train.finetune import finetune

    g = two_layers()
    q = quantize(g, layers="mm1").graph
    (node,) = q.find("DynamicQuantizeMatMul")
    x = np.random.default_rng(4).normal(size=(64, K)).astype(np.float32)
    tuned = finetune(q, x, teacher=g, steps=5, lr=1e-2, batch_size=16).graph
    assert not np.array_equal(tuned.initializer("W0"), q.initializer("W0"))  # before it: learns
    assert not np.array_equal(tuned.initializer(node.inputs[4]), q.initializer(node.inputs[4]))
    assert np.array_equal(tuned.initializer(node.inputs[1]), q.initializer(node.inputs[1]))


def test_a_saved_model_keeps_every_shape_after_the_int8_layer(tmp_path):
    """onnx's shape inference does not know the contrib op: its output's type is written
    into the file, so that the shapes after it are known when the model is loaded again."""
    import hwcc

    g = two_layers()
    g.add_node("Softmax", ["y"], ["p"], name="softmax")
    g.outputs[:] = ["p"]
    onnx_io.infer_shapes(g)
    q = quantize(g, layers="mm0").graph
    hwcc.save(q, tmp_path / "q.onnx")
    back = hwcc.load(tmp_path / "q.onnx")
    assert all(back.tensor(t).is_static for n in back.nodes for t in n.outputs if t)


# ---------------------------------------------------------------------- pruning around it
def three_layers(zero_columns=(0, 5, 9)) -> Graph:
    """a -> MatMul(W0) -> Relu -> MatMul(W1) + b1 -> Relu -> MatMul(W2) -> y, with the
    channels ``zero_columns`` of W0 all zero (they carry nothing)."""
    rng = np.random.default_rng(5)
    g = Graph("three")
    g.add_input("a", dtypes.FLOAT, (4, K))
    w0 = rng.normal(size=(K, K)).astype(np.float32)
    w0[:, list(zero_columns)] = 0
    for name, value in {
        "W0": w0,
        "W1": rng.normal(size=(K, N)).astype(np.float32),
        "b1": rng.normal(size=N).astype(np.float32),
        "W2": rng.normal(size=(N, 32)).astype(np.float32),
    }.items():
        g.add_initializer(name, value)
    g.add_node("MatMul", ["a", "W0"], ["h"], name="mm0")
    g.add_node("Relu", ["h"], ["r"], name="relu")
    g.add_node("MatMul", ["r", "W1"], ["m"], name="mm1")
    g.add_node("Add", ["m", "b1"], ["z"], name="bias")
    g.add_node("Relu", ["z"], ["r2"], name="relu2")
    g.add_node("MatMul", ["r2", "W2"], ["y"], name="mm2")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


@pytest.mark.parametrize("per_channel", [False, True])
def test_channel_groups_through_it_prune_and_all_zero_channels_change_nothing(per_channel):
    from hwcc.passes.lib.depgraph import prunable_groups
    from hwcc.passes.prune_channels import prune_k

    g = three_layers()
    q = quantize(g, layers="mm1", reduce_range=True, per_channel=per_channel).graph
    groups = {grp.id: grp for grp in prunable_groups(q)}
    assert set(groups) == {"mm0", "mm1_int8"}
    f = feeds(q)
    cut = prune_k(q, groups["mm0"], 3)  # the three all-zero channels go
    (node,) = cut.find("DynamicQuantizeMatMul")
    assert cut.initializer(node.inputs[1]).shape == (K - 3, N)
    np.testing.assert_allclose(outputs(cut, f), outputs(q, f), rtol=1e-5, atol=1e-4)
    out = prune_k(q, groups["mm1_int8"], 8)  # its own columns, scale and bias
    (node,) = out.find("DynamicQuantizeMatMul")
    assert [out.initializer(t).shape for t in node.inputs[1:3]] == [(K, N - 8), (N - 8,)]
    assert out.initializer(node.inputs[4]).shape == (N - 8,)
    assert outputs(out, f).shape == (4, 32)


def test_not_on_a_gemm_whose_c_is_computed_and_scaled():
    g = gemm(c_shape=None, beta=2.0)
    g.add_input("c", dtypes.FLOAT, (3, N))
    node = g.node("g")
    g.set_inputs(node, [*node.inputs[:2], "c"])
    result = quantize(g)
    assert not result.modified and "computed at run time and scaled by beta" in result.reason
