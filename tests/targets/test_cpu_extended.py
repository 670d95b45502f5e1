"""The cpu target's replay of onnxruntime's transformer fusions (targets/cpu/extended.py)
and its per-kernel cache model: each rule against the kernels onnxruntime's own optimizer
keeps, on a graph where it must fire and on one where it must not; the cache share by hand.
"""

from __future__ import annotations

import collections
import math

import numpy as np
import onnxruntime as ort
import pytest
from cpu_helpers import _ort_kernels, const, fake_target, model, vi
from onnx import helper, numpy_helper

import hwcc
from hwcc.ir.onnx_io import to_proto
from hwcc.ir.workload import analyze
from hwcc.targets.base import load_target
from hwcc.targets.cpu.kernel_model import kernel_graph
from hwcc.targets.cpu.kernels import plan_kernels
from hwcc.targets.cpu.specs import Kernel
from hwcc.targets.cpu.target import _hot_share

S, D = 6, 16  # sequence length and width of the test blocks


@pytest.fixture(scope="module")
def block():
    return load_target("cpu").table.block


def _scalar(name, value):
    return numpy_helper.from_array(np.array(value, np.float32), name)


def _planned(m, block) -> collections.Counter:
    g = hwcc.load(m)
    return collections.Counter(k.spec["op"] for k in plan_kernels(g, analyze(g), block).kernels)


def _onnxruntime(m) -> collections.Counter:
    names = {"com.microsoft.nchwc": "nchwc", "com.microsoft": "com.microsoft"}
    out = collections.Counter()
    for op, *_ in _ort_kernels(m.SerializeToString()):
        domain, _, name = op.partition(":")
        out[f"{names[domain]}.{name}" if domain else name] += 1
    return out


def _same(m, block) -> collections.Counter:
    planned, ran = _planned(m, block), _onnxruntime(m)
    assert planned == ran
    return planned


def _gelu_block(first="div", two=1.4142135, order="x_first", extra_reader=False):
    """y = gelu(x) over [1, S, D], written as exporters write it."""
    if first == "div":
        head = helper.make_node("Div", ["x", "c2"], ["d"], name="div")
    else:
        head = helper.make_node("Mul", ["x", "c2"], ["d"], name="scale")
    nodes = [
        head,
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="add"),
    ]
    if order == "x_first":
        nodes += [
            helper.make_node("Mul", ["x", "a"], ["m"], name="mul"),
            helper.make_node("Mul", ["m", "half"], ["y"], name="half"),
        ]
    else:
        nodes += [
            helper.make_node("Mul", ["x", "half"], ["h"], name="half"),
            helper.make_node("Mul", ["h", "a"], ["y"], name="mul"),
        ]
    outs = [vi("y", [1, S, D])]
    if extra_reader:
        outs.append(vi("e", [1, S, D]))
    inits = [_scalar("c2", two), _scalar("one", 1.0), _scalar("half", 0.5)]
    return model(nodes, [vi("x", [1, S, D])], outs, inits)


@pytest.mark.parametrize("kw", [{}, {"order": "half_first"}], ids=str)
def test_gelu_fuses_as_onnxruntime(kw, block):
    assert _same(_gelu_block(**kw), block) == {"com.microsoft.Gelu": 1}


@pytest.mark.parametrize(
    "kw", [{"two": 1.5}, {"extra_reader": True}, {"first": "mul", "two": 0.70710677}], ids=str
)
def test_gelu_must_not_fuse(kw, block):
    """A wrong constant, an intermediate read elsewhere, or x·(1/√2) in place of x/√2
    (which this build leaves alone): the nodes run one by one."""
    assert "com.microsoft.Gelu" not in _same(_gelu_block(**kw), block)


def _residual_ln(bias_on=None, residual_readers=1, rank=3):
    """LayerNorm(x + f) with f = MatMul(x, w) (+ a bias Add on one side)."""
    shape = [1, S, D] if rank == 3 else [S, D]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["f"], name="mm")]
    left, right = "x", "f"
    if bias_on == "left":
        nodes.append(helper.make_node("Add", ["x", "bias"], ["xb"], name="bias_add"))
        left = "xb"
    elif bias_on == "right":
        nodes.append(helper.make_node("Relu", ["f"], ["fr"], name="relu"))
        nodes.append(helper.make_node("Add", ["fr", "bias"], ["fb"], name="bias_add"))
        right = "fb"
    nodes += [
        helper.make_node("Add", [left, right], ["r"], name="residual"),
        helper.make_node("LayerNormalization", ["r", "g", "b"], ["y"], name="ln", axis=-1),
    ]
    outs = [vi("y", shape)]
    if residual_readers > 1:
        nodes.append(helper.make_node("Relu", ["r"], ["z"], name="other"))
        outs.append(vi("z", shape))
    inits = [const("w", D, D), const("bias", D), const("g", D), const("b", D)]
    return model(nodes, [vi("x", shape)], outs, inits)


@pytest.mark.parametrize("bias_on", [None, "left", "right"])
def test_skip_layer_norm_fuses_as_onnxruntime(bias_on, block):
    ops = _same(_residual_ln(bias_on), block)
    assert ops["com.microsoft.SkipLayerNormalization"] == 1 and "LayerNormalization" not in ops


@pytest.mark.parametrize("kw", [{"residual_readers": 2}, {"rank": 2}], ids=str)
def test_skip_layer_norm_must_not_fuse(kw, block):
    """A residual read by another node (pre-norm blocks), or 2-D tensors (there the MatMul
    takes the residual Add as its Gemm's C first): no fusion."""
    ops = _same(_residual_ln(**kw), block)
    assert "com.microsoft.SkipLayerNormalization" not in ops and ops["LayerNormalization"] == 1


def _attention_scores(scale_where="after", scale=0.25, scale_shape=()):
    """softmax(q @ k^T · scale) over [1, 2, S, 8] heads, the scale before or after."""
    q, k = vi("q", [1, 2, S, 8]), vi("k", [1, 2, 8, S])
    inits = [numpy_helper.from_array(np.full(scale_shape, scale, np.float32), "s")]
    if scale_where == "after":
        nodes = [
            helper.make_node("MatMul", ["q", "k"], ["m"], name="mm"),
            helper.make_node("Mul", ["m", "s"], ["t"], name="scale"),
        ]
    else:
        nodes = [
            helper.make_node("Div", ["q", "s"], ["qs"], name="scale"),
            helper.make_node("MatMul", ["qs", "k"], ["t"], name="mm"),
        ]
    nodes.append(helper.make_node("Softmax", ["t"], ["y"], name="softmax", axis=-1))
    return model(nodes, [q, k], [vi("y", [1, 2, S, S])], inits)


@pytest.mark.parametrize("where", ["after", "before"])
def test_matmul_scale_fuses_as_onnxruntime(where, block):
    assert _same(_attention_scores(where), block)["com.microsoft.FusedMatMul"] == 1


def test_matmul_scale_must_not_fuse_a_tensor(block):
    """A per-column scale is no scalar: MatMul and Mul stay."""
    ops = _same(_attention_scores("after", scale_shape=(S,)), block)
    assert ops["MatMul"] == 1 and ops["Mul"] == 1


def _swish(alpha=None, readers=1, c=16):
    """Conv -> x·σ(αx) -> Conv, as YOLO-style detectors write SiLU."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], name="c1", pads=[1, 1, 1, 1])]
    src = "t"
    if alpha is not None:
        nodes.append(helper.make_node("Mul", ["t", "a"], ["ta"], name="alpha"))
        src = "ta"
    nodes += [
        helper.make_node("Sigmoid", [src], ["s"], name="sig"),
        helper.make_node("Mul", ["t", "s"], ["u"], name="mul"),
        helper.make_node("Conv", ["u", "w", "b"], ["y"], name="c2", pads=[1, 1, 1, 1]),
    ]
    outs = [vi("y", [1, c, 6, 6])]
    if readers > 1:
        outs.append(vi("s", [1, c, 6, 6]))
    inits = [const("w", c, c, 3, 3), const("b", c), _scalar("a", alpha or 1.0)]
    return model(nodes, [vi("x", [1, c, 6, 6])], outs, inits)


@pytest.mark.parametrize("kw", [{}, {"alpha": 1.702}, {"c": 12}], ids=str)
def test_quick_gelu_fuses_as_onnxruntime(kw, block):
    """Also in the NCHWc layout: the reorders around it are onnxruntime's."""
    assert _same(_swish(**kw), block)["com.microsoft.QuickGelu"] == 1


def test_quick_gelu_must_not_fuse_a_shared_sigmoid(block):
    ops = _same(_swish(readers=2), block)
    assert "com.microsoft.QuickGelu" not in ops and ops["Sigmoid"] == 1


def _projection(bias_shape=(D,)):
    """A [1, S, D] activation through MatMul + bias Add, then Relu."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "bias"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y"], name="relu"),
    ]
    inits = [const("w", D, D), const("bias", *bias_shape)]
    return model(nodes, [vi("x", [1, S, D])], [vi("y", [1, S, D])], inits)


def test_matmul_add_of_a_3d_input_is_a_gemm_between_reshapes(block):
    ops = _same(_projection(), block)
    assert ops["Gemm"] == 1 and ops["Reshape"] == 2 and "MatMul" not in ops


def test_matmul_add_of_a_3d_input_with_a_2d_bias_stays(block):
    ops = _same(_projection(bias_shape=(S, D)), block)
    assert ops["MatMul"] == 1 and ops["Add"] == 1


def test_contrib_kernel_models_run_as_written(block):
    """Each contrib kernel's one-kernel model keeps exactly that kernel in onnxruntime, and
    computes what the nodes it replaces compute."""
    for m in (_gelu_block(), _residual_ln("left"), _attention_scores(), _swish(alpha=1.702)):
        g = hwcc.load(m)
        for k in plan_kernels(g, analyze(g), block).kernels:
            if not k.spec["op"].startswith("com.microsoft.") or "Conv" in k.spec["op"]:
                continue
            data = to_proto(kernel_graph(k.spec, block), value_info=False).SerializeToString()
            kept = [op for op, *_ in _ort_kernels(data)]
            assert kept == [k.spec["op"].replace("com.microsoft.", "com.microsoft:")], kept


def test_contrib_kernels_compute_what_they_replace():
    """Differential: onnxruntime with and without its extended fusions, same inputs."""
    rng = np.random.default_rng(0)
    for m in (_gelu_block(), _residual_ln("right"), _attention_scores("before")):
        feeds = {
            i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(
                np.float32
            )
            for i in m.graph.input
        }
        outs = []
        for level in (
            ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        ):
            so = ort.SessionOptions()
            so.graph_optimization_level = level
            s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
            outs.append(s.run(None, feeds)[0])
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------- cache share by hand
def test_hot_share_by_hand():
    """L2 = 1000 B, an inference touches WS = 4000 B, so weights and graph inputs are found
    in L2 at l2/WS = 0.25. A kernel of 100 B of weights reading three activations: 400 B
    just written (distance 0: all 400 B in L2), 400 B of graph input (0.25: 100 B) and
    2000 B just written (only the last 1000 B are still there):
    share = (100·0.25 + 400 + 100 + 1000) / (100 + 400 + 400 + 2000) = 1525 / 2900."""
    k = Kernel("k", (), {}, weight_bytes=100, reads=((400, 0), (400, None), (2000, 0)))
    assert _hot_share(k, 1000, 4000, 1) == pytest.approx(1525 / 2900, rel=1e-12)
    far = Kernel("f", (), {}, weight_bytes=100, reads=((400, 900),))  # 100 B left in L2
    assert _hot_share(far, 1000, 4000, 1) == pytest.approx((25 + 100) / 500, rel=1e-12)


def test_chained_gemms_read_their_input_hot(tmp_path):
    """x -> Gemm 1024x1024 -> Gemm 1024x1024, fake table (hot 10 us, cold 30 us), L2 1 MiB.
    Each kernel: weights W = 4·(1024² + 1024) = 4198400 B, input and output 4096 B; the
    inference touches WS = 4096 + 2·(W + 4096) = 8409088 B, so weights are in L2 at
    f = 1048576 / 8409088. The first reads the graph input (also at f); the second reads
    what the first just wrote (distance 0, all in L2):
    share₁ = f, share₂ = (W·f + 4096) / (W + 4096)."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc1", transB=1),
        helper.make_node("Gemm", ["h", "w", "b"], ["y"], name="fc2", transB=1),
    ]
    m = model(
        nodes,
        [vi("x", [1, 1024])],
        [vi("y", [1, 1024])],
        [const("w", 1024, 1024), const("b", 1024)],
    )
    t, _ = fake_target(tmp_path)
    g = hwcc.load(m)
    t.prepare(g)
    plan = t.plan(g)
    assert plan.working_set == 8409088
    (s1, *_, f1), (s2, *_, f2) = t.kernel_times(plan)
    w, f = 4198400, 1048576 / 8409088
    assert f1 == pytest.approx(f, rel=1e-12)
    assert f2 == pytest.approx((w * f + 4096) / (w + 4096), rel=1e-12)
    assert s2 == pytest.approx(30e-6 - f2 * 20e-6, rel=1e-12) and s2 < s1
    assert math.isclose(plan.kernels[1].reads[0][1], 0)


def test_activation_buffers_are_counted_once_as_onnxruntime_reuses_them(block):
    """x -> 12 Sigmoids -> Add(last, first Sigmoid's output), every tensor [1, 1024] (4 KB).
    onnxruntime gives each output a buffer a dead tensor had, so the inference touches the
    graph input and at most three live buffers (the skip, a Sigmoid's input and output):
    WS = 4096 + 3·4096 = 16384 B, not 4096 + 13·4096 written. The Add's read of the skip
    had 11·(4096 + 4096) B of reads and writes since, at most those three buffers distinct:
    distance 12288 B."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["s0"], name="s0")]
    nodes += [
        helper.make_node("Sigmoid", [f"s{i - 1}"], [f"s{i}"], name=f"s{i}") for i in range(1, 12)
    ]
    nodes.append(helper.make_node("Add", ["s11", "s0"], ["y"], name="add"))
    m = model(nodes, [vi("x", [1, 1024])], [vi("y", [1, 1024])], [])
    g = hwcc.load(m)
    plan = plan_kernels(g, analyze(g), block)
    assert len(plan.kernels) == 13 and plan.activation_bytes == 3 * 4096
    assert plan.working_set == 4096 + 3 * 4096
    assert plan.kernels[-1].reads == ((4096, 0), (4096, 12288))
    assert plan.kernels[1].reads == ((4096, 0),)  # what the last kernel wrote: distance 0
