"""ONNX -> IR -> ONNX keeps models valid and their outputs identical: onnx's light models
and node tests, both torch exporters, the zoo, subgraphs and custom ops passed through,
initializers written back (untouched ones bit for bit), node annotations, and the probe
written without weights.

The comparison is always between onnxruntime running the original model and
onnxruntime running ``save(load(model))`` on the same inputs, to the bit (helpers in
tests/onnx_round_trip.py). Dynamic dims, external data and bad files are in
test_onnx_io_bad_input.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_round_trip import LIGHT, assert_round_trip, identical, make_model, session

import hwcc
from hwcc.ir import onnx_io


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.slow) if p.stem == "light_vgg19" else p  # 3 s
        for p in sorted(LIGHT.glob("*.onnx"))
    ],
    ids=lambda p: p.stem,
)
def test_light_real_architectures_round_trip(path, tmp_path):
    graph = assert_round_trip(path, tmp_path)
    assert len(graph) > 10


def _run_node_case(case):
    """None if onnxruntime cannot run the case's model; else whether it round-trips."""
    model = case.model
    names = [i.name for i in model.graph.input]
    feeds = dict(zip(names, case.data_sets[0][0])) if case.data_sets else {}
    try:
        ref = session(model).run(None, feeds)
    except Exception:  # noqa: BLE001 - onnxruntime lacks this op/opset/type: not ours to test
        return None, ""
    try:
        original_full_check = True
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception:  # noqa: BLE001
            original_full_check = False
        graph = hwcc.load(model, allow_dynamic=True)
        out = onnx_io.to_proto(graph)
        if original_full_check:
            onnx.checker.check_model(out, full_check=True)
        got = session(out).run(None, feeds)
        return identical(ref, got), "outputs differ"
    except Exception as e:  # noqa: BLE001
        return False, f"{type(e).__name__}: {str(e)[:200]}"


@pytest.mark.slow  # the whole suite: 1526 cases, 15 s
def test_onnx_node_test_suite_round_trips(report_line):
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
        results = {c.name: _run_node_case(c) for c in cases}
    runnable = {k: v for k, v in results.items() if v[0] is not None}
    failed = {k: v[1] for k, v in runnable.items() if not v[0]}
    passed = len(runnable) - len(failed)
    report_line(
        f"ONNX node tests: {passed} of {len(runnable)} that onnxruntime runs round-trip "
        f"identically ({len(cases)} cases in onnx {onnx.__version__}; "
        f"{len(cases) - len(runnable)} not runnable by onnxruntime {ort.__version__})"
    )
    assert len(runnable) > 1000
    assert not failed, f"{len(failed)} of {len(runnable)} node tests fail the round trip: {failed}"


# ---------------------------------------------------------------- torch exporters
def _torch_net():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.lstm = nn.LSTM(8, 16, batch_first=True)
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.norm = nn.LayerNorm(16)
            self.fc = nn.Linear(16, 5)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))
            y = y + self.dw(y)
            seq = y.mean(dim=3).transpose(1, 2)  # [N, H, C]
            h, _ = self.lstm(seq)
            a, _ = self.attn(h, h, h, need_weights=False)
            h = self.norm(h + nn.functional.gelu(a))
            return self.fc(h.mean(dim=1))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    return net, (torch.randn(1, 3, 8, 8),)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_torch_exports_round_trip(dynamo, tmp_path):
    import torch

    net, args = _torch_net()
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {} if dynamo else {"do_constant_folding": False}  # keep BatchNormalization nodes
        torch.onnx.export(
            net, args, str(path), dynamo=dynamo, input_names=["x"], output_names=["y"], **kw
        )
    graph = assert_round_trip(path, tmp_path, feeds={"x": args[0].numpy()})
    ops = {n.op_type for n in graph.nodes}
    assert {"Conv"} <= ops
    if not dynamo:
        assert "LSTM" in ops and "BatchNormalization" in ops
    with torch.no_grad():
        expected = net(*args).numpy()
    got = session(path).run(None, {"x": args[0].numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- the zoo
def _zoo_names():
    from hwcc.models import list_models

    return [e.name for e in list_models()]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in ("vgg16", "alexnet", "googlenet") else n
        for n in _zoo_names()
    ],
)
def test_zoo_models_round_trip(name, tmp_path):
    assert_round_trip(Path(onnx_io.resolve_model_path(f"zoo:{name}")), tmp_path)


# ---------------------------------------------------------------- pass-through
def _model_with_if_and_custom_op() -> onnx.ModelProto:
    """y = If(c, then: outer_a + 1, else: outer_a * 2); plus a custom-domain op on the side."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    then_g = helper.make_graph(
        [
            helper.make_node("Constant", [], ["k1"], value=one),
            helper.make_node("Add", ["outer_a", "k1"], ["t"]),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])],
    )
    else_g = helper.make_graph(
        [
            helper.make_node("Constant", [], ["k2"], value=two),
            helper.make_node("Mul", ["outer_a", "k2"], ["e"]),
        ],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])],
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["outer_a"], name="relu"),
        helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="if"),
        helper.make_node(
            "Frobnicate", ["x"], ["side"], domain="com.example", name="custom", level=3
        ),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("side", TensorProto.FLOAT, [2]),
        ],
    )
    return make_model(g, com_example=1)


def test_subgraphs_and_custom_ops_pass_through_untouched():
    model = _model_with_if_and_custom_op()
    graph = hwcc.load(model)
    node_if = graph.node("if")
    assert node_if.implicit_inputs == ("outer_a",)
    assert graph.producer("outer_a").name == "relu"
    graph.outputs.remove("side")
    graph.eliminate_dead_code()  # relu is only read inside the subgraph: it must survive
    assert graph.has_node("relu") and not graph.has_node("custom")
    graph.lint()
    out = onnx_io.to_proto(graph)
    onnx.checker.check_model(out, full_check=True)
    x = np.array([-1.0, 3.0], np.float32)
    for c, want in ((True, [1.0, 4.0]), (False, [0.0, 6.0])):
        got = session(out).run(None, {"x": x, "c": np.array(c)})[0]
        np.testing.assert_array_equal(got, want)
    back = onnx_io.to_proto(hwcc.load(model))
    custom = [n for n in back.graph.node if n.op_type == "Frobnicate"][0]
    assert custom.domain == "com.example" and helper.get_attribute_value(custom.attribute[0]) == 3
    assert back.graph.node[1].attribute[0].g == model.graph.node[1].attribute[0].g


def test_untouched_initializers_are_written_back_bit_for_bit(tmp_path):
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "w"
    )
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[w],
    )
    model = make_model(g)
    back = onnx_io.to_proto(hwcc.load(model))
    assert back.graph.initializer[0] == w


def test_replaced_initializers_are_written_with_their_new_values():
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[w],
    )
    graph = hwcc.load(make_model(g))
    for factor in (
        2,
        5,
    ):  # a new array may reuse a freed array's address: values must still be fresh
        graph.tensors["w"].data = graph.initializer("w") * factor
    back = onnx_io.to_proto(graph)
    np.testing.assert_array_equal(numpy_helper.to_array(back.graph.initializer[0]), [10.0, 10.0])


def test_node_annotations_survive_save_and_load(tmp_path):
    graph = hwcc.load(LIGHT / "light_squeezenet.onnx")
    conv = graph.find("Conv")[0]
    conv.meta["winograd"] = {"F": "2x2,3x3", "mults_per_output": 4}
    conv.meta["not_json"] = object()  # skipped, not an error
    hwcc.save(graph, tmp_path / "m.onnx")
    back = hwcc.load(tmp_path / "m.onnx")
    assert back.node(conv.name).meta["winograd"] == {"F": "2x2,3x3", "mults_per_output": 4}
    assert "not_json" not in back.node(conv.name).meta
    meta_keys = [p.key for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props]
    assert meta_keys.count("hwcc.node_annotations") == 1
    hwcc.save(back, tmp_path / "m2.onnx")  # a second round trip does not duplicate it
    assert [p.key for p in onnx.load(str(tmp_path / "m2.onnx")).metadata_props].count(
        "hwcc.node_annotations"
    ) == 1


def test_to_proto_without_weights_keeps_shapes_and_small_tensors():
    """The data-propagation probe: weights become typed inputs, shape-sized tensors stay."""
    g = onnx_io.load("zoo:resnet-digits")
    full, light = (
        onnx_io.to_proto(g, value_info=False),
        onnx_io.to_proto(g, value_info=False, weights=False),
    )
    small = {t.name for t in full.graph.initializer if np.prod(t.dims) <= 1024}
    assert {t.name for t in light.graph.initializer} == small
    inputs = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in light.graph.input
    }
    for t in full.graph.initializer:
        if t.name not in small:
            assert inputs[t.name] == list(t.dims)
    assert light.ByteSize() < full.ByteSize() / 10
    shapes = [
        onnx.shape_inference.infer_shapes(m).graph.output[0].type.tensor_type.shape
        for m in (full, light)
    ]
    assert shapes[0] == shapes[1]


@pytest.mark.parametrize("name", ["zoo:transformer_encoder", "zoo:lstm_lm", "zoo:googlenet"])
def test_shape_inference_without_the_weights_infers_what_it_would_with_them(name):
    """``infer_shapes`` leaves weights out (a 20 MB detector: 125 ms to 11 ms an inference);
    every intermediate type and shape is the one onnx infers on the whole model, through
    shape arithmetic (the transformer's Reshape targets), recurrence and concatenation."""
    g = onnx_io.load(name)
    whole = onnx.shape_inference.infer_shapes(onnx_io.to_proto(g, value_info=False))
    onnx_io.infer_shapes(g)
    seen = 0
    for vi in whole.graph.value_info:
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim)
        assert g.tensor(vi.name).shape == dims and g.tensor(vi.name).elem_type == tt.elem_type
        seen += 1
    assert seen > 10
