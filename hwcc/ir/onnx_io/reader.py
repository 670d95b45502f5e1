"""ONNX to the IR: :func:`load` for a file or ``zoo:NAME``, :func:`from_proto` for a proto.

A model is audited (:mod:`hwcc.ir.onnx_io.audit`) before its graph is built; what the
IR does not interpret (subgraph attributes, functions, non-tensor types, training info,
metadata) is kept as it came, for :mod:`hwcc.ir.onnx_io.writer` to write back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, SparseTensorProto, TensorProto, helper, numpy_helper

from hwcc.errors import ModelLoadError
from hwcc.ir import Graph, dtypes
from hwcc.ir.onnx_io.audit import (
    MAX_DENSE_BYTES,
    audit,
    check_dataflow,
    check_sparse,
    foreign,
    node_label,
)
from hwcc.ir.onnx_io.dims import fix_input_shapes, read_dim
from hwcc.ir.onnx_io.files import load_external_data, read_model, resolve_model_path
from hwcc.ir.onnx_io.node_annotations import ANNOTATIONS_KEY, read_annotations
from hwcc.ir.onnx_io.protos import RawAttribute, clone, short, text
from hwcc.ir.onnx_io.shapes import data_prop_is_safe, infer_shapes


def load(
    src: str | os.PathLike | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    allow_dynamic: bool = False,
) -> Graph:
    """Load a model into the IR.

    Args:
        src: a path to an ``.onnx`` file, ``"zoo:NAME"`` for a bundled model, or a
            ``ModelProto``.
        input_shapes: fixed shapes for graph inputs, by name.
        allow_dynamic: keep dynamic input dimensions instead of refusing them.

    Returns:
        The graph, with shapes inferred.

    Raises:
        ModelLoadError: the file is missing, not ONNX, truncated or invalid; external
            data leaves the model's folder; a dynamic dimension is not fixed.
    """
    if isinstance(src, onnx.ModelProto):
        return from_proto(src, input_shapes=input_shapes, allow_dynamic=allow_dynamic)
    path = resolve_model_path(src)
    model = read_model(path)
    load_external_data(audit(model, str(path)), path)
    return _build(model, input_shapes or {}, allow_dynamic, str(path))


def from_proto(
    model: onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    allow_dynamic: bool = False,
    source: str = "<model>",
) -> Graph:
    """Build the IR from a ``ModelProto`` (with its external data already loaded).

    Raises:
        ModelLoadError: the model is malformed (see :mod:`hwcc.ir.onnx_io.audit`), keeps
            tensor data in external files, or has a dynamic input dimension that is not
            fixed.
    """
    if audit(model, source):
        raise ModelLoadError(
            f"{source} keeps tensor data in external files, which a model given "
            "in memory cannot reach safely",
            "give hwcc the model's path, so that it reads the data from the model's own folder",
        )
    return _build(model, input_shapes or {}, allow_dynamic, source)


def _build(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]],
    allow_dynamic: bool,
    source: str,
) -> Graph:
    """The IR of an audited model (:func:`audit`) whose external data is loaded."""
    mg = model.graph
    g = Graph(mg.name or "graph")
    g.opset_imports = {o.domain: o.version for o in model.opset_import}
    g.meta.update(
        source=source,
        ir_version=model.ir_version,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        domain=model.domain,
        model_version=model.model_version,
        doc_string=text(model.doc_string),
        metadata_props=[(p.key, p.value) for p in model.metadata_props if p.key != ANNOTATIONS_KEY],
        functions=[clone(f) for f in model.functions],
        training_info=[clone(t) for t in model.training_info],
        graph_doc_string=text(mg.doc_string),
        graph_metadata_props=[(p.key, p.value) for p in mg.metadata_props],
        quantization_annotation=[clone(q) for q in mg.quantization_annotation],
        sparse_initializers=[clone(s) for s in mg.sparse_initializer],
    )
    _read_initializers(g, mg, source)
    for vi in mg.input:
        _read_value_info(g, vi)
        g.inputs.append(vi.name)
    for vi in mg.value_info:
        _read_value_info(g, vi)
        g.tensors[vi.name].meta["declared"] = True
    for vi in mg.output:
        _read_value_info(g, vi)
        g.outputs.append(vi.name)
    fix_input_shapes(g, input_shapes, allow_dynamic, source)
    _read_nodes(g, model, source)
    if not _is_topological(g):
        g.toposort()
    try:
        g.meta["data_prop"] = data_prop_is_safe(g)
        infer_shapes(g)
    except onnx.shape_inference.InferenceError as e:
        raise ModelLoadError(
            f"shape inference failed on {source}: {short(str(e), 300)}",
            "check the model with onnx.checker, or fix the input shapes",
        ) from None
    return g


def _read_initializers(g: Graph, mg: onnx.GraphProto, source: str) -> None:
    for init in mg.initializer:
        t = g.tensor(init.name)
        t.data = _to_array(init, source)
        t.elem_type = init.data_type
        t.shape = tuple(int(d) for d in init.dims)
        t.meta["onnx_proto"] = (t.data, _strip_external(init))
    budget = MAX_DENSE_BYTES
    for sp in mg.sparse_initializer:
        t = g.tensor(sp.values.name)
        t.data = _sparse_to_dense(sp, source, budget)
        budget -= t.data.nbytes
        t.elem_type = sp.values.data_type
        t.shape = tuple(int(d) for d in sp.dims)
        t.meta["sparse"] = True


def _read_nodes(g: Graph, model: onnx.ModelProto, source: str) -> None:
    """Add the model's nodes to ``g``, after checking that they form a dataflow graph."""
    nodes = model.graph.node
    given = set(g.inputs) | {n for n, t in g.tensors.items() if t.data is not None}
    refs = [_subgraph_refs(n) for n in nodes]
    check_dataflow(nodes, given, refs, source)
    defined = given | {o for n in nodes for o in n.output if o}
    notes = read_annotations(model, source)
    prev = None  # keep the source order: it is usually topological already
    for i, n in enumerate(nodes):
        where = f"node {node_label(n, i)} of {source}"
        attrs, types = {}, {}
        for a in n.attribute:
            attrs[a.name], types[a.name] = _read_attr(a, where)
        name, meta = _node_name_and_meta(g, n, i)
        meta.update(notes.get(n.name or name, {}))
        prev = g.add_node(
            n.op_type,
            list(n.input),
            list(n.output),
            attrs,
            name=name,
            domain=n.domain,
            meta=meta,
            attr_types=types,
            implicit_inputs=tuple(sorted(refs[i] & defined)),
            after=prev,
        )


def _node_name_and_meta(g: Graph, n: onnx.NodeProto, i: int) -> tuple[str, dict[str, Any]]:
    """The IR name of ``n`` (unique, generated if it has none) and what the IR keeps of
    the ONNX node beside its dataflow: its original name, doc string, metadata, overload."""
    name = n.name
    meta: dict[str, Any] = {}
    if not name or g.has_node(name):
        meta["onnx_name"] = name
        name = g.unique_name(name or f"{n.op_type.lower()}_{i}")
    if n.doc_string:
        meta["doc_string"] = text(n.doc_string)
    if n.metadata_props:
        meta["metadata_props"] = [(p.key, p.value) for p in n.metadata_props]
    if n.overload:
        meta["overload"] = n.overload
    return name, meta


def _subgraph_refs(n: onnx.NodeProto) -> set[str]:
    """Names the subgraphs of ``n`` (If, Loop, Scan bodies) read from the outer graph."""
    refs: set[str] = set()
    for a in n.attribute:
        if a.type == AttributeProto.GRAPH:
            refs |= _outer_refs(a.g)
        elif a.type == AttributeProto.GRAPHS:
            for sg in a.graphs:
                refs |= _outer_refs(sg)
    return refs


def _outer_refs(sg: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from enclosing scopes."""
    defined = {i.name for i in sg.input} | {i.name for i in sg.initializer}
    defined |= {s.values.name for s in sg.sparse_initializer}
    used: set[str] = set()
    for n in sg.node:
        used.update(i for i in n.input if i)
        used |= _subgraph_refs(n)
        defined.update(n.output)
    used.update(o.name for o in sg.output)
    return used - defined


def _is_topological(g: Graph) -> bool:
    done: set[str] = set()
    for n in g.nodes:
        if any(
            g.producer(t) is not None and g.producer(t).name not in done
            for t in (*n.inputs, *n.implicit_inputs)
            if t
        ):
            return False
        done.add(n.name)
    return True


def _read_value_info(g: Graph, vi: onnx.ValueInfoProto) -> None:
    t = g.tensor(vi.name)
    tp = vi.type
    if tp.HasField("tensor_type"):
        t.elem_type = tp.tensor_type.elem_type or t.elem_type
        if tp.tensor_type.HasField("shape"):
            t.shape = tuple(read_dim(d) for d in tp.tensor_type.shape.dim)
        t.meta.pop("type_proto", None)
    else:
        t.meta["type_proto"] = clone(tp)
    if vi.doc_string:
        t.meta["doc_string"] = text(vi.doc_string)


def _read_attr(a: AttributeProto, where: str) -> tuple[Any, int]:
    """The value of attribute ``a`` of the node ``where`` names, and its type."""
    T = AttributeProto
    if a.ref_attr_name or a.type in (
        T.GRAPH,
        T.GRAPHS,
        T.TYPE_PROTO,
        T.TYPE_PROTOS,
        T.SPARSE_TENSOR,
        T.SPARSE_TENSORS,
        T.TENSORS,
        T.UNDEFINED,
    ):
        return RawAttribute(clone(a)), a.type
    if a.type == T.TENSOR and a.t.data_type not in dtypes.FIXED_SIZE:
        return RawAttribute(clone(a)), a.type
    with foreign(f"attribute {short(a.name)!r} of {where} cannot be read"):
        if a.type == T.TENSOR:
            return numpy_helper.to_array(a.t), a.type
        v = helper.get_attribute_value(a)
    if a.type == T.STRING:
        v = _decode(v)
    elif a.type == T.STRINGS:
        v = [_decode(s) for s in v]
    elif a.type in (T.INTS, T.FLOATS):
        v = list(v)
    return v, a.type


def _decode(b: bytes) -> str | bytes:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


def _to_array(t: TensorProto, source: str) -> np.ndarray:
    with foreign(f"initializer {short(t.name)!r} of {source} cannot be read"):
        return numpy_helper.to_array(t)


def _strip_external(t: TensorProto) -> TensorProto:
    c = clone(t)
    if c.data_location == TensorProto.EXTERNAL:
        c.data_location = TensorProto.DEFAULT
        del c.external_data[:]
    return c


def _sparse_to_dense(sp: SparseTensorProto, source: str, budget: int) -> np.ndarray:
    """The dense array of a sparse initializer, after checking that its indices fit its
    dims and that the dense array takes at most ``budget`` bytes (the dims are only the
    file's word: ``[2**40]`` would ask numpy for terabytes)."""
    where = f"sparse initializer {short(sp.values.name)!r} of {source}"
    with foreign(f"{where} cannot be read"):
        values = numpy_helper.to_array(sp.values)
        idx = numpy_helper.to_array(sp.indices)
    dims = tuple(int(d) for d in sp.dims)
    check_sparse(values, idx, dims, where, budget)
    dense = np.zeros(math.prod(dims), dtype=values.dtype)
    if idx.ndim == 1:
        dense[idx] = values
    else:
        dense[np.ravel_multi_index(idx.T, dims)] = values
    return dense.reshape(dims)
