"""Fuzzing ``hwcc.load``: mutated models load, or fail with an HwccError; nothing else.

Each case takes a base model (the bundled ``models/data/*.onnx`` and small models built
here with Loop/If subgraphs, sparse initializers, external data, functions, annotations
and dynamic dims), applies one to three mutations chosen by its seed (byte flips,
truncations, or protobuf-level changes to dims, types, initializers, names, opsets,
domains, subgraphs, functions and external data), writes it to a folder of its own and
loads it with ``hwcc.load(path)``; a model that loads is also saved back.

The loads run in one worker process that takes case after case (startup is the costly
part), under a watchdog that kills and restarts it when a case takes more than
``HANG_S`` seconds, and with a 4 GiB memory limit so that a blow-up fails fast (it is
still reported, as "out of memory"). The worker records every file the process opens
(an audit hook, and the one C++ open in onnx's external-data reader) and reports any
outside the case's folder and the Python installation: a model must not make hwcc read
``../secret``.

A case that ends in another exception, a hang, a crash of the worker, running out of
memory or such an open fails the test, which prints its seed and mutations. To
reproduce one (the worker runs with ``PYTHONHASHSEED=0``)::

    PYTHONHASHSEED=0 .venv/bin/python tests/test_fuzz_loader.py --case SEED   # loads it here
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import hwcc.targets
import numpy as np
import onnx
import pytest
from onnx import AttributeProto, TensorProto, helper, numpy_helper

import hwcc
from hwcc.errors import HwccError

HANG_S = 20
FAST_CASES = 300
SLOW_CASES = 20_000
FIRST_SEED = 1_000
BUNDLED = Path(__file__).resolve().parents[1] / "models" / "data"
ANNOTATIONS_KEY = "hwcc.node_annotations"
SECRET = "secret.data"  # beside the case folders, with the bytes an escaping model would want
MODEL, DATA = "model.onnx", "m.data"


# ---------------------------------------------------------------------- base models
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


def _vi(name, shape, elem=TensorProto.FLOAT):
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
            _vi("i", [], TensorProto.INT64),
            _vi("cond_in", [], TensorProto.BOOL),
            _vi("v_in", [1, 2, 4, 4]),
        ],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("v_out", [1, 2, 4, 4])],
    )
    w = numpy_helper.from_array(np.full((1, 2, 4, 4), 0.5, np.float32), "w")
    k = numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "k")
    nodes = [
        _const("n", 3),
        _const("c", True, TensorProto.BOOL),
        helper.make_node("Loop", ["n", "c", "x"], ["l"], name="loop", body=body),
        helper.make_node("Conv", ["l", "k"], ["y"], name="conv"),
    ]
    return _model(nodes, [_vi("x", [1, 2, 4, 4])], [_vi("y", [1, 3, 2, 2])], initializer=[w, k])


def _if_model() -> onnx.ModelProto:
    then = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"])], "then", [], [_vi("t", [2, 3])]
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"]), helper.make_node("Abs", ["e"], ["e2"])],
        "else",
        [],
        [_vi("e2", [2, 3])],
    )
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=other),
    ]
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    return _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])], initializer=[zero])


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
    return _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])], sparse_initializer=[flat, coo])


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
    return _model(nodes, [_vi("x", [4])], [_vi("y", [4])], opsets={"local": 1}, functions=[f])


def _annotated_model() -> onnx.ModelProto:
    """Named nodes with annotations, doc strings, declared intermediate types, metadata."""
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="fc", doc_string="the layer"),
        helper.make_node("Relu", ["m"], ["y"], name="act"),
    ]
    m = _model(
        nodes,
        [_vi("x", ["N", 4])],
        [_vi("y", ["N", 3])],
        initializer=[w],
        value_info=[_vi("m", ["N", 3])],
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
    return _model(nodes, [x], [_vi("y", None)], initializer=[k, axes])


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
    return _model(nodes, [_vi("x", [3, 4])], [_vi("y", None)], initializer=inits)


def _external_base() -> Base:
    """A model whose weights are in ``m.data`` beside it."""
    w = numpy_helper.from_array(np.arange(32, dtype=np.float32).reshape(8, 4), "w")
    b = numpy_helper.from_array(np.ones(4, np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["y"]),
    ]
    m = _model(nodes, [_vi("x", [1, 8])], [_vi("y", [1, 4])], initializer=[w, b])
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


# ---------------------------------------------------------------------- mutations
@dataclass
class Case:
    """One mutated model: how to write it and load it, and what was done to it."""

    seed: int
    base: str
    model: bytes
    data: bytes | None
    kwargs: dict
    steps: list[str] = field(default_factory=list)
    data_is_secret_link: bool = False

    def describe(self) -> str:
        return f"seed={self.seed} base={self.base} kwargs={self.kwargs} mutations={self.steps}"


INTS = [-(2**62), -(2**40), -7, -1, 0, 1, 2, 3, 5, 64, 2**31 - 1, 2**31, 2**40, 2**62]
LOCATIONS = [
    "../" + SECRET,
    SECRET,
    "sub/../../" + SECRET,
    "/etc/passwd",
    "/dev/zero",
    "/proc/self/environ",
    "",
    ".",
    "..",
    "nope.data",
    DATA + "\0.x",
    "a" * 300,
    "a/" * 3000 + DATA,
    DATA,
    "./" + DATA,
]
OPS = [
    "Conv",
    "Gemm",
    "MatMul",
    "Relu",
    "Add",
    "Reshape",
    "Loop",
    "If",
    "Scan",
    "Concat",
    "Constant",
    "Range",
    "ConstantOfShape",
    "Expand",
    "Tile",
    "Split",
    "Custom",
    "",
]
DOMAINS = [
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "com.microsoft",
    "local",
    "nope",
    "ai.onnx.preview.training",
]


def _copy(msg):
    """A detached copy of a protobuf message: copying a message into a part of itself, or
    appending a container's own element to it, is not safe in protobuf's C runtime."""
    return type(msg).FromString(msg.SerializeToString())


def _graphs(m: onnx.ModelProto) -> list[onnx.GraphProto]:
    """The main graph and every subgraph, at any depth."""
    out, todo = [], [m.graph]
    while todo:
        g = todo.pop()
        out.append(g)
        for n in g.node:
            for a in n.attribute:
                todo.extend([a.g] if a.HasField("g") else [])
                todo.extend(a.graphs)
    return out


def _nodes(m: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for g in _graphs(m) for n in g.node] + [n for f in m.functions for n in f.node]


def _value_infos(m: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    return [v for g in _graphs(m) for v in (*g.input, *g.output, *g.value_info)]


def _tensors(m: onnx.ModelProto) -> list[TensorProto]:
    out = []
    for g in _graphs(m):
        out += list(g.initializer) + [
            t for s in g.sparse_initializer for t in (s.values, s.indices)
        ]
    for n in _nodes(m):
        for a in n.attribute:
            out += ([a.t] if a.HasField("t") else []) + list(a.tensors)
            if a.HasField("sparse_tensor"):
                out += [a.sparse_tensor.values, a.sparse_tensor.indices]
    return out


def _external(t: TensorProto) -> bool:
    """Whether ``t`` keeps its data in a file: the generator must not read it (numpy_helper
    would, relative to the working folder)."""
    return t.data_location == TensorProto.EXTERNAL


def _names(m: onnx.ModelProto) -> list[str]:
    names = {t for n in _nodes(m) for t in (*n.input, *n.output)}
    return sorted(names | {v.name for v in _value_infos(m)} | {t.name for t in _tensors(m)})


def m_dim(m, rng):
    vis = [v for v in _value_infos(m) if v.type.HasField("tensor_type")]
    if not vis:
        return "dim: none"
    v = rng.choice(vis)
    shape = v.type.tensor_type.shape
    how = rng.choice(["value", "value", "param", "clear", "add", "drop"])
    if how == "add" or not shape.dim:
        shape.dim.add().dim_value = rng.choice(INTS)
        return f"dim: add to {v.name!r}"
    d = rng.randrange(len(shape.dim))
    if how == "value":
        shape.dim[d].dim_value = rng.choice(INTS)
    elif how == "param":
        shape.dim[d].dim_param = rng.choice(["N", "", "batch", "-1"])
    elif how == "clear":
        shape.dim[d].Clear()
    else:
        del shape.dim[d]
    return f"dim: {how} dim {d} of {v.name!r}"


def m_type(m, rng):
    vis = _value_infos(m)
    if not vis:
        return "type: none"
    v = rng.choice(vis)
    how = rng.choice(["elem", "elem", "sequence", "optional", "map", "clear"])
    if how == "elem":
        v.type.tensor_type.elem_type = rng.choice(
            [0, 1, 2, 7, 8, 9, 10, 11, 16, 17, 21, 23, 25, 99, -1, 2**31 - 1]
        )
    elif how == "sequence":
        v.type.sequence_type.elem_type.tensor_type.elem_type = TensorProto.FLOAT
    elif how == "optional":
        v.type.optional_type.elem_type.tensor_type.elem_type = TensorProto.FLOAT
    elif how == "map":
        v.type.map_type.key_type = TensorProto.INT64
        v.type.map_type.value_type.tensor_type.elem_type = TensorProto.FLOAT
    else:
        v.ClearField("type")
    return f"type: {how} of {v.name!r}"


def m_tensor_dims(m, rng):
    ts = _tensors(m)
    if not ts:
        return "tensor dims: none"
    t = rng.choice(ts)
    if t.dims and rng.random() < 0.7:
        t.dims[rng.randrange(len(t.dims))] = rng.choice(INTS)
    elif t.dims and rng.random() < 0.5:
        del t.dims[-1]
    else:
        t.dims.append(rng.choice(INTS))
    return f"tensor dims of {t.name!r} -> {list(t.dims)}"


def m_tensor_type(m, rng):
    ts = _tensors(m)
    if not ts:
        return "tensor type: none"
    t = rng.choice(ts)
    t.data_type = rng.choice(
        [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 13, 16, 17, 19, 21, 22, 23, 24, 25, 26, 99, -3]
    )
    return f"tensor type of {t.name!r} -> {t.data_type}"


def m_tensor_values(m, rng):
    ts = [
        t
        for t in _tensors(m)
        if t.data_type == TensorProto.INT64 and t.raw_data and not _external(t)
    ]
    if not ts:
        return "tensor values: none"
    t = rng.choice(ts)
    values = numpy_helper.to_array(t).copy()
    values.flat[rng.randrange(values.size)] = rng.choice(INTS)
    t.raw_data = values.tobytes()
    return f"tensor values of {t.name!r} -> {values.ravel().tolist()[:8]}"


def m_tensor_data(m, rng):
    ts = _tensors(m)
    if not ts:
        return "tensor data: none"
    t = rng.choice(ts)
    how = rng.choice(["cut", "grow", "clear", "floats", "ints", "strings"])
    if how == "cut":
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data) + 1)]
    elif how == "grow":
        t.raw_data = t.raw_data + bytes(rng.randrange(1, 9))
    elif how == "clear":
        t.ClearField("raw_data")
    elif how == "floats":
        t.float_data.extend([1.5] * rng.randrange(1, 5))
    elif how == "ints":
        t.int64_data.extend([rng.choice(INTS)] * rng.randrange(1, 5))
    else:
        t.string_data.extend([b"\xff\xfe", b"ok"])
    return f"tensor data of {t.name!r}: {how}"


def m_external(m, rng):
    ts = _tensors(m)
    if not ts:
        return "external: none"
    t = rng.choice(ts)
    loc = rng.choice(LOCATIONS)
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    t.external_data.add(key="location", value=loc)
    for key in ("offset", "length"):
        if rng.random() < 0.4:
            t.external_data.add(
                key=key, value=rng.choice(["0", "4", "-1", "x", str(2**62), "1e3", ""])
            )
    if rng.random() < 0.1:
        t.external_data.add(key="unknown", value="?")
    return f"external: {t.name!r} at {loc[:40]!r} {[(e.key, e.value) for e in t.external_data][1:]}"


def m_rename(m, rng):
    nodes, names = _nodes(m), _names(m)
    if not nodes:
        return "rename: none"
    n = rng.choice(nodes)
    new = rng.choice(names + ["", "nope", "x", "y"])
    ios = [("input", i) for i in range(len(n.input))] + [
        ("output", i) for i in range(len(n.output))
    ]
    if not ios:
        n.output.append(new)
        return f"rename: add output {new!r} to {n.op_type}"
    kind, i = rng.choice(ios)
    getattr(n, kind)[i] = new
    return f"rename: {n.op_type} {kind} {i} -> {new!r}"


def m_graph_io(m, rng):
    g = rng.choice(_graphs(m))
    how = rng.choice(
        [
            "dup-input",
            "dup-output",
            "drop-outputs",
            "drop-inputs",
            "undefined-output",
            "input-is-init",
        ]
    )
    if how == "dup-input" and g.input:
        g.input.append(_copy(g.input[0]))
    elif how == "dup-output" and g.output:
        g.output.append(_copy(g.output[0]))
    elif how == "drop-outputs":
        del g.output[:]
    elif how == "drop-inputs":
        del g.input[:]
    elif how == "undefined-output":
        g.output.add().CopyFrom(_vi("nowhere", [2]))
    elif how == "input-is-init" and g.initializer:
        g.input.add().CopyFrom(_vi(g.initializer[0].name, [1]))
    return f"graph io: {how} in {g.name!r}"


def m_nodes(m, rng):
    g = rng.choice(_graphs(m))
    if not g.node:
        return "nodes: none"
    how = rng.choice(
        ["dup", "drop", "shuffle", "reverse", "self-loop", "cycle", "op", "domain", "name"]
    )
    i = rng.randrange(len(g.node))
    n = g.node[i]
    if how == "dup":
        g.node.append(_copy(n))
    elif how == "drop":
        del g.node[i]
    elif how in ("shuffle", "reverse"):
        nodes = list(g.node)
        rng.shuffle(nodes) if how == "shuffle" else nodes.reverse()
        copies = [_copy(x) for x in nodes]
        del g.node[:]
        g.node.extend(copies)
    elif how == "self-loop" and n.output and n.input:
        n.input[0] = n.output[0]
    elif how == "cycle" and n.input:
        later = [o for x in g.node[i:] for o in x.output if o]
        n.input[0] = rng.choice(later) if later else n.input[0]
    elif how == "op":
        n.op_type = rng.choice(OPS)
    elif how == "domain":
        n.domain = rng.choice(DOMAINS)
    elif how == "name":
        n.name = rng.choice(["", g.node[0].name, "x" * 1000, "n"])
    return f"nodes: {how} node {i} ({n.op_type}) of {g.name!r}"


def m_attribute(m, rng):
    nodes = [n for n in _nodes(m) if n.attribute]
    if not nodes:
        return "attribute: none"
    n = rng.choice(nodes)
    i = rng.randrange(len(n.attribute))
    a = n.attribute[i]
    how = rng.choice(["drop", "type", "ints", "int", "float", "string", "ref", "dup"])
    if how == "drop":
        del n.attribute[i]
    elif how == "type":
        a.type = rng.choice(list(AttributeProto.AttributeType.values()))
    elif how == "ints":
        a.ints.extend([rng.choice(INTS) for _ in range(rng.randrange(1, 5))])
    elif how == "int":
        a.i = rng.choice(INTS)
    elif how == "float":
        a.f = rng.choice([float("nan"), float("inf"), -1e38, 0.0])
    elif how == "string":
        a.s = rng.choice([b"\xff\xfe", b"", b"NOTSET", b"x" * 1000])
    elif how == "ref":
        a.ref_attr_name = "outer"
    else:
        n.attribute.append(_copy(a))
    return f"attribute: {how} {a.name!r} of {n.op_type}"


def m_subgraph(m, rng):
    graph_types = (AttributeProto.GRAPH, AttributeProto.GRAPHS)
    holders = [(n, a) for n in _nodes(m) for a in n.attribute if a.type in graph_types]
    if not holders:
        return "subgraph: none"
    n, a = rng.choice(holders)
    how = rng.choice(
        ["drop", "clear-nodes", "clear-outputs", "clear-inputs", "main", "nest", "clear-g"]
    )
    sub = a.g if a.type == AttributeProto.GRAPH else (a.graphs[0] if a.graphs else a.g)
    if how == "drop":
        n.attribute.remove(a)
    elif how == "clear-nodes":
        del sub.node[:]
    elif how == "clear-outputs":
        del sub.output[:]
    elif how == "clear-inputs":
        del sub.input[:]
    elif how == "main":
        sub.CopyFrom(_copy(m.graph))
    elif how == "nest":
        sub.node.append(
            helper.make_node(
                "If",
                ["cond_in" if sub.input else "x"],
                ["nested"],
                then_branch=_copy(sub),
                else_branch=_copy(sub),
            )
        )
    else:
        a.ClearField("g")
    return f"subgraph: {how} {a.name!r} of {n.op_type}"


def m_opset(m, rng):
    how = rng.choice(["version", "version", "drop-default", "dup", "add", "ir"])
    if how == "version" and m.opset_import:
        o = rng.choice(m.opset_import)
        o.version = rng.choice([-1, 0, 1, 6, 7, 9, 11, 13, 17, 18, 21, 23, 99999, 2**62])
    elif how == "drop-default":
        keep = [o for o in m.opset_import if o.domain not in ("", "ai.onnx")]
        del m.opset_import[:]
        m.opset_import.extend(keep)
    elif how == "dup":
        m.opset_import.add(domain="", version=rng.choice([1, 11, 17]))
    elif how == "add":
        m.opset_import.add(domain=rng.choice(DOMAINS[1:]), version=rng.choice([0, 1, 99]))
    else:
        m.ir_version = rng.choice([-1, 0, 1, 3, 4, 7, 11, 99, 2**62])
    return f"opset: {how} -> {[(o.domain, o.version) for o in m.opset_import]} ir={m.ir_version}"


def m_sparse(m, rng):
    sps = [s for g in _graphs(m) for s in g.sparse_initializer]
    if not sps:
        return "sparse: none"
    s = rng.choice(sps)
    how = rng.choice(["index", "dims", "drop-indices", "float-indices", "values-shape", "rank"])
    idx = (
        numpy_helper.to_array(s.indices)
        if s.indices.dims and not _external(s.indices)
        else np.zeros(0, np.int64)
    )
    if how == "index" and idx.size:
        idx = idx.copy()
        idx.flat[rng.randrange(idx.size)] = rng.choice(INTS)
        s.indices.CopyFrom(numpy_helper.from_array(idx, s.indices.name))
    elif how == "dims" and s.dims:
        s.dims[rng.randrange(len(s.dims))] = rng.choice(INTS)
    elif how == "drop-indices":
        s.ClearField("indices")
    elif how == "float-indices":
        s.indices.CopyFrom(numpy_helper.from_array(idx.astype(np.float32), s.indices.name))
    elif how == "values-shape":
        s.values.dims.append(1)
    else:
        s.dims.append(2)
    return f"sparse: {how} of {s.values.name!r}"


def m_function(m, rng):
    if not m.functions:
        return "function: none"
    f = rng.choice(m.functions)
    how = rng.choice(["recurse", "mutual", "drop", "domain", "empty", "rename-io"])
    if how in ("recurse", "mutual", "rename-io") and not (f.node and f.input):
        return f"function: {how} {f.name!r} has nothing to change"
    if how == "recurse":
        f.node[-1].op_type, f.node[-1].domain = f.name, f.domain
    elif how == "mutual":
        g = _copy(f)
        g.name = f.name + "2"
        g.node[-1].op_type, g.node[-1].domain = f.name, f.domain
        f.node[-1].op_type, f.node[-1].domain = g.name, g.domain
        m.functions.append(g)
    elif how == "drop":
        m.functions.remove(f)
    elif how == "domain":
        f.domain = rng.choice(DOMAINS)
    elif how == "empty":
        del f.node[:]
    else:
        f.input[0] = "nothing"
    return f"function: {how} {f.name!r}"


def m_metadata(m, rng):
    value = rng.choice(
        [
            "5",
            '"text"',
            "[1, 2]",
            '{"fc": 3}',
            '{"fc": [1]}',
            '{"fc": {"onnx_name": 1}}',
            '{"fc": {"doc_string": null}}',
            "{",
            "[" * 5000,
            "1" * 5000,
            '{"fc": {"winograd": 1}}',
            '{"act": {"low_rank": "x"}}',
        ]
    )
    for p in list(m.metadata_props):
        if p.key == ANNOTATIONS_KEY:
            m.metadata_props.remove(p)
    m.metadata_props.add(key=ANNOTATIONS_KEY, value=value)
    if rng.random() < 0.3:
        m.metadata_props.add(key=ANNOTATIONS_KEY, value="{}")
    return f"metadata: annotations = {value[:30]!r}"


PROTO_MUTATIONS: dict[str, Callable] = {
    f.__name__[2:]: f
    for f in (
        m_dim,
        m_type,
        m_tensor_dims,
        m_tensor_type,
        m_tensor_values,
        m_tensor_data,
        m_external,
        m_rename,
        m_graph_io,
        m_nodes,
        m_attribute,
        m_subgraph,
        m_opset,
        m_sparse,
        m_function,
        m_metadata,
    )
}


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    how = rng.choice(["flip", "flip", "truncate", "insert", "delete", "duplicate", "utf8"])
    b = bytearray(data)
    if not b:
        return bytes(rng.randrange(256) for _ in range(8)), "bytes: random"
    if how == "flip":
        spots = [rng.randrange(len(b)) for _ in range(rng.randint(1, 8))]
        for i in spots:
            b[i] ^= rng.randrange(1, 256)
        return bytes(b), f"bytes: flip at {spots}"
    i = rng.randrange(len(b))
    if how == "truncate":
        return bytes(b[:i]), f"bytes: truncate at {i}"
    if how == "insert":
        return bytes(b[:i]) + rng.randbytes(rng.randint(1, 16)) + bytes(
            b[i:]
        ), f"bytes: insert at {i}"
    if how == "delete":
        return bytes(b[:i] + b[i + rng.randint(1, 16) :]), f"bytes: delete at {i}"
    if how == "duplicate":
        j = min(len(b), i + rng.randint(1, 64))
        return bytes(b[:j] + b[i:j] + b[j:]), f"bytes: duplicate {i}:{j}"
    printable = [
        k for k in range(len(b) - 1) if 0x61 <= b[k] <= 0x7A
    ]  # inside some text, most likely
    k = rng.choice(printable) if printable else i
    b[k] = 0xFF
    return bytes(b), f"bytes: 0xff at {k}"


def make_case(seed: int, bases: list[Base]) -> Case:
    """The case of ``seed``: a base, its mutations, and the arguments of ``hwcc.load``."""
    rng = random.Random(seed)
    base = bases[rng.randrange(len(bases))]
    case = Case(seed, base.name, base.model, base.data, {})
    if rng.random() < 0.7:
        m = onnx.ModelProto.FromString(base.model)
        for _ in range(rng.randint(1, 3)):
            case.steps.append(_apply(rng.choice(list(PROTO_MUTATIONS)), m, rng))
        case.model = m.SerializeToString()
    if not case.steps or rng.random() < 0.2:
        case.model, step = mutate_bytes(case.model, rng)
        case.steps.append(step)
    if base.data is not None and rng.random() < 0.1:
        case.data_is_secret_link = True
        case.steps.append(f"files: {DATA} is a symbolic link to ../{SECRET}")
    case.kwargs = _load_kwargs(case.model, rng)
    return case


def _apply(name: str, m: onnx.ModelProto, rng: random.Random) -> str:
    """Apply one mutation; one that finds the model too broken by an earlier one to work
    on (a tensor that no longer converts, say) is recorded as skipped."""
    try:
        return PROTO_MUTATIONS[name](m, rng)
    except Exception as e:  # noqa: BLE001 - the generator's own trouble, not the loader's
        return f"{name}: skipped ({type(e).__name__})"


def _load_kwargs(model: bytes, rng: random.Random) -> dict:
    """Half the cases keep dynamic dims, some fix the first input's dims, the rest load plainly."""
    r = rng.random()
    if r < 0.5:
        return {"allow_dynamic": True}
    if r < 0.8:
        return {}
    try:
        x = onnx.ModelProto.FromString(model).graph.input[0]
    except Exception:  # noqa: BLE001 - a mutated model need not parse; then there is no input to fix
        return {}
    if not isinstance(x.name, str):  # not UTF-8: protobuf gives bytes, which JSON cannot carry
        return {}
    dims = [
        d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else rng.randint(1, 4)
        for d in x.type.tensor_type.shape.dim
    ]
    return {"input_shapes": {x.name: dims}}


def write_case(case: Case, folder: Path) -> Path:
    """Write ``case`` into ``folder`` (emptied first) and return the model's path."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / MODEL).write_bytes(case.model)
    if case.data_is_secret_link:
        os.symlink(folder.parent / SECRET, folder / DATA)
    elif case.data is not None:
        (folder / DATA).write_bytes(case.data)
    return folder / MODEL


# ---------------------------------------------------------------------- the worker
def _worker() -> None:
    """Load the cases the parent sends, one JSON line each, and answer one line each.

    Protocol output goes to the original stdout; anything else written to fd 1 (by onnx's
    C++ code, say) is sent to stderr so it cannot corrupt the answers.
    """
    import resource

    resource.setrlimit(
        resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30)
    )  # a runaway allocation fails here
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    opened: list[str] = []
    _audit_opens(opened)
    installed = [
        os.path.realpath(p)
        for p in (
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            *hwcc.__path__,
            *hwcc.targets.__path__,
        )
    ]
    answers.write("ready\n")
    answers.flush()
    for line in sys.stdin:
        job = json.loads(line)
        path = Path(job["path"])
        opened.clear()
        error = _load_and_save(path, job["kwargs"])
        folder = os.path.realpath(path.parent)
        # Before the traceback is formatted: that reads source files.
        escapes = sorted({p for p in opened if not _inside(p, [folder, *installed])})
        answers.write(json.dumps({**_outcome(error), "escapes": escapes}) + "\n")
        answers.flush()


def _audit_opens(opened: list[str]) -> None:
    """Record every path this process opens: Python's ``open`` audit events, and onnx's
    C++ opening of external data files, which Python does not see."""
    import onnx.external_data_helper as edh

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.path.realpath(os.fsdecode(args[0])))

    sys.addaudithook(hook)
    cpp_open = edh._open_external_data_fd

    def recorded_open(base_dir, location, tensor_name, read_only):
        opened.append(os.path.realpath(os.path.join(base_dir, location)))
        return cpp_open(base_dir, location, tensor_name, read_only)

    edh._open_external_data_fd = recorded_open


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _load_and_save(path: Path, kwargs: dict) -> Exception | None:
    """Load the model at ``path`` and save it back beside it; the exception, if any."""
    try:
        hwcc.save(hwcc.load(path, **kwargs), path.parent / "saved" / MODEL)
    except Exception as e:  # noqa: BLE001 - exactly what the fuzzer looks for
        return e
    return None


def _outcome(error: Exception | None) -> dict:
    """``{"outcome": "ok" | "clean" | "memory" | "foreign", "error": ..., "where": ...}``.

    "memory": an HwccError that reports running out of memory, which the worker's memory
    limit turned from a blow-up into an error: the model should have been refused first.
    """
    if error is None:
        return {"outcome": "ok"}
    if isinstance(error, HwccError):
        memory = "MemoryError" in str(error) or "bad_alloc" in str(error)
        return {"outcome": "memory" if memory else "clean", "error": str(error)[:300]}
    where = "".join(traceback.format_exception(error)[-4:])
    return {
        "outcome": "foreign",
        "error": f"{type(error).__name__}: {str(error)[:300]}",
        "where": where,
    }


# ---------------------------------------------------------------------- the parent
class Harness:
    """Runs cases in a worker process, restarting it after a hang or a crash."""

    def __init__(self, root: Path):
        self.root = root
        self.log = root / "worker.log"
        self.proc: subprocess.Popen | None = None
        (root / SECRET).write_bytes(bytes(4096))

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
        if self._read_line(120) != "ready":
            raise RuntimeError(f"the fuzz worker did not start; see {self.log}")

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def _read_line(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline().decode().strip()

    def run(self, case: Case) -> dict:
        """The worker's answer for ``case``, or ``{"outcome": "hang" | "crash"}``."""
        if self.proc is None:
            self._start()
        path = write_case(case, self.root / "case")
        start = time.perf_counter()
        try:
            self.proc.stdin.write(
                (json.dumps({"path": str(path), "kwargs": case.kwargs}) + "\n").encode()
            )
            self.proc.stdin.flush()
            line = self._read_line(HANG_S)
        except BrokenPipeError:  # the worker died before it could take the case
            line = ""
        seconds = time.perf_counter() - start
        if line is None or line == "":
            code = self.proc.poll()
            self._stop()
            outcome = "hang" if line is None else "crash"
            return {
                "outcome": outcome,
                "error": f"after {seconds:.1f} s, exit code {code}",
                "seconds": seconds,
            }
        return {**json.loads(line), "seconds": seconds}


def fuzz(root: Path, seeds: range) -> tuple[Counter, list[str]]:
    """Run the cases of ``seeds``; the outcome counts and a report line per bad case."""
    bases = base_models()
    counts: Counter = Counter()
    bad: list[str] = []
    with Harness(root) as h:
        for seed in seeds:
            case = make_case(seed, bases)
            answer = h.run(case)
            counts[answer["outcome"]] += 1
            if answer.get("escapes"):
                counts["escapes"] += 1
                bad.append(
                    f"opened outside the model's folder {answer['escapes']}: {case.describe()}"
                )
            if answer["outcome"] not in ("ok", "clean"):
                error, where = answer.get("error"), answer.get("where", "")
                bad.append(f"{answer['outcome']}: {error}\n{where}    {case.describe()}")
    return counts, bad


def _summary(counts: Counter, n: int, seconds: float) -> str:
    return (
        f"loader fuzz: {n} mutated models in {seconds:.0f} s: {counts['clean']} clean errors, "
        f"{counts['ok']} loaded, {counts['foreign']} foreign exceptions, {counts['hang']} hangs, "
        f"{counts['crash']} worker crashes, {counts['memory']} out of memory, "
        f"{counts['escapes']} opens outside the model's folder"
    )


def _check(tmp_path: Path, seeds: range, report_line) -> None:
    start = time.perf_counter()
    counts, bad = fuzz(tmp_path, seeds)
    line = _summary(counts, len(seeds), time.perf_counter() - start)
    print(line)
    report_line(line)
    assert not bad, (
        f"{len(bad)} bad cases (reproduce: tests/test_fuzz_loader.py --case SEED):\n"
        + "\n".join(bad[:20])
    )
    assert counts["ok"] + counts["clean"] == len(seeds)


def test_fuzz_loader_sample(tmp_path, report_line):
    _check(tmp_path, range(FIRST_SEED, FIRST_SEED + FAST_CASES), report_line)


@pytest.mark.slow
def test_fuzz_loader_many(tmp_path, report_line):
    _check(tmp_path, range(FIRST_SEED, FIRST_SEED + SLOW_CASES), report_line)


def test_every_base_model_loads(tmp_path):
    """The unmutated bases load, so the mutations are what the fuzzer tests."""
    for base in base_models():
        case = Case(0, base.name, base.model, base.data, {"allow_dynamic": True})
        hwcc.load(write_case(case, tmp_path / base.name), allow_dynamic=True)


def _reproduce(seed: int) -> None:
    """Write the case of ``seed`` to a new temporary folder and load it here, so that an
    exception shows its whole traceback."""
    import tempfile

    case = make_case(seed, base_models())
    print(case.describe())
    root = Path(tempfile.mkdtemp(prefix="hwcc-fuzz-"))
    (root / SECRET).write_bytes(bytes(4096))
    path = write_case(case, root / "case")
    print(f"written to {path}")
    graph = hwcc.load(path, **case.kwargs)
    hwcc.save(graph, path.parent / "saved" / MODEL)
    print("loaded and saved:", graph)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    elif len(sys.argv) == 3 and sys.argv[1] == "--case":
        _reproduce(int(sys.argv[2]))
    else:
        sys.exit("usage: test_fuzz_loader.py --case SEED")
