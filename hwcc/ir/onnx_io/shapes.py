"""Shape inference on the IR through ``onnx.shape_inference``, data propagation where safe.

Data propagation (the values of shape tensors) fills in the shapes that depend on them;
it stays off for a model with a 1-D tensor of over 2**20 elements, where it would cost
gigabytes (:func:`data_prop_is_safe`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import onnx
import onnx.inliner
from onnx import AttributeProto

from hwcc.ir import Graph
from hwcc.ir.onnx_io.dims import read_dim
from hwcc.ir.onnx_io.protos import clone
from hwcc.ir.onnx_io.writer import to_proto, value_info_proto

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")
_DATA_PROP_MAX_LENGTH = 2**20  # see data_prop_is_safe
_PROTOBUF_LIMIT = 2**31 - 1  # bytes: a larger model goes through a file


def infer_shapes(graph: Graph) -> None:
    """Run ONNX shape inference and record every inferred type and shape on the graph.

    Intermediate shapes are re-derived from the graph inputs and the operators, so
    after a transform they are fresh. Tensors produced by ops of unknown domains keep
    the types the source model declared for them.

    The weights are left out (``to_proto(weights=False)``: initializers of more than
    ``SHAPE_TENSOR_MAX`` elements go in as typed inputs). No operator's output shape
    depends on the values of such a tensor (shape, axes, pads, scales and sizes operands
    hold at most one value per dimension), and onnx would otherwise serialise and parse
    every weight: on a 20 MB detector that was 115 of the 125 ms one inference took,
    paid for every proposal the search prices.
    """
    model = to_proto(graph, value_info=False, weights=False)
    keep = []
    for n in graph.nodes:
        if n.domain not in STANDARD_DOMAINS:
            keep.extend(
                o
                for o in n.outputs
                if o and graph.tensors.get(o) and graph.tensors[o].meta.get("declared")
            )
    model.graph.value_info.extend(value_info_proto(graph, o) for o in keep)
    big = model.ByteSize() >= _PROTOBUF_LIMIT  # sparse weights are still written whole
    inferred = _onnx_shape_inference(model, big, graph.meta.get("data_prop", True))
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name in graph.tensors or graph.producer(vi.name) is not None:
            t = graph.tensor(vi.name)
            if vi.type.HasField("tensor_type"):
                tt = vi.type.tensor_type
                if tt.elem_type:
                    t.elem_type = tt.elem_type
                if tt.HasField("shape"):
                    shape = tuple(read_dim(d) for d in tt.shape.dim)
                    if t.shape is None or not _more_known(t.shape, shape):
                        t.shape = shape
            elif vi.type.WhichOneof("value") and vi.name not in graph.outputs:
                t.meta["type_proto"] = clone(vi.type)


def data_prop_is_safe(graph: Graph) -> bool:
    """Whether onnx's data propagation (the values of shape tensors) can run on ``graph``.

    It tracks every element of a 1-D tensor as a shape dimension, whatever the tensor
    holds: one of 2**40 elements (a Range to a large limit, a ConstantOfShape) costs it
    terabytes and hours. A first inference without it finds the lengths of the 1-D
    tensors, in subgraphs and (inlined) functions too. Lengths that only data
    propagation itself can find (a Range up to a dimension read with Shape) are not
    covered. The probe carries no weights (``to_proto(weights=False)``): without data
    propagation, inference reads the values of small tensors alone, so the check costs a
    small fraction of the inference that follows it.
    """
    model = to_proto(graph, value_info=False, weights=False)
    with _inference_errors():
        probe = onnx.inliner.inline_local_functions(model) if model.functions else model
    inferred = _onnx_shape_inference(probe, False, False)
    return _longest_vector(inferred) <= _DATA_PROP_MAX_LENGTH


def _longest_vector(model: onnx.ModelProto) -> int:
    """The most elements of a 1-D tensor whose length ``model`` (inferred) states."""
    longest = 0
    for g in _all_graphs(model.graph):
        for vi in (*g.input, *g.output, *g.value_info):
            dims = vi.type.tensor_type.shape.dim
            if len(dims) == 1 and dims[0].HasField("dim_value"):
                longest = max(longest, dims[0].dim_value)
        longest = max([longest] + [t.dims[0] for t in g.initializer if len(t.dims) == 1])
    return longest


def _all_graphs(g: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield g
    for n in g.node:
        for a in n.attribute:
            for sg in [a.g] if a.type == AttributeProto.GRAPH else a.graphs:
                yield from _all_graphs(sg)


def _onnx_shape_inference(model: onnx.ModelProto, big: bool, data_prop: bool) -> onnx.ModelProto:
    with _inference_errors():
        if big:
            return _infer_large(model, data_prop)
        return onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=data_prop
        )


@contextmanager
def _inference_errors() -> Iterator[None]:
    """Raise any failure of onnx's shape inference (or function inliner) as ``InferenceError``.

    onnx reports a malformed model with ``ValidationError``, ``RuntimeError`` and others
    besides ``InferenceError``; one class lets the loader and the pass manager tell "the
    model is wrong" from a bug of their own.
    """
    try:
        yield
    except onnx.shape_inference.InferenceError:
        raise
    except Exception as e:
        raise onnx.shape_inference.InferenceError(f"{type(e).__name__}: {e}") from e


def _more_known(old: tuple, new: tuple) -> bool:
    """True if ``old`` pins down strictly more than ``new`` (keep the old one)."""
    if len(old) != len(new):
        return False
    return sum(isinstance(d, int) for d in old) > sum(isinstance(d, int) for d in new)


def _infer_large(model: onnx.ModelProto, data_prop: bool) -> onnx.ModelProto:
    """Shape inference for a model over protobuf's 2 GB limit, through a file."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "m.onnx"), os.path.join(d, "inferred.onnx")
        onnx.save_model(
            model, src, save_as_external_data=True, location="m.data", size_threshold=1024
        )
        onnx.shape_inference.infer_shapes_path(
            src, dst, check_type=False, strict_mode=False, data_prop=data_prop
        )
        return onnx.load(dst, load_external_data=False)
