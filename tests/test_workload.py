"""Tests for hwcc.ir.workload: hand-computed one-node graphs, unknown ops and the table, then
published MAC counts. Bit widths, densities and flags are in test_workload_bits.py."""

from __future__ import annotations

import functools
import json
import os
import re

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from workload_graphs import F32, graph_of, one_layer, rand

import hwcc
import hwcc.models
from hwcc.cli.workload_view import format_bytes as _bytes
from hwcc.cli.workload_view import format_si as _si
from hwcc.cli.workload_view import format_table, summary_json
from hwcc.ir.workload import Workload, analyze

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


# ---------------------------------------------------------------------- one-node graphs
def test_conv_with_pads_stride_dilation():
    x = one_layer(
        "Conv",
        {"x": (1, 4, 20, 30)},
        {"w": rand(8, 4, 3, 5), "b": rand(8)},
        strides=[2, 1],
        dilations=[1, 2],
        pads=[1, 2, 1, 2],
    )
    # P = (20 + 2 - 3) // 2 + 1 = 10;  Q = (30 + 4 - (2·4 + 1)) // 1 + 1 = 26
    assert (x.kind, x.known, x.N, x.C, x.H, x.W, x.M, x.R, x.S, x.P, x.Q) == (
        "conv",
        True,
        1,
        4,
        20,
        30,
        8,
        3,
        5,
        10,
        26,
    )
    assert (x.stride, x.dilation, x.pads, x.groups) == ((2, 1), (1, 2), (1, 2, 1, 2), 1)
    assert x.macs == 1 * 8 * 10 * 26 * 4 * 3 * 5 == 124_800
    assert x.params == 8 * 4 * 3 * 5 + 8 == 488
    assert x.weight_bytes == 488 * 4 and x.weight_bits == 32 and x.act_bits == 32
    assert x.input_bytes == 4 * 20 * 30 * 4 and x.output_bytes == 8 * 10 * 26 * 4
    assert x.flops == 2 * x.macs and x.ops == 0


def test_conv_auto_pad_same_resolves_pads():
    x = one_layer(
        "Conv", {"x": (1, 2, 9, 9)}, {"w": rand(4, 2, 3, 3)}, strides=[2, 2], auto_pad="SAME_UPPER"
    )
    assert (x.P, x.Q, x.pads) == (5, 5, (1, 1, 1, 1))
    assert x.macs == 4 * 25 * 2 * 9


def test_depthwise_conv():
    x = one_layer(
        "Conv", {"x": (1, 32, 16, 16)}, {"w": rand(32, 1, 3, 3)}, group=32, pads=[1, 1, 1, 1]
    )
    assert (x.kind, x.groups, x.M, x.P, x.Q) == ("depthwise_conv", 32, 32, 16, 16)
    assert x.macs == 32 * 16 * 16 * 1 * 9 and x.params == 288


def test_grouped_conv():
    x = one_layer("Conv", {"x": (2, 8, 10, 10)}, {"w": rand(16, 2, 3, 3)}, group=4)
    assert (x.kind, x.N, x.groups, x.P) == ("grouped_conv", 2, 4, 8)
    assert x.macs == 2 * 16 * 8 * 8 * (8 // 4) * 3 * 3 == 36_864


def test_conv1d_folds_to_unit_height():
    x = one_layer("Conv", {"x": (1, 3, 50)}, {"w": rand(6, 3, 5)})
    assert (x.H, x.W, x.R, x.S, x.P, x.Q) == (1, 50, 1, 5, 1, 46)
    assert x.macs == 6 * 46 * 3 * 5


def test_conv_transpose():
    x = one_layer(
        "ConvTranspose",
        {"x": (1, 8, 5, 5)},
        {"w": rand(8, 4, 3, 3), "b": rand(4)},
        strides=[2, 2],
    )
    # output (5 - 1)·2 + 3 = 11; MACs N·C·H·W·(M/groups)·R·S
    assert (x.kind, x.C, x.H, x.M, x.P, x.Q) == ("conv_transpose", 8, 5, 4, 11, 11)
    assert x.macs == 8 * 5 * 5 * 4 * 3 * 3 == 7200
    assert x.params == 8 * 4 * 9 + 4


def test_gemm_trans_b():
    x = one_layer("Gemm", {"a": (2, 64)}, {"w": rand(32, 64), "c": rand(32)}, transB=1)
    assert (x.kind, x.N, x.C, x.M) == ("gemm", 2, 64, 32)
    assert x.macs == 2 * 64 * 32 and x.params == 32 * 64 + 32
    assert (
        x.weight_bytes == (32 * 64 + 32) * 4
        and x.input_bytes == 2 * 64 * 4
        and x.output_bytes == 2 * 32 * 4
    )


def test_matmul_batched_with_weight():
    x = one_layer("MatMul", {"a": (3, 4, 5, 6)}, {"w": rand(6, 7)})
    assert (x.kind, x.batch, x.N, x.C, x.M) == ("matmul", (3, 4), 60, 6, 7)
    assert x.macs == 3 * 4 * 5 * 6 * 7 and x.params == 42


def test_matmul_of_two_activations_has_no_params():
    x = one_layer("MatMul", {"q": (2, 8, 16), "k": (2, 16, 8)})
    assert x.macs == 2 * 8 * 16 * 8 and x.params == 0 and x.weight_bytes == 0
    assert x.input_bytes == (2 * 8 * 16) * 2 * 4


def test_lstm_bidirectional():
    t, n, i, h = 5, 2, 10, 20
    x = one_layer(
        "LSTM",
        {"x": (t, n, i)},
        {"w": rand(2, 4 * h, i), "r": rand(2, 4 * h, h), "b": rand(2, 8 * h)},
        outputs=("y", "y_h"),
        hidden_size=h,
        direction="bidirectional",
    )
    assert (x.kind, x.seq_len, x.N, x.C, x.M, x.directions, x.gates) == ("lstm", t, n, i, h, 2, 4)
    assert x.macs == t * n * 2 * 4 * h * (i + h) == 48_000
    assert x.ops == t * n * 2 * h * 9
    assert x.params == 2 * 4 * h * i + 2 * 4 * h * h + 2 * 8 * h


def test_gru_forward():
    t, n, i, h = 5, 2, 10, 20
    x = one_layer(
        "GRU", {"x": (t, n, i)}, {"w": rand(1, 3 * h, i), "r": rand(1, 3 * h, h)}, hidden_size=h
    )
    assert (x.kind, x.gates, x.directions) == ("gru", 3, 1)
    assert x.macs == t * n * 3 * h * (i + h) == 18_000 and x.params == 3 * h * (i + h)


def test_maxpool_counts_ops_not_macs():
    x = one_layer("MaxPool", {"x": (1, 4, 8, 8)}, kernel_shape=[2, 2], strides=[2, 2])
    assert (x.kind, x.C, x.P, x.Q, x.R, x.S) == ("pool", 4, 4, 4, 2, 2)
    assert x.macs == 0 and x.ops == 4 * 4 * 4 * 2 * 2 and x.params == 0


def test_global_average_pool_window_is_the_whole_input():
    x = one_layer("GlobalAveragePool", {"x": (1, 16, 7, 7)})
    assert (x.R, x.S, x.P, x.Q, x.ops, x.macs) == (7, 7, 1, 1, 16 * 7 * 7, 0)


def test_add_with_bias_constant():
    x = one_layer("Add", {"x": (1, 4, 8, 8)}, {"b": rand(4, 1, 1)})
    assert (x.kind, x.macs, x.ops, x.params) == ("elementwise", 0, 4 * 8 * 8, 4)
    assert x.input_bytes == x.output_bytes == 4 * 64 * 4


def test_gather_from_a_constant_table_is_an_embedding_and_listed():
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")
    model = helper.make_model(
        helper.make_graph(
            [node],
            "e",
            [helper.make_tensor_value_info("ids", TensorProto.INT64, (1, 5))],
            [helper.make_tensor_value_info("y", F32, None)],
            initializer=[numpy_helper.from_array(rand(100, 16), "table")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    w = analyze(hwcc.load(model))
    x = w.layer("embed")
    assert (x.kind, x.params, x.weight_bytes, x.input_bytes, x.output_bytes) == (
        "data_movement",
        1600,
        6400,
        5 * 8,
        5 * 16 * 4,
    )
    assert "embed" in format_table(w)


# ---------------------------------------------------------------------- unknowns
def _custom_graph():
    foo = helper.make_node("Foo", ["x"], ["f"], name="foo", domain="com.example")
    relu = helper.make_node("Relu", ["f"], ["r"], name="relu")
    bar = helper.make_node("Bar", ["r"], ["b"], name="bar", domain="com.example")
    tail = helper.make_node("Relu", ["b"], ["y"], name="tail")
    declared = [helper.make_tensor_value_info("f", F32, (1, 3, 4, 4))]  # "b" stays undeclared
    return graph_of(
        [foo, relu, bar, tail],
        {"x": (1, 3, 4, 4)},
        value_info=declared,
        opsets=(("", 17), ("com.example", 1)),
    )


def test_unknown_op_is_shown_not_fatal():
    w = analyze(_custom_graph())
    foo, relu, tail = w.layer("foo"), w.layer("relu"), w.layer("tail")
    assert (foo.kind, foo.known, foo.macs, foo.domain) == ("unknown", False, 0, "com.example")
    assert foo.reason == "unknown op: com.example::Foo"
    assert relu.known and relu.ops == 48  # the declared output shape lets the next layer be priced
    assert not tail.known and "shape" in tail.reason  # Bar's output shape is unknown
    table = format_table(w)
    assert "?  unknown op: com.example::Foo" in table and "foo" in table and "tail" in table
    assert [u["name"] for u in summary_json(w)["unknown"]] == ["foo", "bar", "tail"]


# ---------------------------------------------------------------------- table and JSON
def _check_table(w: Workload, **kwargs) -> str:
    table = format_table(w, **kwargs)
    body, _, foot = table.partition("\nTOTAL")
    for x in w.layers:
        if x.kind not in ("data_movement", "constant") or x.params or not x.known:
            assert x.name[:14] in body, x.name  # long names are shortened in the middle
    assert re.search(rf"^MACs {w.macs:,} ", foot, re.M), foot
    end = table.index("MACs") + len("MACs")  # right-aligned column: ends under its header
    total_macs = re.split(r"\s{2,}", ("TOTAL" + foot)[:end].strip())[-1]
    assert total_macs == _si(w.macs) == _si(sum(x.macs for x in w.layers))
    return table


def test_shape_computation_is_constant_and_hidden():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape"),
    ]
    w = analyze(graph_of(nodes, {"x": (2, 3)}))
    assert w.layer("shape").kind == "constant" and w.layer("reshape").kind == "data_movement"
    table = format_table(w)
    assert "reshape" not in table.split("TOTAL")[0] and "1 Shape" in table and "1 Reshape" in table
    assert "reshape" in format_table(w, show_all=True)


def test_table_and_json_of_a_small_model():
    w = analyze(_custom_graph())
    _check_table(w)
    data = json.loads(json.dumps(summary_json(w)))
    assert data["totals"]["macs"] == w.macs and len(data["layers"]) == len(w.layers)
    assert data["layers"][0]["name"] == "foo" and data["layers"][0]["known"] is False


def test_human_units():
    assert [_si(n) for n in (1_814_073_344, 724_406_816, 61_100_000, 999, 0)] == [
        "1.81 G",
        "724 M",
        "61.1 M",
        "999",
        "0",
    ]
    assert _bytes(243_860_896) == "233 MiB" and _bytes(512) == "512 B"


# ---------------------------------------------------------------------- published counts
ZOO = [  # (name, published MACs, where the number comes from)
    ("alexnet", 724e6, "Krizhevsky et al. 2012, 2-group AlexNet at 227x227"),
    ("googlenet", 1.586e9, "Szegedy et al. 2015, Table 1 'ops' column (text rounds to 1.5 G)"),
    ("resnet18", 1.81e9, "He et al. 2016, Table 1 (1.8 GFLOPs as multiply-adds)"),
    ("mobilenet_v1", 569e6, "Howard et al. 2017, Table 8"),
    ("mobilenet_v2", 300e6, "Sandler et al. 2018, Table 4"),
]


@functools.cache
def _zoo(name: str) -> Workload:
    return analyze(hwcc.load(hwcc.models.model_path(name)))


@pytest.mark.parametrize(("name", "published", "source"), ZOO, ids=[z[0] for z in ZOO])
def test_zoo_macs_match_published(name, published, source, report_line):
    w = _zoo(name)
    report_line(
        f"workload {name}: {w.macs / 1e6:,.1f} M MACs, published {published / 1e6:,.0f} M "
        f"({(w.macs - published) / published:+.2%}; {source})"
    )
    assert w.macs == pytest.approx(published, rel=0.02), source
    assert all(
        x.known for x in w.layers if x.kind in ("conv", "depthwise_conv", "grouped_conv", "gemm")
    )
    _check_table(w)


def test_alexnet_conv_macs():
    w = _zoo("alexnet")
    conv = [x for x in w.layers if x.kind in ("conv", "grouped_conv")]
    assert [x.groups for x in conv] == [1, 2, 1, 2, 2]
    assert sum(x.macs for x in conv) == pytest.approx(666e6, rel=0.02)
    assert w.params == pytest.approx(60.97e6, rel=0.001)
    assert "233 MiB" in format_table(w)


@pytest.mark.slow
def test_vgg16_macs():
    w = _zoo("vgg16")
    assert w.macs == pytest.approx(15.5e9, rel=0.02)
    assert w.params == 138_357_544


def test_caffe_alexnet_from_onnx_backend_data():
    model = onnx.load(os.path.join(LIGHT, "light_bvlc_alexnet.onnx"))
    for d, v in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, 227, 227)):
        d.dim_value = v  # the file fixes 224x224; Caffe's published 724 M is at 227x227
    w = analyze(hwcc.load(model))
    assert w.macs == pytest.approx(724e6, rel=0.02)
    assert w.params == 60_965_224  # weights come from ConstantOfShape in these "light" files
    assert all(x.known for x in w.layers)


def test_resnet50_from_onnx_backend_data():
    w = analyze(hwcc.load(os.path.join(LIGHT, "light_resnet50.onnx")))
    assert 3.86e9 <= w.macs <= 4.1e9
    assert sum(x.kind == "conv" for x in w.layers) == 53


def test_densenet_table_hides_data_movement():
    w = analyze(hwcc.load(os.path.join(LIGHT, "light_densenet121.onnx")))
    assert len(w.layers) > 1700 and w.macs == pytest.approx(2.87e9, rel=0.02)
    table = _check_table(w)
    assert "1136 data-movement/constant nodes not listed" in table
    assert len(table.splitlines()) < 700
    short = format_table(w, top=10)
    assert len(short.splitlines()) < 25 and "smaller layers not listed (top=10)" in short
    assert f"MACs {w.macs:,} " in short
