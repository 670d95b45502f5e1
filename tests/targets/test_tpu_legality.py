"""The tpu target's legality: float layers and ops the TPU v1 does not run are reported,
and priced on its host (a stub host, and the cpu); ``hwcc inspect`` prices an int8 model.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper
from onnx import numpy_helper as nh
from tpu_graphs import TOML

import hwcc
from bench.tpu_workloads import Net, qlinear_fc
from hwcc.cli.commands import main as hwcc_main
from hwcc.errors import HwccError
from hwcc.ir.workload import analyze
from hwcc.targets.base import Cost, Target, load_target, register_family


def float_mlp(elem=TP.FLOAT, dtype=np.float32):
    """Gemm → Relu in floating point: not legal on the TPU."""
    w = nh.from_array(np.ones((64, 32), dtype), "W")
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    g = helper.make_graph(
        nodes,
        "f",
        [helper.make_tensor_value_info("x", elem, [4, 64])],
        [helper.make_tensor_value_info("y", elem, [4, 32])],
        [w],
    )
    return hwcc.load(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    )


# ---------------------------------------------------------------------- legality
def test_float_layers_are_not_legal(tpu):
    g = float_mlp()
    fc = analyze(g).layer("fc")
    assert tpu.supports(fc) == "float32 is not legal on the TPU: quantize to int8"
    assert tpu.check_legal(g) == [
        "fc (Gemm): float32 is not legal on the TPU: quantize to int8",
        "relu (Relu): float32 is not legal on the TPU: quantize to int8",
    ]
    # A Layer alone reads 16 bits as int16 (legal); the graph's element types say float16.
    half = float_mlp(TP.FLOAT16, np.float16)
    assert tpu.supports(analyze(half).layer("fc")) is None
    assert (
        tpu.check_legal(half)[0] == "fc (Gemm): float16 is not legal on the TPU: quantize to int8"
    )
    assert tpu.check_legal(qlinear_fc(4, 64, 64)) == []


def test_ops_the_tpu_does_not_run(tpu):
    net = Net()
    qk = net.op("MatMul", [net.input([8, 16]), net.input([16, 8])], name="qk")
    ab = net.op(
        "Gemm",
        [net.input([8, 16]), net.input([16, 8]), net.const(np.ones(8, np.float32))],
        name="ab",
    )
    sm = net.op("Softmax", [qk], name="sm")
    assert tpu.check_legal(net.graph(sm, ab)) == [
        "qk (MatMul): MatMul of two activations: "
        "the matrix unit takes its weights only from Weight Memory",
        "ab (Gemm): Gemm of two activations: "
        "the matrix unit takes its weights only from Weight Memory",
        "sm (Softmax): Softmax is not an Activate function of the TPU v1 "
        "(activations, element-wise arithmetic, pooling)",
    ]


def test_a_bare_workload_has_no_edges(tpu):
    g = qlinear_fc(256, 512, 512)
    assert tpu.cost(analyze(g)).latency_s == tpu.cost(g).latency_s  # 4 tiles either way
    # Without edges a QDQ graph's Relu (float32 after DequantizeLinear) cannot be seen to follow
    # the matrix unit: pricing a Workload sends it to the host; pricing the Graph fuses it.
    net = Net()
    y = net.op("Relu", [net.fc(net.input([8, 256]), 256, 256, act=None)], name="relu")
    relu = analyze(net.graph(y)).layer("relu")
    assert tpu.supports(relu) == "float32 is not legal on the TPU: quantize to int8"
    assert tpu.cost(net.graph(y)).layer("relu").on == "tpu"


@register_family("tpu_test_host")
class _StubHost(Target):
    """A host that prices everything at 1 ms and 1 mJ, to see which nodes leave the TPU."""

    def cost_layer(self, layer, ctx):
        return Cost(1e-3, 1e-3)


def test_float_nodes_are_priced_on_the_host(tmp_path):
    (tmp_path / "stub.toml").write_text('family = "tpu_test_host"\nprovenance = "model"\n')
    text = TOML.read_text().replace('host = "cpu"', f'host = "{tmp_path / "stub.toml"}"')
    (tmp_path / "tpu_stubbed.toml").write_text(text)
    gc = load_target(tmp_path / "tpu_stubbed.toml").cost(float_mlp())
    reason = "float32 is not legal on the TPU: quantize to int8"
    assert [(x.on, x.cost.note) for x in gc.layers] == [("stub", reason)] * 2
    assert gc.host_latency_s == pytest.approx(2e-3)


def test_float_graph_on_the_cpu_host(tpu):
    try:
        load_target("cpu")
    except HwccError:
        pytest.skip("no cpu target in this checkout")
    gc = tpu.price(float_mlp())
    assert {x.on for x in gc.layers} == {"cpu"} and "float32 is not legal" in gc.layer(
        "fc"
    ).cost.note


def test_inspect_prices_an_int8_model(tmp_path, capsys):
    path = tmp_path / "fc.onnx"
    hwcc.save(qlinear_fc(256, 512, 512), path)
    assert hwcc_main(["inspect", str(path), "--target", "tpu"]) == 0
    out = capsys.readouterr().out
    assert "weight-memory-bound: 4 tiles" in out and "TOTAL on tpu" in out
