"""What the loader fuzzer's mutations (tests/fuzz_*_mutations.py) work on: the graphs,
nodes, value infos, tensors and names of a model at any depth, detached copies of
protobuf messages, and the integers they write."""

from __future__ import annotations

import onnx
from onnx import TensorProto

INTS = [-(2**62), -(2**40), -7, -1, 0, 1, 2, 3, 5, 64, 2**31 - 1, 2**31, 2**40, 2**62]


def copy_message(msg):
    """A detached copy of a protobuf message: copying a message into a part of itself, or
    appending a container's own element to it, is not safe in protobuf's C runtime."""
    return type(msg).FromString(msg.SerializeToString())


def graphs_of(m: onnx.ModelProto) -> list[onnx.GraphProto]:
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


def nodes_of(m: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for g in graphs_of(m) for n in g.node] + [n for f in m.functions for n in f.node]


def value_infos_of(m: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    return [v for g in graphs_of(m) for v in (*g.input, *g.output, *g.value_info)]


def tensors_of(m: onnx.ModelProto) -> list[TensorProto]:
    out = []
    for g in graphs_of(m):
        out += list(g.initializer) + [
            t for s in g.sparse_initializer for t in (s.values, s.indices)
        ]
    for n in nodes_of(m):
        for a in n.attribute:
            out += ([a.t] if a.HasField("t") else []) + list(a.tensors)
            if a.HasField("sparse_tensor"):
                out += [a.sparse_tensor.values, a.sparse_tensor.indices]
    return out


def is_external(t: TensorProto) -> bool:
    """Whether ``t`` keeps its data in a file: the generator must not read it (numpy_helper
    would, relative to the working folder)."""
    return t.data_location == TensorProto.EXTERNAL


def names_of(m: onnx.ModelProto) -> list[str]:
    names = {t for n in nodes_of(m) for t in (*n.input, *n.output)}
    return sorted(names | {v.name for v in value_infos_of(m)} | {t.name for t in tensors_of(m)})
