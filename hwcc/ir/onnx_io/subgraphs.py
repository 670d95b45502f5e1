"""A subgraph attribute (an If branch, a Loop body) read as a graph of its own.

The tensors it reads from the scopes around it become inputs of the graph it is read
into, typed and shaped as the outer graph knows them, so that shape inference inside the
branch starts from what is known outside (a branch of a model whose inputs are fixed gets
static shapes too)."""

from __future__ import annotations

import onnx
from onnx import AttributeProto

from hwcc.ir.graph import Graph
from hwcc.ir.node import Node
from hwcc.ir.onnx_io.reader import _outer_refs, from_proto
from hwcc.ir.onnx_io.writer import value_info_proto

__all__ = ["read_subgraph"]


def read_subgraph(graph: Graph, node: Node, attr: str) -> Graph | None:
    """The graph attribute ``attr`` of ``node`` (a node of ``graph``) as a graph whose
    inputs are, after its own, the outer tensors it reads; None if ``node`` has no graph
    attribute of that name."""
    proto = getattr(node.attrs.get(attr), "proto", None)
    if not isinstance(proto, AttributeProto) or proto.type != AttributeProto.GRAPH:
        return None
    g = onnx.GraphProto()
    g.CopyFrom(proto.g)
    for name in sorted(_outer_refs(g)):
        g.input.append(value_info_proto(graph, name))
    opsets = [onnx.OperatorSetIdProto(domain=d, version=v) for d, v in graph.opset_imports.items()]
    model = onnx.ModelProto(
        ir_version=graph.meta.get("ir_version") or 8, graph=g, opset_import=opsets
    )
    model.functions.extend(graph.meta.get("functions", []))
    return from_proto(model, allow_dynamic=True, source=f"the {attr} of {node.name!r}")
