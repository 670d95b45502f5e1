"""The dequantize pass: quantized models (dynamic, QDQ, operator format) made here with
onnxruntime's quantizer become float graphs that match them and the float originals,
run in the torch executor, and what the pass does not know is refused.

Tolerances: 8-bit activations are rounded to 1/255 of their range, half a step is 0.2%
of it; each rounded tensor (input, hidden, and in static models the output) adds such an
error, and a hidden layer wider or of larger range than the output magnifies it, so
outputs must agree to ``atol = 0.03·max|y|`` (measured: at most 2%) and cosine > 0.999 on
inputs like the calibration data (beyond the calibrated range a static model saturates).
The QDQ and operator-format rewrites drop the rounding of every activation, the output's
included, and keep only the weights', so they are closer still to the float model than
to the quantized one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from hwcc.errors import HwccError
from hwcc.ir import onnx_io
from hwcc.ir.verify import run_onnx
from hwcc.passes.dequantize import Dequantize, dequantize_for_search, is_quantized
from hwcc.train.graph_module import to_torch


class _ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, stride=2, groups=2)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        y = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(y.mean((2, 3)))


class _Lstm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(6, 16, bidirectional=True)
        self.fc = torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(10, 24), torch.nn.ReLU(), torch.nn.Linear(24, 3))


_MODELS = {
    "conv": (_ConvNet, (1, 3, 16, 16)),
    "mlp": (_mlp, (4, 10)),
    "lstm": (_Lstm, (7, 1, 6)),
}


class _Reader(CalibrationDataReader):
    def __init__(self, shape):
        rng = np.random.default_rng(1)
        self.batches = iter(
            [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(4)]
        )

    def get_next(self):
        return next(self.batches, None)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (float path, input shape); quantized variants are made on demand."""
    root = tmp_path_factory.mktemp("dequantize")
    torch.manual_seed(0)
    out = {}
    for name, (make, shape) in _MODELS.items():
        path = root / f"{name}.onnx"
        torch.onnx.export(
            make().eval(), (torch.randn(shape),), str(path), input_names=["x"],
            output_names=["y"], opset_version=17, dynamo=False,
        )  # fmt: skip
        out[name] = (path, shape)
    return out


def _quantize(models, name: str, how: str, per_channel: bool) -> tuple:
    path, shape = models[name]
    qpath = path.with_name(f"{name}_{how}_{int(per_channel)}.onnx")
    if not qpath.exists():
        if how == "dynamic":
            # reduce_range: 7-bit weights, as onnxruntime advises for x86 without VNNI, where
            # its u8 x s8 kernels saturate 16-bit pair sums (on such a CPU the full-range
            # model is 30 % off its own float math, and the comparison would test the CPU)
            quantize_dynamic(
                path, qpath, per_channel=per_channel, weight_type=QuantType.QInt8,
                reduce_range=True,
            )  # fmt: skip
        else:
            fmt = QuantFormat.QDQ if how == "qdq" else QuantFormat.QOperator
            quantize_static(path, qpath, _Reader(shape), quant_format=fmt, per_channel=per_channel)
    return path, qpath, shape


def _cosine(a, b) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _check(models, name, how, per_channel, expect):
    path, qpath, shape = _quantize(models, name, how, per_channel)
    quantized = onnx_io.load(qpath)
    float_graph, notice = dequantize_for_search(quantized, qpath.name)
    assert notice and notice.startswith(f"{qpath.name} is quantized (")
    ops = Counter(n.op_type for n in float_graph.nodes)
    assert not [n for n in float_graph.nodes if is_quantized(n)]
    assert all(ops[op] == n for op, n in expect.items()), ops
    feeds = _Reader(shape).get_next()  # in the calibrated range: no saturation
    (y,), (yq,), (yf,) = (run_onnx(m, feeds) for m in (float_graph, quantized, path))
    err_q, err_f = np.abs(y - yq).max(), np.abs(y - yf).max()
    assert err_q <= 0.03 * np.abs(yq).max() and _cosine(y, yq) > 0.999
    assert err_f <= 0.03 * np.abs(yf).max() and _cosine(y, yf) > 0.999
    (yt,) = to_torch(float_graph)(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    np.testing.assert_allclose(yt.detach().numpy(), y, rtol=1e-4, atol=1e-5)
    return err_q, err_f


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_conv_becomes_conv_with_bias(models, per_channel):
    _check(models, "conv", "dynamic", per_channel, {"Conv": 2, "MatMul": 1, "Relu": 2, "Add": 1})


def test_dynamic_mlp(models):
    _check(models, "mlp", "dynamic", True, {"MatMul": 2, "Add": 2, "Relu": 1})


def test_dynamic_lstm_becomes_lstm(models):
    path, qpath, _ = _quantize(models, "lstm", "dynamic", True)
    assert "DynamicQuantizeLSTM" in {n.op_type for n in onnx.load(qpath).graph.node}
    _check(models, "lstm", "dynamic", True, {"LSTM": 1, "MatMul": 1})


@pytest.mark.parametrize(("name", "per_channel"), [("conv", False), ("conv", True), ("lstm", True)])
def test_qdq_is_closer_to_the_float_model(models, name, per_channel):
    expect = {"Conv": 2, "Relu": 3} if name == "conv" else {"LSTM": 1}
    err_q, err_f = _check(models, name, "qdq", per_channel, expect)
    assert err_f < err_q


@pytest.mark.parametrize("name", ["conv", "mlp"])
def test_operator_format(models, name):
    expect = {"Conv": 2, "Gemm": 1} if name == "conv" else {"Gemm": 2}
    err_q, err_f = _check(models, name, "qop", True, expect)
    assert err_f < err_q


def test_float_model_is_left_alone(models):
    graph = onnx_io.load(models["conv"][0])
    result = Dequantize()(graph)
    assert not result.modified and result.graph is graph
    assert dequantize_for_search(graph) == (graph, None)


def _model(nodes, inits, inputs, out_type=TensorProto.FLOAT):
    g = helper.make_graph(
        nodes,
        "q",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info("y", out_type, None)],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return onnx_io.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def _dynamic_matmul(weight_input: bool):
    w = np.arange(12, dtype=np.int8).reshape(4, 3)
    inits = {"ws": np.float32(0.1), "wz": np.int8(0)} | ({} if weight_input else {"w": w})
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"], name="mmi"),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "ws"], ["s"]),
        helper.make_node("Mul", ["accf", "s"], ["y"]),
    ]
    inputs = [("x", TensorProto.FLOAT, [2, 4])]
    if weight_input:
        inputs.append(("w", TensorProto.INT8, [4, 3]))
    return _model(nodes, inits, inputs)


def test_older_integer_bias_chain_becomes_the_conv_bias():
    """``onnx.quantize`` 0.1: the bias is ``Cast(Floor(b / (sx·sw)))`` added in int32."""
    rng = np.random.default_rng(3)
    wq = rng.integers(0, 255, (4, 2, 3, 3)).astype(np.uint8)
    b = rng.standard_normal(4).astype(np.float32)
    inits = {"w": wq, "wz": np.uint8(120), "ws": np.float32(0.02), "b": b}
    inits["shape"] = np.array([1, -1, 1, 1], np.int64)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("Mul", ["xs", "ws"], ["s1"]),
        helper.make_node("Div", ["b", "s1"], ["bd"]),
        helper.make_node("Floor", ["bd"], ["bf"]),
        helper.make_node("Cast", ["bf"], ["bi"], to=TensorProto.INT32),
        helper.make_node("ConvInteger", ["xq", "w", "xz", "wz"], ["acc"], name="ci", pads=[1] * 4),
        helper.make_node("Reshape", ["bi", "shape"], ["br"]),
        helper.make_node("Add", ["acc", "br"], ["accb"]),
        helper.make_node("Cast", ["accb"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "ws"], ["s2"]),
        helper.make_node("Mul", ["accf", "s2"], ["y"]),
    ]
    graph = _model(nodes, inits, [("x", TensorProto.FLOAT, [1, 2, 6, 6])])
    out, _ = dequantize_for_search(graph)
    assert [n.op_type for n in out.nodes] == ["Conv"]
    conv = out.nodes[0]
    np.testing.assert_array_equal(out.initializer(conv.inputs[2]), b)
    w = (wq.astype(np.float32) - 120) * np.float32(0.02)
    np.testing.assert_array_equal(out.initializer(conv.inputs[1]), w)
    feeds = {"x": rng.standard_normal((1, 2, 6, 6)).astype(np.float32)}
    (y,), (yq,) = run_onnx(out, feeds), run_onnx(graph, feeds)
    assert np.abs(y - yq).max() <= 0.01 * np.abs(yq).max()


def test_a_weight_that_is_not_constant_is_refused():
    with pytest.raises(HwccError, match=r"MatMulInteger node 'mmi'.*not a constant") as e:
        dequantize_for_search(_dynamic_matmul(weight_input=True))
    assert "float model" in str(e.value)
    dequantize_for_search(_dynamic_matmul(weight_input=False))  # the same, constant, is fine


def test_an_unknown_pattern_is_refused():
    """The integer result goes on as an integer (no Cast and scaling to float)."""
    graph = _dynamic_matmul(weight_input=False)
    proto = onnx_io.to_proto(graph)
    del proto.graph.node[2:]
    proto.graph.output[0].name = "acc"
    proto.graph.output[0].type.tensor_type.elem_type = TensorProto.INT32
    with pytest.raises(HwccError, match=r"(?s)'mmi'.*float model"):
        dequantize_for_search(onnx_io.load(proto))


def test_a_quantized_graph_input_is_refused():
    nodes = [helper.make_node("DequantizeLinear", ["xq", "s"], ["y"], name="dq")]
    graph = _model(nodes, {"s": np.float32(0.1)}, [("xq", TensorProto.UINT8, [3])])
    with pytest.raises(HwccError, match=r"DequantizeLinear node 'dq'.*graph input"):
        dequantize_for_search(graph)


def test_a_scale_that_is_not_constant_is_refused():
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s"], ["y"], name="dq"),
    ]
    graph = _model(nodes, {}, [("x", TensorProto.FLOAT, [3]), ("s", TensorProto.FLOAT, [])])
    with pytest.raises(HwccError, match=r"node 'dq'.*scale or zero point is not a constant"):
        dequantize_for_search(graph)


def test_the_compile_says_whether_the_target_quantizes_the_result_again(models, tmp_path):
    """The notice is true to the target: the TPU's legal form quantizes the float search's
    result again; the cpu's has no quantization, so the notice says the result is float."""
    import hwcc

    _, qpath, _ = _quantize(models, "mlp", "qdq", False)
    fast = dict(max_iterations=1, short_term_steps=1, long_term_steps=0, finetune_top=1)
    notices = {}
    for target in ("tpu", "cpu"):
        run = hwcc.compile(str(qpath), target, "95%", **fast)
        (notices[target],) = [w for w in run.summary.warnings if "is quantized (" in w]
    assert notices["tpu"].endswith("the target's legal form quantizes it again (quantize_int8)")
    assert "cpu's legal form does not quantize" in notices["cpu"]
    assert not any(n.op_type == "QuantizeLinear" for n in run.graph.nodes)  # cpu: float
