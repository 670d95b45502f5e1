"""Hostile graphs: ``hwcc.load`` refuses each with a ModelLoadError that says what is wrong
and where. Dims written as -1 (dynamic, with a real shape as the hint), nodes that feed
themselves or form a cycle, tensors computed twice or also inputs, node annotations of the
wrong type, Loops without a body and functions that call themselves; and Eyeriss mapping
absurd sizes quickly.

Each case is a small model built with ``onnx.helper`` (tests/hostile_models.py) and then
broken in one way. Tensors are in test_load_hostile_tensors.py, text that is not UTF-8 in
test_load_hostile_text.py, files that are not models in test_load_hostile_files.py; the
fuzzer (``test_fuzz_loader_*.py``) covers the rest.
"""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from hostile_models import make_model, refused, vi, write
from onnx import AttributeProto, TensorProto, helper, numpy_helper

import hwcc
from hwcc.errors import ModelLoadError
from hwcc.ir import onnx_io


# ---------------------------------------------------------------- dynamic dims as -1
def _minus_one_model() -> onnx.ModelProto:
    """A conv whose input is written as paddle2onnx writes it: ``dim_value: -1``."""
    x = onnx.ValueInfoProto(name="x")
    x.type.tensor_type.elem_type = TensorProto.FLOAT
    for d in (-1, 3, -1, -1):
        x.type.tensor_type.shape.dim.add().dim_value = d
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"])], [x], [vi("y", None)], initializer=[w]
    )


def test_minus_one_dims_are_dynamic_and_the_hint_is_a_real_shape():
    assert [d.dim_value for d in _minus_one_model().graph.input[0].type.tensor_type.shape.dim] == [
        -1,
        3,
        -1,
        -1,
    ]
    e = refused(_minus_one_model(), r"dynamic shape \[\?, 3, \?, \?\]")
    assert "--input-shape x:1x3x224x224" in e.hint
    assert "-1" not in str(e)


def test_input_shape_fixes_minus_one_dims():
    g = hwcc.load(_minus_one_model(), input_shapes={"x": (2, 3, 8, 8)})
    assert g.tensors["x"].shape == (2, 3, 8, 8)
    assert g.tensors["y"].shape == (2, 4, 6, 6)
    with pytest.raises(ModelLoadError, match="fixed shape"):
        hwcc.load(_minus_one_model(), input_shapes={"x": (1, 4, 8, 8)})  # 3 channels are fixed


def test_allow_dynamic_keeps_minus_one_dims_open():
    g = hwcc.load(_minus_one_model(), allow_dynamic=True)
    assert g.tensors["x"].shape == (None, 3, None, None)


# ---------------------------------------------------------------- dataflow
def test_a_node_that_feeds_itself(tmp_path):
    m = make_model([helper.make_node("Add", ["x", "y"], ["y"], name="acc")])
    refused(write(tmp_path, m), r"node 'acc' \(Add\) of .*m.onnx reads its own output")


def test_two_nodes_in_a_cycle(tmp_path):
    m = make_model(
        [
            helper.make_node("Add", ["x", "b"], ["y"], name="add"),
            helper.make_node("Relu", ["y"], ["b"], name="relu"),
        ]
    )
    refused(write(tmp_path, m), r"form a cycle: 'add' \(Add\) -> 'relu' \(Relu\) -> 'add' \(Add\)")


def test_a_tensor_produced_by_two_nodes(tmp_path):
    m = make_model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])])
    refused(
        write(tmp_path, m), r"tensor 'y' of .* is computed by two nodes, #0 \(Relu\) and #1 \(Neg\)"
    )


@pytest.mark.parametrize("clash", ["initializer", "input"])
def test_a_node_output_that_is_an_initializer_or_input(tmp_path, clash):
    if clash == "initializer":
        w = numpy_helper.from_array(np.ones(2, np.float32), "w")
        m = make_model(
            [helper.make_node("Relu", ["x"], ["w"]), helper.make_node("Neg", ["w"], ["y"])],
            initializer=[w],
        )
        name = "w"
    else:
        m = make_model(
            [helper.make_node("Relu", ["x"], ["x"]), helper.make_node("Neg", ["x"], ["y"])]
        )
        name = "x"
    refused(write(tmp_path, m), f"tensor '{name}' .* is also an initializer or a graph input")


# ---------------------------------------------------------------- annotations metadata
@pytest.mark.parametrize(
    "value, match",
    [
        ("5", "but it is a number"),
        ('"winograd"', "but it is a string"),
        ("[1, 2]", "but it is an array"),
        ('{"n": 3}', "but node 'n' has a number"),
        ('{"n": [1]}', "but node 'n' has an array"),
        ('{"n": {"onnx_name": 5}}', "node 'n' sets 'onnx_name'"),
        ("[" * 100_000, "not valid JSON"),
    ],
    ids=["int", "string", "list", "node-int", "node-list", "reserved-key", "nested-too-deep"],
)
def test_annotations_of_the_wrong_type(tmp_path, value, match):
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="n")])
    m.metadata_props.add(key=onnx_io.ANNOTATIONS_KEY, value=value)
    e = refused(write(tmp_path, m), match)
    assert onnx_io.ANNOTATIONS_KEY in str(e) and "remove the" in e.hint


# ---------------------------------------------------------------- control flow and functions
def test_a_loop_without_its_body_passes_through(tmp_path):
    """ONNX's checker would refuse it; hwcc keeps what it does not interpret, as it is."""
    consts = [
        helper.make_node(
            "Constant", [], ["n"], value=helper.make_tensor("v", TensorProto.INT64, [], [3])
        ),
        helper.make_node(
            "Constant", [], ["c"], value=helper.make_tensor("v", TensorProto.BOOL, [], [True])
        ),
    ]
    m = make_model(consts + [helper.make_node("Loop", ["n", "c", "x"], ["y"], name="loop")])
    g = hwcc.load(write(tmp_path, m))
    assert g.node("loop").attrs == {}
    hwcc.save(g, tmp_path / "out.onnx")
    assert onnx.load(str(tmp_path / "out.onnx")).graph.node[2].op_type == "Loop"


def test_a_body_attribute_that_holds_no_graph_passes_through(tmp_path):
    body = AttributeProto(name="body", type=AttributeProto.GRAPH)
    loop = helper.make_node("Loop", ["", "", "x"], ["y"], name="loop")
    loop.attribute.append(body)
    g = hwcc.load(write(tmp_path, make_model([loop])))
    hwcc.save(g, tmp_path / "out.onnx")
    assert onnx.load(str(tmp_path / "out.onnx")).graph.node[0].attribute[0] == body


def test_a_model_local_function_that_calls_itself(tmp_path):
    f = helper.make_function(
        "local",
        "F",
        ["a"],
        ["b"],
        [helper.make_node("F", ["a"], ["b"], domain="local")],
        [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
    )
    m = make_model([helper.make_node("F", ["x"], ["y"], domain="local")], opsets=[("local", 1)])
    m.functions.append(f)
    refused(
        write(tmp_path, m),
        r"shape inference failed on .*m.onnx: ValidationError: Cycle detected "
        r"in model-local function references",
    )


# ---------------------------------------------------------------- absurd sizes on Eyeriss
def _conv_graph(input_shape) -> hwcc.Graph:
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    m = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
        [vi("x", input_shape)],
        [vi("y", None)],
        initializer=[w],
    )
    return hwcc.load(m)


@pytest.mark.parametrize(
    "input_shape, batch",
    [
        ((1, 3, 32, 32), 10**12),
        ((1, 3, 10**9, 224), 1),
        ((10**12, 3, 32, 32), 10**12),
    ],
    ids=["batch-1e12", "a-billion-rows", "huge-declared-batch-times-1e12"],
)
def test_eyeriss_maps_absurd_sizes_quickly(input_shape, batch):
    from hwcc.targets.base import CostContext, load_target

    start = time.perf_counter()
    gc = load_target("eyeriss").cost(_conv_graph(input_shape), CostContext(batch=batch))
    assert time.perf_counter() - start < 5
    conv = next(c for c in gc.layers if c.layer.op_type == "Conv")
    assert conv.cost.energy_j > 0
