"""eliminate_dead: structure (node counts, what was bypassed and erased) and numbers
(onnxruntime, same inputs, explicit tolerances) on the same graphs, plus the cases where
it must not fire."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from onnx import helper

from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.testing import assert_equivalent, onnx_graph, op_counts

RTOL, ATOL = 1e-5, 1e-5
NO_VERIFY = PassContext(verify=False)  # the tests compare outputs themselves, explicitly


def eliminate(graph: Graph):
    return get_pass("eliminate_dead")(graph, NO_VERIFY)


def chain(*copies: tuple[str, dict], opset: int = 17, copy_writes_output: bool = False) -> Graph:
    """x -> Relu -> copies... [-> Sigmoid] -> y."""
    g = Graph("chain")
    g.opset_imports = {"": opset}
    g.add_input("x", dtypes.FLOAT, (2, 3, 4))
    g.add_node("Relu", ["x"], ["t0"], name="relu")
    for i, (op, attrs) in enumerate(copies):
        extra = attrs.pop("inputs", [])
        outs = [f"t{i + 1}", *attrs.pop("outputs", [])]
        g.add_node(op, [f"t{i}", *extra], outs, attrs, name=f"copy{i}")
    last = f"t{len(copies)}"
    if copy_writes_output:
        g.rename_tensor(last, "y")
    else:
        g.add_node("Sigmoid", [last], ["y"], name="sigmoid")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


# ---------------------------------------------------------------------- bypassed
def test_identity_chain_is_bypassed():
    g = chain(("Identity", {}), ("Identity", {}))
    result = eliminate(g)
    assert result.details["bypassed"] == 2
    assert op_counts(result.graph) == Counter({"Relu": 1, "Sigmoid": 1})
    assert result.graph.node("sigmoid").inputs == ("t0",)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_identity_writing_a_graph_output_keeps_the_output_name():
    g = chain(("Identity", {}), copy_writes_output=True)
    result = eliminate(g)
    assert result.details["bypassed"] == 1 and op_counts(result.graph) == Counter({"Relu": 1})
    assert result.graph.outputs == ["y"] and result.graph.producer("y").name == "relu"
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_identity_output_and_input_both_read_elsewhere():
    g = chain(("Identity", {}), copy_writes_output=True)
    g.add_node("Neg", ["t0"], ["z"], name="neg")
    g.outputs.append("z")
    onnx_io.infer_shapes(g)
    result = eliminate(g)
    assert op_counts(result.graph) == Counter({"Relu": 1, "Neg": 1})
    assert result.graph.outputs == ["y", "z"] and result.graph.node("neg").inputs == ("y",)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "copy",
    [
        ("Dropout", {}),
        ("Dropout", {"inputs": ["ratio", "training"], "outputs": ["mask"]}),  # mask unused
    ],
)
def test_inference_dropout_is_bypassed(copy):
    g = chain((copy[0], dict(copy[1])))
    if "ratio" in g.tensors:
        g.add_initializer("ratio", np.array(0.5, np.float32))
        g.add_initializer("training", np.array(False))
        onnx_io.infer_shapes(g)
    result = eliminate(g)
    assert result.details["bypassed"] == 1
    assert op_counts(result.graph) == Counter({"Relu": 1, "Sigmoid": 1})
    assert not {"ratio", "training"} & set(result.graph.tensors)  # dropped with the node
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "target,allowzero", [([2, 3, 4], 0), ([0, 3, -1], 0), ([2, 0, 4], 0), ([-1, 3, 4], 1)]
)
def test_reshape_to_the_same_shape_is_bypassed(target, allowzero):
    g = chain(("Reshape", {"inputs": ["target"], "allowzero": allowzero}))
    g.add_initializer("target", np.array(target, np.int64))
    onnx_io.infer_shapes(g)
    result = eliminate(g)
    assert result.details["bypassed"] == 1 and "Reshape" not in op_counts(result.graph)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_dead_nodes_and_unused_initializers_go_unused_inputs_stay():
    g = chain(("Identity", {}))
    g.add_input("unused_input", dtypes.FLOAT, (1,))
    g.add_initializer("w", np.ones((2, 3, 4), np.float32))
    g.add_initializer("never_read", np.ones(7, np.float32))
    g.add_node("Mul", ["t0", "w"], ["dead1"], name="dead_mul")
    g.add_node("Exp", ["dead1"], ["dead2"], name="dead_exp")
    onnx_io.infer_shapes(g)
    result = eliminate(g)
    d = result.details
    assert (d["bypassed"], d["dead_nodes"], d["initializers_dropped"]) == (1, 2, 2)
    assert op_counts(result.graph) == Counter({"Relu": 1, "Sigmoid": 1})
    assert result.graph.initializers == {} and result.graph.inputs == ["x", "unused_input"]
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_light_alexnet_dropouts_with_unused_masks(light_model):
    g = light_model("bvlc_alexnet")
    dropouts = g.find("Dropout")
    assert len(dropouts) == 2 and all(len(d.outputs) == 2 for d in dropouts)
    result = eliminate(g)
    assert result.details["bypassed"] == 2
    assert op_counts(result.graph) == op_counts(g) - Counter({"Dropout": 2})
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_ir_version_3_unused_initializers_leave_the_input_list():
    g = onnx_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        {"x": [3], "w": [3], "unused": [3]},
        {"y": [3]},
        initializers={n: np.ones(3, np.float32) for n in ("w", "unused")},
        opset=9,
        ir_version=3,
    )
    result = eliminate(g)
    assert result.details["initializers_dropped"] == 1 and result.graph.inputs == ["x", "w"]
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- must not fire
def assert_kept(g: Graph, node: str, why: str) -> None:
    result = eliminate(g)
    assert not result.modified and result.graph is g
    assert why in result.details["kept"][node], result.details["kept"]
    assert why in result.reason


def test_not_an_identity_from_a_graph_input_to_a_graph_output():
    g = Graph("passthrough")
    g.add_input("x", dtypes.FLOAT, (3,))
    g.add_node("Identity", ["x"], ["y"], name="copy")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    assert_kept(g, "copy", "after a graph input or initializer")


def test_not_an_identity_from_an_initializer_to_a_graph_output():
    g = Graph("const_out")
    g.add_input("x", dtypes.FLOAT, (3,))
    g.add_initializer("c", np.ones(3, np.float32))
    g.add_node("Identity", ["c"], ["y"], name="copy")
    g.add_node("Neg", ["x"], ["z"])
    g.outputs.extend(["y", "z"])
    onnx_io.infer_shapes(g)
    assert_kept(g, "copy", "after a graph input or initializer")


def test_not_an_identity_between_two_graph_outputs():
    g = chain(("Identity", {}), copy_writes_output=True)
    g.outputs.append("t0")
    assert_kept(g, "copy0", "copies graph output 't0'")


@pytest.mark.parametrize(
    "copy,why",
    [
        (("Dropout", {"inputs": ["ratio", "training"]}), "training_mode is true or not a constant"),
        (("Dropout", {"outputs": ["mask"]}), "mask output 'mask' is read"),
    ],
)
def test_not_a_training_dropout_or_one_whose_mask_is_read(copy, why):
    g = chain((copy[0], dict(copy[1])))
    if "training" in g.tensors:
        g.add_initializer("ratio", np.array(0.5, np.float32))
        g.add_initializer("training", np.array(True))
    else:
        g.outputs.append("mask")
    onnx_io.infer_shapes(g)
    assert_kept(g, "copy0", why)


def test_not_a_dropout_of_opset_6_outside_test_mode():
    g = chain(("Dropout", {}), opset=6)
    assert_kept(g, "copy0", "is_test=0")


def test_not_a_reshape_that_changes_the_shape():
    g = chain(("Reshape", {"inputs": ["target"]}))
    g.add_initializer("target", np.array([6, 4], np.int64))
    onnx_io.infer_shapes(g)
    result = eliminate(g)
    assert not result.modified and result.details["kept"] == {}
    assert result.reason == "nothing is dead and no node merely copies its input"
