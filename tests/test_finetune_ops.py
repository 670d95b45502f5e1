"""finetune's torch executor against onnxruntime: the digits models and (slow) the zoo's
architectures, one graph per op family with explicit tolerances, fake quantization's
straight-through gradients, a fixed-batch graph run at any batch, and several inputs and
outputs in graph order.

Torch runs on one thread (the ``one_thread`` fixture in tests/conftest.py); the graphs
and tolerances are in tests/finetune_graphs.py."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import ATOL, RTOL, ort_per_sample, zoo
from finetune_graphs import model_of as _model
from finetune_graphs import rand as _rand
from onnx import TensorProto, helper, numpy_helper

from hwcc.errors import HwccError
from hwcc.ir.verify import run_onnx
from hwcc.train.graph_module import to_torch, torch_outputs

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

DIGITS = ["lenet5-digits", "lenet300-digits", "mobilenet-digits", "resnet-digits"]


# ---------------------------------------------------------------------- differential
@pytest.mark.parametrize("name", DIGITS)
def test_digits_models_match_onnxruntime(name, digits):
    (_, _), (x, _) = digits
    graph = zoo(name)
    ref = ort_per_sample(graph, x[:16])  # the model's fixed batch of 1
    (out,) = to_torch(graph)(torch.from_numpy(x[:16]))  # one batch of 16
    assert out.shape == (16, 10)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "googlenet", "transformer_encoder"])
def test_zoo_architectures_match_onnxruntime(name):
    """Two samples in one batch in torch, one at a time in onnxruntime (the exports' batch)."""
    graph = zoo(name)
    t = graph.tensors[graph.real_inputs()[0]]
    rng = np.random.default_rng(0)
    if t.elem_type == TensorProto.INT64:  # token ids
        x = rng.integers(0, 100, (2, *t.shape[1:]))
    else:
        x = rng.standard_normal((2, *t.shape[1:])).astype(np.float32)
    ref = ort_per_sample(graph, x)
    out = torch_outputs(graph, x)[0]
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


def _cases() -> dict[str, tuple]:
    """name -> (nodes, inputs, initializers, outputs); each covers a family of ops."""
    r = np.random.default_rng(1)
    N = helper.make_node
    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    return {
        "conv_group_asym_pads_strides_dilations": (
            [
                N(
                    "Conv",
                    ["x", "w", "b"],
                    ["y"],
                    group=2,
                    pads=[1, 0, 2, 1],
                    strides=[2, 1],
                    dilations=[1, 2],
                )
            ],
            {"x": [2, 4, 9, 9]},
            {"w": _rand(r, 6, 2, 3, 3), "b": _rand(r, 6)},
            ["y"],
        ),
        "conv_same_upper_and_1d": (
            [
                N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2]),
                N("Conv", ["x1", "w1"], ["y1"], pads=[1, 2]),
            ],
            {"x": [2, 3, 7, 7], "x1": [2, 3, 10]},
            {"w": _rand(r, 4, 3, 4, 4), "w1": _rand(r, 4, 3, 3)},
            ["y", "y1"],
        ),
        "conv_transpose": (
            [
                N(
                    "ConvTranspose",
                    ["x", "w", "b"],
                    ["y"],
                    strides=[2, 2],
                    pads=[1, 0, 1, 0],
                    output_padding=[1, 1],
                )
            ],
            {"x": [2, 4, 5, 5]},
            {"w": _rand(r, 4, 3, 3, 3), "b": _rand(r, 3)},
            ["y"],
        ),
        "gemm_matmul": (
            [
                N("Gemm", ["a", "w", "c"], ["y"], alpha=0.5, beta=2.0, transA=1, transB=1),
                N("MatMul", ["m", "w2"], ["z"]),
            ],
            {"a": [4, 2], "m": [2, 3, 4]},
            {"w": _rand(r, 3, 4), "c": _rand(r, 3), "w2": _rand(r, 4, 5)},
            ["y", "z"],
        ),
        "elementwise_activations": (
            [
                N("Add", ["x", "k"], ["a"]),
                N("Sub", ["a", "x"], ["b"]),
                N("Mul", ["b", "x"], ["c"]),
                N("Div", ["c", "k2"], ["d"]),
                N("LeakyRelu", ["d"], ["e"], alpha=0.1),
                N("Clip", ["e", "lo", "hi"], ["f"]),
                N("Sigmoid", ["f"], ["g"]),
                N("Tanh", ["x"], ["h"]),
                N("HardSigmoid", ["x"], ["i"], alpha=0.3, beta=0.4),
                N("HardSwish", ["x"], ["j"]),
                N("Relu", ["x"], ["rl"]),
                N("Erf", ["x"], ["er"]),
                N("Softmax", ["x"], ["s"], axis=1),
                N("Concat", ["g", "h", "i", "j", "rl", "er", "s"], ["y"], axis=1),
            ],
            {"x": [2, 3, 4, 4]},
            {
                "k": _rand(r, 3, 1, 1),
                "k2": np.float32(1.5) + np.abs(_rand(r, 4)),
                "lo": np.float32(-0.5),
                "hi": np.float32(0.7),
            },
            ["y"],
        ),
        "pooling": (
            [
                N("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 1, 0]),
                N(
                    "MaxPool",
                    ["x"],
                    ["b"],
                    kernel_shape=[3, 3],
                    strides=[2, 2],
                    pads=[1, 1, 1, 1],
                    ceil_mode=1,
                ),
                N(
                    "AveragePool",
                    ["x"],
                    ["c"],
                    kernel_shape=[3, 3],
                    strides=[2, 2],
                    pads=[1, 1, 1, 1],
                ),
                N(
                    "AveragePool",
                    ["x"],
                    ["d"],
                    kernel_shape=[3, 3],
                    strides=[2, 2],
                    pads=[1, 1, 1, 1],
                    count_include_pad=1,
                ),
                N(
                    "AveragePool",
                    ["x"],
                    ["e"],
                    kernel_shape=[2, 3],
                    strides=[1, 2],
                    pads=[1, 0, 0, 2],
                ),
                N(
                    "AveragePool",
                    ["x"],
                    ["f"],
                    kernel_shape=[2, 3],
                    strides=[1, 2],
                    pads=[1, 0, 0, 2],
                    count_include_pad=1,
                ),
                N("GlobalAveragePool", ["x"], ["g"]),
            ],
            {"x": [2, 3, 7, 7]},
            {},
            ["a", "b", "c", "d", "e", "f", "g"],
        ),
        "batchnorm_lrn_layernorm": (
            [
                N("BatchNormalization", ["x", "s", "bb", "m", "v"], ["a"], epsilon=1e-3),
                N("LRN", ["a"], ["b"], size=5, alpha=1e-2, beta=0.75, bias=2.0),
                N("LRN", ["a"], ["c"], size=3),
                N("LayerNormalization", ["x", "ls", "lb"], ["d"], axis=-2),
            ],
            {"x": [2, 6, 4, 4]},
            {
                "s": _rand(r, 6),
                "bb": _rand(r, 6),
                "m": _rand(r, 6),
                "v": np.abs(_rand(r, 6)) + 0.1,
                "ls": _rand(r, 4, 4),
                "lb": _rand(r, 4, 4),
            },
            ["b", "c", "d"],
        ),
        "shape_ops": (
            [
                N("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                N("Identity", ["t"], ["i"]),
                N("Dropout", ["i"], ["dr"]),
                N("Unsqueeze", ["dr", "ax"], ["u"]),
                N("Squeeze", ["u", "ax"], ["sq"]),
                N("Flatten", ["sq"], ["fl"], axis=2),
                N("Pad", ["x", "pads", "pv"], ["pc"]),
                N("Pad", ["x", "pads"], ["pr"], mode="reflect"),
                N("Pad", ["x", "pads"], ["pe"], mode="edge"),
                N("Split", ["x", "sp"], ["s1", "s2"], axis=1),
                N("Slice", ["x", "st", "en", "sa", "ss"], ["sl"]),
                N("ReduceMean", ["x"], ["rm"], axes=[2, 3], keepdims=0),
            ],
            {"x": [2, 3, 4, 5]},
            {
                "ax": i64(1),
                "pads": i64(0, 0, 1, 2, 0, 0, 2, 1),
                "pv": np.float32(0.25),
                "sp": i64(1, 2),
                "st": i64(3, 0),
                "en": i64(-100, 10),
                "sa": i64(3, 1),
                "ss": i64(-2, 2),
            },
            ["fl", "pc", "pr", "pe", "s1", "s2", "sl", "rm"],
        ),
        "dynamic_shape_reshape": (
            [
                N(
                    "Constant",
                    [],
                    ["minus1"],
                    value=numpy_helper.from_array(np.array(-1, np.int64)),
                ),
                N("Shape", ["x"], ["shp"]),
                N("Gather", ["shp", "zero"], ["n"], axis=0),
                N("Unsqueeze", ["n", "zero1"], ["n1"]),
                N("Unsqueeze", ["minus1", "zero1"], ["m1"]),
                N("Concat", ["n1", "m1"], ["target"], axis=0),
                N("Reshape", ["x", "target"], ["y"]),
                N("Gather", ["y", "idx"], ["z"], axis=1),
            ],
            {"x": [2, 3, 4]},
            {"zero": np.array(0, np.int64), "zero1": i64(0), "idx": i64(2, -1, 0)},
            ["y", "z"],
        ),
        "quantize_dequantize": (
            [
                N("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                N("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                N("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
                N("Conv", ["xd", "w"], ["y"]),
            ],
            {"x": [2, 3, 5, 5]},
            {
                "xs": np.float32(0.02),
                "xz": np.uint8(128),
                "ws": np.abs(_rand(r, 4)) * 0.01,
                "wq": r.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8),
                "wz": np.zeros(4, np.int8),
            },
            ["y", "xd"],
        ),
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_op_families_match_onnxruntime(case):
    nodes, inputs, inits, outputs = _cases()[case]
    graph = _model(nodes, inputs, inits, outputs)
    rng = np.random.default_rng(2)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs.items()}
    ref = run_onnx(graph, feeds)
    out = to_torch(graph)(**feeds)
    assert len(out) == len(outputs)
    for name, o, r in zip(outputs, out, ref):
        assert tuple(o.shape) == r.shape, name
        np.testing.assert_allclose(o.detach().numpy(), r, rtol=RTOL, atol=ATOL, err_msg=name)


def test_fake_quantization_passes_gradients_straight_through():
    """d(dequantize(quantize(x)))/dx is 1 where x is inside the int8 range, 0 where it saturates."""
    N = helper.make_node
    graph = _model(
        [
            N("QuantizeLinear", ["x", "s", "z"], ["q"]),
            N("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        {"x": [1, 5]},
        {"s": np.float32(0.1), "z": np.int8(0)},
        ["y"],
    )
    x = torch.tensor([[-20.0, -0.33, 0.04, 0.26, 13.0]], requires_grad=True)
    (y,) = to_torch(graph)(x)
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), [[-12.8, -0.3, 0.0, 0.3, 12.7]], rtol=1e-6)
    assert x.grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0]]


def test_fixed_batch_graph_runs_any_batch():
    """A graph exported at batch 1 whose Reshape names the batch: fed 5 samples at once,
    it gives what onnxruntime gives sample by sample."""
    r = np.random.default_rng(3)
    N = helper.make_node
    graph = _model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N("Relu", ["c"], ["r"]),
            N("Reshape", ["r", "shape"], ["f"]),
            N("Gemm", ["f", "fc", "fb"], ["y"], transB=1),
        ],
        {"x": [1, 2, 4, 4]},
        {
            "w": _rand(r, 3, 2, 3, 3),
            "shape": np.array([1, 48], np.int64),
            "fc": _rand(r, 7, 48),
            "fb": _rand(r, 7),
        },
        ["y"],
    )
    x = _rand(r, 5, 2, 4, 4)
    out = torch_outputs(graph, x, batch_size=5)[0]
    np.testing.assert_allclose(out, ort_per_sample(graph, x), rtol=RTOL, atol=ATOL)


def test_several_inputs_and_outputs_in_graph_order():
    N = helper.make_node
    graph = _model(
        [N("Sub", ["a", "b"], ["d"]), N("Mul", ["a", "b"], ["p"])],
        {"a": [2, 3], "b": [2, 3]},
        {},
        ["p", "d"],
    )
    a, b = np.ones((2, 3), np.float32) * 3, np.ones((2, 3), np.float32)
    module = to_torch(graph)
    for out in (module(a, b), module(b=b, a=a), module(a, b=b)):
        assert [float(t[0, 0]) for t in out] == [3.0, 2.0]
    with pytest.raises(HwccError, match="missing"):
        module(a)
