"""Specialising a model to fixed input shapes: shapes onnx leaves unknown are read from
onnxruntime, the shape arithmetic folds, and the outputs do not change."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from hwcc.errors import HwccError
from hwcc.ir.specialise import specialise, unsized
from hwcc.ir.verify import random_feeds, run_onnx
from hwcc.targets.base import load_target
from hwcc.targets.pricing import Pricer
from hwcc.testing import onnx_graph

RTOL, ATOL = 0.0, 0.0  # folding is exact: onnxruntime computes the same values either way


def _flatten_by_float_arithmetic(batch: int | str = 1):
    """``x[N,3,8,8]`` reshaped to ``[N,3,64]`` through a shape computed in float (``Cast``,
    ``ReduceProd``), as exporters write it: onnx's inference cannot follow the values."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "zero", "two"], ["head"]),
        helper.make_node("Slice", ["s", "two", "four"], ["tail"]),
        helper.make_node("Cast", ["tail"], ["tail_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceProd", ["tail_f"], ["area_f"], keepdims=1),
        helper.make_node("Cast", ["area_f"], ["area"], to=TensorProto.INT64),
        helper.make_node("Concat", ["head", "area"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Relu", ["flat"], ["y"]),
    ]
    ints = {k: np.array([v], np.int64) for k, v in (("zero", 0), ("two", 2), ("four", 4))}
    return onnx_graph(
        nodes, {"x": [batch, 3, 8, 8]}, {"y": [batch, 3, 64]}, initializers=ints, opset=13
    )


def test_unknown_shapes_are_read_from_onnxruntime_and_the_arithmetic_folds():
    g = _flatten_by_float_arithmetic()
    assert "flat" in unsized(g)  # onnx's inference cannot size it
    s = specialise(g)
    assert s.probed >= 1 and s.left == ()
    assert s.graph.tensor("flat").shape == (1, 3, 64)
    assert [n.op_type for n in s.graph.nodes] == ["Reshape", "Relu"]
    feeds = random_feeds(g, seed=0)
    np.testing.assert_allclose(run_onnx(s.graph, feeds)[0], run_onnx(g, feeds)[0], RTOL, ATOL)
    assert "read from onnxruntime" in s.notice


def test_the_graph_given_is_left_as_it_was():
    g = _flatten_by_float_arithmetic()
    before = [n.op_type for n in g.nodes]
    specialise(g)
    assert [n.op_type for n in g.nodes] == before and "flat" in unsized(g)


def test_a_graph_onnx_sizes_already_is_returned_as_it_is():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    g = onnx_graph(nodes, {"x": [1, 4]}, {"y": [1, 4]})
    s = specialise(g)
    assert s.graph is g and s.probed == 0 and s.notice is None


def test_a_dynamic_input_is_refused_with_the_flag_that_fixes_it():
    from hwcc.ir import onnx_io

    g = _flatten_by_float_arithmetic()
    proto = onnx_io.to_proto(g)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    dynamic = onnx_io.load(proto, allow_dynamic=True)
    with pytest.raises(HwccError, match="--input-shape"):
        specialise(dynamic)


def test_the_targets_price_the_specialised_graph_and_not_the_original():
    g = _flatten_by_float_arithmetic()
    s = specialise(g)
    for name in ("eyeriss", "eie", "tpu", "gpu"):
        cost = Pricer(load_target(name), s.graph, random_feeds(s.graph, 0), 0).original()
        assert cost["latency_s"] > 0, name
    with pytest.raises(HwccError, match="shape of 'flat' unknown"):
        Pricer(load_target("eyeriss"), g, random_feeds(g, 0), 0).original()


def test_shape_arithmetic_folds_even_when_every_shape_is_known():
    """A Reshape whose target is computed from ``Shape`` at run time: onnx sizes it, but a
    kernel rebuilt alone would be fed zeros for the target, so the arithmetic folds."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
        helper.make_node("Concat", ["n", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    ints = {
        "zero": np.array([0], np.int64),
        "one": np.array([1], np.int64),
        "minus_one": np.array([-1], np.int64),
    }
    g = onnx_graph(nodes, {"x": [2, 3, 4]}, {"y": [2, 12]}, initializers=ints, opset=13)
    assert unsized(g) == []
    s = specialise(g)
    assert [n.op_type for n in s.graph.nodes] == ["Reshape"] and s.probed == 0
    assert s.graph.initializer(s.graph.nodes[0].inputs[1]).tolist() == [2, -1]
    assert "folded" in s.notice
