"""The IR back to ONNX: :func:`to_proto` builds a ``ModelProto``, :func:`save` writes a file.

What the IR does not interpret is written back as it came: ops of unknown domains,
subgraph attributes, functions, non-tensor types, training info, metadata. Initializers
that no transform touched are written from their original protos, bit for bit. Files
are written atomically, with external data for models over protobuf's 2 GB limit.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes
from hwcc.ir.onnx_io.node_annotations import ANNOTATIONS_KEY, annotations
from hwcc.ir.onnx_io.protos import RawAttribute, clone, short

EXTERNAL_THRESHOLD = 1_800_000_000  # bytes of initializers above which save() goes external
# Tensors whose values shape inference may read (Reshape's shape, Pad's pads, Resize's
# scales...) have a handful of elements: one per dimension, or two.
SHAPE_TENSOR_MAX = 1024


def save(graph: Graph, path: str | os.PathLike) -> Path:
    """Write ``graph`` as an ONNX file, atomically.

    Models whose initializers exceed about 1.8 GB (protobuf's limit is 2 GB) are written
    with external data in ``<file>.data`` beside the model.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = _proto_to_write(graph, path)
    big = needs_external_data(graph)
    tmp = _new_temp_file(path)
    try:
        if big:
            location = path.name + ".data"
            onnx.save_model(
                model,
                tmp,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=location + ".tmp",
                size_threshold=1024,
            )
            os.replace(path.parent / (location + ".tmp"), path.parent / location)
            m2 = onnx.load(tmp, load_external_data=False)
            for t in onnx.external_data_helper._get_all_tensors(m2):
                for e in t.external_data:
                    if e.key == "location":
                        e.value = location
            onnx.save_model(m2, tmp)
        else:
            onnx.save_model(model, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def needs_external_data(graph: Graph) -> bool:
    """Whether ``graph``'s initializers are too large for one protobuf message."""
    total = sum(t.data.nbytes for t in graph.tensors.values() if t.data is not None)
    return total > EXTERNAL_THRESHOLD


def _proto_to_write(graph: Graph, path: Path) -> onnx.ModelProto:
    """``to_proto(graph)``, refusing text that ONNX cannot store: names and doc strings are
    UTF-8 in the file, and a Python string with lone surrogates has no UTF-8 form."""
    try:
        return to_proto(graph)
    except UnicodeError as e:
        raise HwccError(
            f"cannot write {path}: the text {short(e.object)!r} in the graph is not valid UTF-8 "
            f"({e.reason})",
            "rename the node or tensor, or fix the doc string; attribute values that are not "
            "text can be given as bytes",
        ) from e


def _new_temp_file(path: Path) -> str:
    """A fresh, empty file beside ``path`` to write it atomically.

    It is created with mode 0o666 so that the umask applies, as for any tool's output:
    ``tempfile.mkstemp`` makes 0600 files, which would leave the saved model unreadable
    to the user's group.
    """
    tmp = path.parent / f".{path.name[:200]}.{secrets.token_hex(8)}.tmp"  # within NAME_MAX
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return str(tmp)


def to_proto(graph: Graph, *, value_info: bool = True, weights: bool = True) -> onnx.ModelProto:
    """Build a ``ModelProto`` from the IR.

    Args:
        graph: the graph.
        value_info: write the intermediate types the source model declared.
        weights: write every initializer. False writes those of more than
            ``SHAPE_TENSOR_MAX`` elements as typed graph inputs, without their data: a
            model for shape inference without data propagation, which reads the values of
            small tensors only (shapes, axes, pads, scales), at a fraction of the size.
    """
    m = graph.meta
    sparse_names = {n for n, t in graph.tensors.items() if t.meta.get("sparse")}
    dense = {n: t for n, t in graph.tensors.items() if t.data is not None and n not in sparse_names}
    typed_only = (
        []
        if weights
        else [
            n for n, t in dense.items() if t.data.size > SHAPE_TENSOR_MAX and n not in graph.inputs
        ]
    )
    inits = [_tensor_proto(t) for n, t in dense.items() if n not in typed_only]
    nodes = [_node_proto(n) for n in graph.nodes]
    vis = []
    if value_info:
        vis = [
            value_info_proto(graph, n)
            for n, t in graph.tensors.items()
            if t.meta.get("declared")
            and n not in graph.inputs
            and n not in graph.outputs
            and (t.data is None)
            and n in _live_names(graph)
        ]
    g = helper.make_graph(
        nodes,
        graph.name,
        [value_info_proto(graph, n) for n in (*graph.inputs, *typed_only)],
        [value_info_proto(graph, n) for n in graph.outputs],
        initializer=inits,
        value_info=vis,
        doc_string=m.get("graph_doc_string") or None,
        sparse_initializer=[
            s for s in m.get("sparse_initializers", []) if s.values.name in graph.tensors
        ],
    )
    g.quantization_annotation.extend(m.get("quantization_annotation", []))
    for k, v in m.get("graph_metadata_props", []):
        g.metadata_props.add(key=k, value=v)
    opsets = [helper.make_opsetid(d, v) for d, v in graph.opset_imports.items()]
    model = helper.make_model(g, opset_imports=opsets, functions=m.get("functions", []))
    model.ir_version = m.get("ir_version") or _ir_version_for(graph.opset_imports)
    for key in ("producer_name", "producer_version", "domain", "doc_string"):
        if m.get(key):
            setattr(model, key, m[key])
    if m.get("model_version"):
        model.model_version = m["model_version"]
    for k, v in m.get("metadata_props", []):
        if k != ANNOTATIONS_KEY:
            model.metadata_props.add(key=k, value=v)
    notes = annotations(graph)
    if notes:
        model.metadata_props.add(key=ANNOTATIONS_KEY, value=json.dumps(notes, sort_keys=True))
    model.training_info.extend(m.get("training_info", []))
    return model


def _live_names(graph: Graph) -> set[str]:
    names = set()
    for n in graph.nodes:
        names.update(n.inputs)
        names.update(n.outputs)
    return names


def _ir_version_for(opsets: Mapping[str, int]) -> int:
    try:
        return helper.find_min_ir_version_for(
            [helper.make_opsetid(d, v) for d, v in opsets.items()], ignore_unknown=True
        )
    except Exception:  # unknown opset versions: the newest IR this onnx knows
        return onnx.IR_VERSION


def _tensor_proto(t) -> TensorProto:
    cached = t.meta.get("onnx_proto")
    if cached is not None and cached[0] is not t.data:
        del t.meta["onnx_proto"]  # a transform replaced the array: the proto is stale
        cached = None
    if cached is not None:
        proto = cached[1]
        if proto.name != t.name:
            proto = clone(proto)
            proto.name = t.name
        return proto
    proto = numpy_helper.from_array(np.asarray(t.data), t.name)
    if t.elem_type and proto.data_type != t.elem_type and t.elem_type in dtypes.FIXED_SIZE:
        array = np.asarray(t.data).astype(dtypes.numpy_dtype(t.elem_type))
        proto = numpy_helper.from_array(array, t.name)
    return proto


def _node_proto(n) -> onnx.NodeProto:
    name = n.meta.get("onnx_name", n.name)
    p = helper.make_node(
        n.op_type,
        list(n.inputs),
        list(n.outputs),
        name=name or None,
        domain=n.domain or None,
        doc_string=n.meta.get("doc_string"),
    )
    if n.meta.get("overload"):
        p.overload = n.meta["overload"]
    for k, v in n.meta.get("metadata_props", []):
        p.metadata_props.add(key=k, value=v)
    for key, value in n.attrs.items():
        p.attribute.append(_attr_proto(key, value, n.attr_types.get(key)))
    return p


def _attr_proto(key: str, value: Any, attr_type: int | None) -> AttributeProto:
    if isinstance(value, RawAttribute):
        a = clone(value.proto)
        a.name = key
        return a
    if isinstance(value, np.ndarray) and (attr_type in (None, AttributeProto.TENSOR)):
        return helper.make_attribute(key, numpy_helper.from_array(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        value = [v.item() if isinstance(v, np.generic) else v for v in value]
        if attr_type == AttributeProto.FLOATS:
            value = [float(v) for v in value]
        elif attr_type == AttributeProto.INTS:
            value = [int(v) for v in value]
    elif attr_type == AttributeProto.FLOAT:
        value = float(value)
    elif attr_type == AttributeProto.INT:
        value = int(value)
    return helper.make_attribute(key, value, attr_type=attr_type)


def value_info_proto(graph: Graph, name: str) -> onnx.ValueInfoProto:
    """The ``ValueInfoProto`` of tensor ``name``: its type and shape as the IR knows them."""
    t = graph.tensors.get(name)
    vi = onnx.ValueInfoProto()
    vi.name = name
    if t is None:
        return vi
    if "type_proto" in t.meta:
        vi.type.CopyFrom(t.meta["type_proto"])
    elif t.elem_type:
        tt = vi.type.tensor_type
        tt.elem_type = t.elem_type
        if t.shape is not None:
            tt.shape.SetInParent()
            for d in t.shape:
                dim = tt.shape.dim.add()
                if isinstance(d, int):
                    dim.dim_value = d
                elif isinstance(d, str):
                    dim.dim_param = d
    if t.meta.get("doc_string"):
        vi.doc_string = t.meta["doc_string"]
    return vi
