"""Node annotations (``node.meta``) kept in the model's metadata, ``hwcc.node_annotations``.

Transforms leave notes on nodes (``winograd``, ``low_rank``, ...). They travel in the
model's metadata as JSON, node name -> {key: value}, so that a lowered or factorised
model keeps its flags for cost models; reading them back, anything that hwcc did not
write is refused.
"""

from __future__ import annotations

import json
from typing import Any

import onnx

from hwcc.errors import ModelLoadError, json_kind
from hwcc.ir import Graph
from hwcc.ir.onnx_io.protos import short

ANNOTATIONS_KEY = "hwcc.node_annotations"
# What node.meta keeps of the ONNX node itself; never an annotation.
NODE_META_FROM_ONNX = ("onnx_name", "doc_string", "metadata_props", "overload")
_HINT = (
    f"remove the {ANNOTATIONS_KEY} metadata entry: hwcc writes it, and it holds only "
    "hwcc's own notes"
)


def annotations(graph: Graph) -> dict[str, dict[str, Any]]:
    """The JSON-serialisable annotations transforms left on nodes (``winograd``, ...)."""
    out = {}
    for n in graph.nodes:
        notes = {k: v for k, v in n.meta.items() if k not in NODE_META_FROM_ONNX and _jsonable(v)}
        if notes:
            out[n.meta.get("onnx_name") or n.name] = notes
    return out


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def read_annotations(model: onnx.ModelProto, source: str) -> dict[str, dict[str, Any]]:
    """The annotations in ``model``'s metadata, by ONNX node name; empty if it has none.

    Raises:
        ModelLoadError: the entry is not JSON, or not the node name -> {key: value} that
            hwcc writes.
    """
    for p in model.metadata_props:
        if p.key == ANNOTATIONS_KEY:
            try:
                notes = json.loads(p.value)
            except (ValueError, RecursionError):  # not JSON, a number too long, nested too deep
                raise ModelLoadError(
                    f"{source}: the {ANNOTATIONS_KEY} metadata is not valid JSON", _HINT
                ) from None
            _check_annotations(notes, source)
            return notes
    return {}


def _check_annotations(notes: Any, source: str) -> None:
    """hwcc writes node name -> {key: value}; anything else did not come from hwcc, and
    merged into ``node.meta`` it would break far from here."""
    problem = _annotations_problem(notes)
    if problem:
        raise ModelLoadError(
            f"{source}: the {ANNOTATIONS_KEY} metadata must map node names to "
            f"objects of notes, but {problem}",
            _HINT,
        )


def _annotations_problem(notes: Any) -> str | None:
    if not isinstance(notes, dict):
        return f"it is {json_kind(type(notes))}"
    for node, v in notes.items():
        if not isinstance(v, dict):
            return f"node {short(node)!r} has {json_kind(type(v))}"
        reserved = sorted(set(v) & set(NODE_META_FROM_ONNX))
        if reserved:
            return (
                f"node {short(node)!r} sets {reserved[0]!r}, which comes from the ONNX node itself"
            )
    return None
