"""Tests for hwcc.ir.workload's bit widths, weight densities and flags: zeros counted in
float and quantized weights, the caller's density memo, 8-bit QLinear and QDQ layers, and
the stored width that quantize records on a float model."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from workload_graphs import graph_of, one_layer, rand

import hwcc
from hwcc.errors import HwccError
from hwcc.ir.workload import DensityMemo, analyze


# ---------------------------------------------------------------------- bits, densities, flags
def test_weight_density_from_zeros():
    w = rand(8, 4, 3, 3)
    w.reshape(-1)[::2] = 0
    x = one_layer("Conv", {"x": (1, 4, 6, 6)}, {"w": w, "b": np.zeros(8, np.float32)})
    assert x.weight_density == pytest.approx(0.5)  # the all-zero bias is not a weight


def test_a_density_memo_is_the_callers_and_counts_each_weight_once(monkeypatch):
    """Without a memo nothing is kept between analyses; with one, a weight array's zeros
    are counted once for as long as the array lives, and its entry leaves with it."""
    w = rand(8, 4, 3, 3)
    w.reshape(-1)[::4] = 0
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="n")
    g = graph_of([conv], {"x": (1, 4, 6, 6)}, {"w": w})
    counted = []
    real = np.count_nonzero
    monkeypatch.setattr(np, "count_nonzero", lambda a: counted.append(a.size) or real(a))
    assert analyze(g).layer("n").weight_density == analyze(g).layer("n").weight_density == 0.75
    assert len(counted) == 2  # no process-wide cache
    memo = DensityMemo()
    assert analyze(g, densities=memo).layer("n").weight_density == 0.75
    assert analyze(g, densities=memo).layer("n").weight_density == 0.75
    assert len(counted) == 3 and len(memo) == 1
    del g  # the graph held the weight's last references: its entry leaves with them
    gc.collect()
    assert len(memo) == 0


def test_bit_width_overrides_and_activation_density():
    g = graph_of(
        [helper.make_node("Gemm", ["a", "w"], ["y"], name="fc", transB=1)],
        {"a": (1, 10)},
        {"w": rand(6, 10)},
    )
    x = analyze(g, weight_bits=4, act_bits=8).layer("fc")
    assert (x.weight_bits, x.act_bits, x.weight_bytes, x.input_bytes, x.output_bytes) == (
        4,
        8,
        30,
        10,
        6,
    )
    assert analyze(g, act_density=0.25).layer("fc").act_density == 0.25
    assert analyze(g, act_density={"fc": 0.5}).layer("fc").act_density == 0.5
    g.node("fc").meta.update(winograd=True, act_density=0.75)
    x = analyze(g).layer("fc")
    assert x.flags == ("winograd",) and x.act_density == 0.75
    for bad in (dict(weight_bits=0), dict(act_bits=2.5), dict(act_density=1.5)):
        with pytest.raises(HwccError):
            analyze(g, **bad)


def test_qlinearconv_has_8_bit_weights():
    wq = np.random.default_rng(1).integers(-127, 128, (8, 4, 3, 3)).astype(np.int8)
    wq[wq == 3] = 4
    wq.reshape(-1)[:72] = 3  # the zero point: zero after dequantization
    inits = {
        "xs": np.float32(0.1),
        "xz": np.uint8(128),
        "w": wq,
        "ws": np.float32(0.02),
        "wz": np.int8(3),
        "ys": np.float32(0.2),
        "yz": np.uint8(128),
        "b": np.arange(8, dtype=np.int32),
    }
    node = helper.make_node("QLinearConv", ["x", *inits], ["y"], name="qc", pads=[1, 1, 1, 1])
    model = helper.make_model(
        helper.make_graph(
            [node],
            "q",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, (1, 4, 6, 6))],
            [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
            initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in inits.items()],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    x = analyze(hwcc.load(model)).layer("qc")
    assert (x.kind, x.macs, x.params) == ("conv", 8 * 36 * 4 * 9, 288 + 8)
    assert (x.weight_bits, x.act_bits, x.weight_bytes) == (8, 8, 288 * 1 + 8 * 4)
    assert (x.input_bytes, x.output_bytes) == (4 * 36, 8 * 36)
    assert x.weight_density == pytest.approx(1 - 72 / 288)


def test_qdq_weights_feeding_conv_and_matmul_are_8_bit():
    wq = np.full((8, 4, 1, 1), 3, np.int8)
    wq[:4] = 5  # equal to the zero point: zero after dequantization
    mq = np.ones((8, 5), np.int8)
    inits = {"wq": wq, "s": np.float32(0.1), "z": np.int8(5), "mq": mq, "mz": np.int8(0)}
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"], name="dq_w"),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Flatten", ["c"], ["flat"], name="flat", axis=1),
        helper.make_node("DequantizeLinear", ["mq", "s", "mz"], ["m"], name="dq_m"),
        helper.make_node("Gemm", ["flat", "m"], ["y"], name="fc"),
    ]
    g = graph_of(nodes, {"x": (1, 4, 1, 1)}, inits)
    w = analyze(g)
    conv, fc = w.layer("conv"), w.layer("fc")
    assert w.layer("dq_w").kind == "constant" and w.layer("dq_w").params == 0
    assert (conv.weight_bits, conv.params, conv.weight_bytes) == (8, 32, 32)
    assert conv.weight_density == pytest.approx(0.5)
    assert (fc.weight_bits, fc.params, fc.weight_bytes, fc.macs) == (8, 40, 40, 40)
    assert w.params == 72 and w.weight_bytes == 72


def test_qlinearmatmul_has_8_bit_operands():
    inits = {
        "as": np.float32(0.1),
        "az": np.uint8(0),
        "b": np.ones((16, 4), np.int8),
        "bs": np.float32(0.1),
        "bz": np.int8(0),
        "ys": np.float32(0.1),
        "yz": np.uint8(0),
    }
    node = helper.make_node("QLinearMatMul", ["a", *inits], ["y"], name="qm")
    model = helper.make_model(
        helper.make_graph(
            [node],
            "q",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, (3, 16))],
            [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
            initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    x = analyze(hwcc.load(model)).layer("qm")
    assert (x.macs, x.params, x.weight_bytes, x.weight_bits, x.act_bits, x.input_bytes) == (
        192,
        64,
        64,
        8,
        8,
        48,
    )


def test_weight_bits_annotation_of_a_float_model_is_honoured():
    """quantize(mode=fixed16|kmeans) keeps float32 types, records the stored width on the node."""
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    graph = hwcc.load(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    )
    assert analyze(graph).layer("mm").weight_bytes == 32 * 4
    graph.node("mm").meta["weight_bits"] = 16
    layer = analyze(graph).layer("mm")
    assert (layer.weight_bits, layer.weight_bytes) == (16, 32 * 2)
    assert "weight_bits" not in layer.flags
    assert analyze(graph, weight_bits=8).layer("mm").weight_bytes == 32  # the argument still wins
