"""The base models of the loader fuzzer (tests/test_fuzz_loader_*.py): the bundled
``models/data/*.onnx`` and small models built here with Loop/If subgraphs, sparse
initializers, external data, functions, annotations and dynamic dims; and the names of
the files a case is written to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "data"
ANNOTATIONS_KEY = "hwcc.node_annotations"
SECRET = "secret.data"  # beside the case folders, with the bytes an escaping model would want
MODEL, DATA = "model.onnx", "m.data"


@dataclass
class Base:
    """A model to mutate: its bytes, and the bytes of its external data file if any."""

    name: str
    model: bytes
    data: bytes | None = None


def _model(nodes, inputs, outputs, **kw) -> onnx.ModelProto:
    opsets = kw.pop("opsets", {})
    functions = kw.pop("functions", [])
    g = helper.make_graph(nodes, "g", inputs, outputs, **kw)
    imports = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, v) for d, v in opsets.items()]
    return helper.make_model(g, opset_imports=imports, ir_version=10, functions=functions)


def vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _const(name, value, elem=TensorProto.INT64):
    return helper.make_node(
        "Constant", [], [name], value=helper.make_tensor(name + "_v", elem, [], [value])
    )


def _loop_model() -> onnx.ModelProto:
    """A Loop whose body reads ``w`` from the outer graph, then a Conv."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["v_in", "w"], ["v_out"]),
        ],
        "body",
        [
            vi("i", [], TensorProto.INT64),
            vi("cond_in", [], TensorProto.BOOL),
            vi("v_in", [1, 2, 4, 4]),
        ],
        [vi("cond_out", [], TensorProto.BOOL), vi("v_out", [1, 2, 4, 4])],
    )
    w = numpy_helper.from_array(np.full((1, 2, 4, 4), 0.5, np.float32), "w")
    k = numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "k")
    nodes = [
        _const("n", 3),
        _const("c", True, TensorProto.BOOL),
        helper.make_node("Loop", ["n", "c", "x"], ["l"], name="loop", body=body),
        helper.make_node("Conv", ["l", "k"], ["y"], name="conv"),
    ]
    return _model(nodes, [vi("x", [1, 2, 4, 4])], [vi("y", [1, 3, 2, 2])], initializer=[w, k])


def _if_model() -> onnx.ModelProto:
    then = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"])], "then", [], [vi("t", [2, 3])]
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"]), helper.make_node("Abs", ["e"], ["e2"])],
        "else",
        [],
        [vi("e2", [2, 3])],
    )
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=other),
    ]
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    return _model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])], initializer=[zero])


def _sparse_model() -> onnx.ModelProto:
    flat = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "s1"),
        numpy_helper.from_array(np.array([1, 5], np.int64), ""),
        [2, 3],
    )
    coo = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([3.0], np.float32), "s2"),
        numpy_helper.from_array(np.array([[1, 2]], np.int64), ""),
        [2, 3],
    )
    nodes = [
        helper.make_node("Add", ["x", "s1"], ["a"]),
        helper.make_node("Mul", ["a", "s2"], ["y"]),
    ]
    return _model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3])], sparse_initializer=[flat, coo])


def _function_model() -> onnx.ModelProto:
    """A model-local function with a Constant inside, called twice."""
    body = [
        helper.make_node(
            "Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32))
        ),
        helper.make_node("Mul", ["a", "two"], ["b"]),
    ]
    f = helper.make_function("local", "Double", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    nodes = [
        helper.make_node("Double", ["x"], ["d"], domain="local", name="d1"),
        helper.make_node("Double", ["d"], ["y"], domain="local", name="d2"),
    ]
    return _model(nodes, [vi("x", [4])], [vi("y", [4])], opsets={"local": 1}, functions=[f])


def _annotated_model() -> onnx.ModelProto:
    """Named nodes with annotations, doc strings, declared intermediate types, metadata."""
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="fc", doc_string="the layer"),
        helper.make_node("Relu", ["m"], ["y"], name="act"),
    ]
    m = _model(
        nodes,
        [vi("x", ["N", 4])],
        [vi("y", ["N", 3])],
        initializer=[w],
        value_info=[vi("m", ["N", 3])],
    )
    m.metadata_props.add(key=ANNOTATIONS_KEY, value=json.dumps({"fc": {"low_rank": {"rank": 2}}}))
    m.metadata_props.add(key="author", value="hwcc tests")
    m.doc_string = "annotated"
    return m


def _dynamic_model() -> onnx.ModelProto:
    """An input written the paddle2onnx way (``dim_value: -1``), and a Constant of each kind."""
    x = onnx.ValueInfoProto(name="x")
    x.type.tensor_type.elem_type = TensorProto.FLOAT
    for d in (-1, 3, -1, -1):
        x.type.tensor_type.shape.dim.add().dim_value = d
    k = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "k")
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([1.0], np.float32), "sv"),
        numpy_helper.from_array(np.array([0], np.int64), ""),
        [2],
    )
    nodes = [
        helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Constant", [], ["f"], value_floats=[1.0, 2.0]),
        helper.make_node("Constant", [], ["sp"], sparse_value=sparse),
        helper.make_node("Add", ["f", "sp"], ["fs"]),
        helper.make_node("Unsqueeze", ["fs", "axes"], ["fs4"]),
        helper.make_node("Add", ["c", "fs4"], ["y"]),
    ]
    axes = numpy_helper.from_array(np.array([0, 2, 3], np.int64), "axes")
    return _model(nodes, [x], [vi("y", None)], initializer=[k, axes])


def _shape_ops_model() -> onnx.ModelProto:
    """Ops whose output shape comes from tensor values, which shape inference computes:
    a mutated value is a size for it."""
    ints = {
        "shape": [2, 6],
        "start": 0,
        "limit": 6,
        "delta": 1,
        "reps": [1, 2],
        "starts": [0],
        "ends": [2],
        "full": [2, 12],
    }
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()]
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Range", ["start", "limit", "delta"], ["rng"]),
        helper.make_node("Cast", ["rng"], ["rngf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["r", "rngf"], ["a"]),
        helper.make_node("Tile", ["a", "reps"], ["t"]),
        helper.make_node("ConstantOfShape", ["full"], ["zeros"]),
        helper.make_node("Add", ["t", "zeros"], ["z"]),
        helper.make_node("Shape", ["z"], ["zs"]),
        helper.make_node("Expand", ["z", "zs"], ["e"]),
        helper.make_node("Slice", ["e", "starts", "ends"], ["y"]),
    ]
    return _model(nodes, [vi("x", [3, 4])], [vi("y", None)], initializer=inits)


def _external_base() -> Base:
    """A model whose weights are in ``m.data`` beside it."""
    w = numpy_helper.from_array(np.arange(32, dtype=np.float32).reshape(8, 4), "w")
    b = numpy_helper.from_array(np.ones(4, np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["y"]),
    ]
    m = _model(nodes, [vi("x", [1, 8])], [vi("y", [1, 4])], initializer=[w, b])
    data = b""
    for t in m.graph.initializer:
        raw = t.raw_data
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", DATA), ("offset", str(len(data))), ("length", str(len(raw)))):
            t.external_data.add(key=k, value=v)
        data += raw
    return Base("external", m.SerializeToString(), data)


def base_models() -> list[Base]:
    built = {
        "loop": _loop_model,
        "if": _if_model,
        "sparse": _sparse_model,
        "function": _function_model,
        "annotated": _annotated_model,
        "dynamic": _dynamic_model,
        "shape-ops": _shape_ops_model,
    }
    bases = [Base(p.stem, p.read_bytes()) for p in sorted(BUNDLED.glob("*.onnx"))]
    bases += [Base(name, make().SerializeToString()) for name, make in built.items()]
    return bases + [_external_base()]
