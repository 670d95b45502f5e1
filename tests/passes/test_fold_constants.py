"""fold_constants: structure (node counts, fold count) and numbers (onnxruntime, same
inputs, explicit tolerances) on the same graphs, plus the cases where it must not fire."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwcc.cli.apply_view import apply_by_hand
from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.testing import assert_equivalent, finish, onnx_graph, op_counts

RTOL, ATOL = 1e-5, 1e-5
NO_VERIFY = PassContext(verify=False)  # the tests compare outputs themselves, explicitly


def fold(graph: Graph, ctx: PassContext = NO_VERIFY):
    return get_pass("fold_constants")(graph, ctx)


# ---------------------------------------------------------------------- folds
def test_constant_nodes_become_initializers():
    g = Graph("constants")
    g.add_input("x", dtypes.FLOAT, (2, 3))
    g.add_node(
        "Constant", [], ["c_tensor"], {"value": np.arange(6, dtype=np.float32).reshape(2, 3)}
    )
    g.add_node("Constant", [], ["c_float"], {"value_float": 0.5})
    g.add_node("Constant", [], ["c_ints"], {"value_ints": [3, 2]})
    g.add_node("Add", ["x", "c_tensor"], ["a"])
    g.add_node("Mul", ["a", "c_float"], ["m"])
    g.add_node("Reshape", ["m", "c_ints"], ["y"])
    finish(g, "y")
    result = fold(g)
    assert result.details["folded"] == 3
    assert op_counts(result.graph) == Counter({"Add": 1, "Mul": 1, "Reshape": 1})
    inits = result.graph.initializers
    assert inits["c_float"].dtype == np.float32 and inits["c_float"].shape == ()
    assert inits["c_ints"].tolist() == [3, 2] and inits["c_ints"].dtype == np.int64
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_a_chain_folds_in_one_run_to_the_same_bits():
    rng = np.random.default_rng(0)
    g = Graph("chain")
    g.add_input("x", dtypes.FLOAT, (3, 4))
    g.add_initializer("w", rng.normal(size=(5, 4)).astype(np.float32))
    g.add_node("Constant", [], ["scale"], {"value_float": 1.7})
    g.add_node("Transpose", ["w"], ["wt"])
    g.add_node("Mul", ["wt", "scale"], ["ws"])
    g.add_node("Sqrt", ["ws"], ["wq"])  # NaN for negative entries: folding must keep them
    g.add_node("Add", ["ws", "wq"], ["wf"])
    g.add_node("MatMul", ["x", "ws"], ["y1"])
    g.add_node("Add", ["x", "x"], ["xx"])
    g.add_node("MatMul", ["xx", "wf"], ["y2"])
    finish(g, "y1", "y2")
    result = fold(g)
    assert result.details["folded"] == 5
    assert op_counts(result.graph) == Counter({"MatMul": 2, "Add": 1})
    assert "w" not in result.graph.initializers  # only the folded value reads it
    v = assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)
    assert v.max_abs_err == 0  # the same kernels computed the same values


def test_shape_chain_of_a_torch_export_collapses(export_torch):
    """``x.reshape(x.shape[0], -1)`` with a dynamic batch exports Shape -> Gather ->
    Unsqueeze -> Concat -> Reshape; once the batch is fixed the shape is a constant."""
    torch = pytest.importorskip("torch")

    class Flatten(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x.reshape(x.shape[0], -1))

    g = export_torch(
        Flatten(),
        torch.randn(1, 3, 4, 4),
        dynamic_axes={"x0": {0: "N"}},
        input_shapes={"x0": (2, 3, 4, 4)},
    )
    assert {"Shape", "Gather", "Unsqueeze", "Concat"} <= set(op_counts(g))
    result = fold(g)
    assert op_counts(result.graph) == Counter({"Reshape": 1, "Relu": 1})
    reshape = result.graph.find("Reshape")[0]
    assert result.graph.initializer(reshape.inputs[1]).tolist() == [2, -1]
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_shape_with_start_end_and_size_of_a_static_tensor():
    g = Graph("shape")
    g.opset_imports = {"": 17}
    g.add_input("x", dtypes.FLOAT, (2, 3, 4, 5))
    g.add_node("Shape", ["x"], ["mid"], {"start": 1, "end": -1})
    g.add_node("Shape", ["x"], ["all"])
    g.add_initializer("zero", np.array([0], np.int64))
    g.add_initializer("minus_one", np.array([-1], np.int64))
    g.add_node("Gather", ["all", "zero"], ["batch"])
    g.add_node("Concat", ["batch", "mid", "minus_one"], ["target"], {"axis": 0})
    g.add_node("Reshape", ["x", "target"], ["y1"])
    g.add_node("Size", ["x"], ["size"])
    g.add_node("Cast", ["size"], ["size_f"], {"to": dtypes.FLOAT})
    g.add_node("Div", ["x", "size_f"], ["y2"])
    finish(g, "y1", "y2")
    result = fold(g)
    assert op_counts(result.graph) == Counter({"Reshape": 1, "Div": 1})
    assert result.graph.initializer("target").tolist() == [2, 3, 4, -1]
    assert result.graph.initializer("size_f") == np.float32(120)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_light_alexnet_folds_weights_under_the_size_cap(light_model):
    g = light_model("bvlc_alexnet")
    sizes = {
        n.outputs[0]: 4 * int(np.prod(g.initializer(n.inputs[0])))
        for n in g.find("ConstantOfShape")
    }
    result = fold(g)
    small = [t for t, size in sizes.items() if size <= 1 << 20]
    assert result.details["folded"] == len(small) > 0
    assert op_counts(result.graph)["ConstantOfShape"] == len(sizes) - len(small)
    assert all("max_bytes" in why for why in result.details["skipped"].values())
    assert all(result.graph.initializer(t) is not None for t in small)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- must not fire
def constant_of_shape(shape: tuple[int, ...]) -> Graph:
    g = Graph("big")
    g.add_input("x", dtypes.FLOAT, shape[-1:])
    g.add_initializer("shape", np.array(shape, np.int64))
    g.add_node("ConstantOfShape", ["shape"], ["filled"], {"value": np.array([0.25], np.float32)})
    g.add_node("Add", ["filled", "x"], ["y"])
    return finish(g, "y")


def test_not_above_the_size_cap_unless_the_knob_allows():
    g = constant_of_shape((512, 1024))  # 2 MiB of float32
    result = fold(g)
    assert not result.modified and result.graph is g
    assert "max_bytes=1048576" in result.details["skipped"]["constantofshape"]
    bigger = fold(g, PassContext(verify=False, knobs={"fold_constants": {"max_bytes": 4 << 20}}))
    assert bigger.details["folded"] == 1 and op_counts(bigger.graph) == Counter({"Add": 1})
    assert_equivalent(g, bigger.graph, rtol=RTOL, atol=ATOL)


def test_size_cap_through_apply_by_hand():
    g = constant_of_shape((512, 1024))
    report = apply_by_hand(
        g, "fold_constants", {"max_bytes": "4194304"}, verify=True, rtol=RTOL, atol=ATOL
    )
    assert report.modified
    text = report.summary()
    assert "max_bytes=4194304" in text and "nodes: 2 -> 1 (ConstantOfShape -1)" in text
    assert "verification passed" in text
    with pytest.raises(HwccError) as err:
        apply_by_hand(g, "fold_constants", {"max_bytes": "-1"}, verify=False, rtol=RTOL, atol=ATOL)
    assert (
        "fold_constants" in str(err.value)
        and "max_bytes" in str(err.value)
        and ">= 0" in str(err.value)
    )


def test_not_nondeterministic_ops_though_their_neighbours_fold():
    g = Graph("random")
    g.add_input("x", dtypes.FLOAT, (2, 3))
    g.add_node("RandomNormal", [], ["noise"], {"shape": [2, 3], "seed": 1.0, "dtype": dtypes.FLOAT})
    g.add_node("Constant", [], ["like"], {"value": np.zeros((2, 3), np.float32)})
    g.add_node("RandomUniformLike", ["like"], ["noise2"], {"seed": 2.0})
    g.add_node("Add", ["x", "noise"], ["a"])
    g.add_node("Add", ["a", "noise2"], ["y"])
    finish(g, "y")
    result = fold(g)
    assert result.details["folded"] == 1  # the Constant only
    assert op_counts(result.graph) == Counter({"RandomNormal": 1, "RandomUniformLike": 1, "Add": 2})
    skipped = result.details["skipped"]
    assert {skipped[n.name] for n in result.graph.nodes if n.op_type.startswith("Random")} == {
        "it is nondeterministic"
    }
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)  # seeded, so comparable


def test_not_custom_domain_ops():
    g = Graph("custom")
    g.opset_imports = {"": 17, "com.example": 1}
    g.add_input("x", dtypes.FLOAT, (3,))
    g.add_initializer("c", np.ones(3, np.float32))
    g.add_node("Frobnicate", ["c"], ["f"], domain="com.example")
    g.tensors["f"].elem_type, g.tensors["f"].shape = dtypes.FLOAT, (3,)
    g.add_node("Add", ["x", "f"], ["y"])
    g.outputs.append("y")
    result = fold(g)
    assert not result.modified and "com.example" in result.reason


def test_not_an_if_whose_condition_is_computed_at_run_time():
    branch = lambda v: helper.make_graph(  # noqa: E731
        [
            helper.make_node(
                "Constant", [], ["out"], value=numpy_helper.from_array(np.full(3, v, np.float32))
            )
        ],
        f"b{v}",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])],
    )
    nodes = [
        helper.make_node(
            "If", ["cond"], ["picked"], then_branch=branch(1.0), else_branch=branch(2.0)
        ),
        helper.make_node("Add", ["x", "picked"], ["y"]),
    ]
    # the condition is the caller's (an If with a constant one is inlined:
    # tests/passes/test_fold_branches.py)
    graph = helper.make_graph(
        nodes,
        "if",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    g = onnx_io.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    result = fold(g)
    assert not result.modified
    assert op_counts(result.graph) == Counter({"If": 1, "Add": 1})


def test_not_nodes_writing_graph_outputs():
    g = Graph("outputs")
    g.add_input("x", dtypes.FLOAT, (2,))
    g.add_node("Constant", [], ["c"], {"value": np.ones(2, np.float32)})
    g.add_node("Neg", ["c"], ["neg"])
    g.add_node("Add", ["x", "c"], ["y"])
    finish(g, "y", "neg")
    result = fold(g)
    assert result.details["folded"] == 1  # the Constant; Neg writes a graph output
    assert op_counts(result.graph) == Counter({"Neg": 1, "Add": 1})
    assert "graph output" in result.details["skipped"]["neg"]
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)


def test_not_overridable_initializers_but_yes_in_ir_version_3():
    """From IR version 4 an initializer listed as a graph input is a default the caller
    may override; before, every initializer is listed so and none can be overridden."""

    def model(ir_version: int) -> Graph:
        nodes = [
            helper.make_node("Neg", ["w"], ["nw"]),
            helper.make_node("Add", ["x", "nw"], ["y"]),
        ]
        return onnx_graph(
            nodes,
            {"x": [3], "w": [3]},
            {"y": [3]},
            initializers={"w": np.full(3, 2.0, np.float32)},
            opset=9,
            ir_version=ir_version,
        )

    modern = fold(model(7))
    assert not modern.modified and modern.reason == "no node has only constant inputs"
    g = model(3)
    legacy = fold(g)
    assert legacy.details["folded"] == 1 and op_counts(legacy.graph) == Counter({"Add": 1})
    assert legacy.graph.inputs == ["x", "nw"]  # IR 3 lists every initializer as an input
    assert_equivalent(g, legacy.graph, rtol=RTOL, atol=ATOL)


def test_nothing_constant():
    g = constant_of_shape((4,))
    g.set_input(g.node("constantofshape"), 0, "x_shape")
    g.add_input("x_shape", dtypes.INT64, (1,))
    result = fold(g)
    assert not result.modified and result.reason == "no node has only constant inputs"


def test_folded_value_is_the_kernel_output():
    """The folded value is what onnxruntime computes for the node (checked against numpy),
    so the folded model computes the same bits."""
    rng = np.random.default_rng(3)
    g = Graph("exp")
    g.add_input("x", dtypes.FLOAT, (8,))
    g.add_initializer("c", rng.normal(size=8).astype(np.float32))
    g.add_node("Exp", ["c"], ["e"])
    g.add_node("Add", ["x", "e"], ["y"])
    finish(g, "y")
    result = fold(g)
    np.testing.assert_allclose(result.graph.initializer("e"), np.exp(g.initializer("c")), rtol=1e-6)
    assert_equivalent(g, result.graph, rtol=0, atol=0)
