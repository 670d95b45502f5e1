"""ONNX ``ModelProto`` to :class:`hwcc.ir.Graph` and back.

This is the only module that builds or reads ONNX protos for graphs. Contract:
``save(load(m))`` gives a model that passes ``onnx.checker.check_model(full_check=True)``
whenever ``m`` does, and runs in onnxruntime with outputs identical to ``m``'s.

What it takes care of:

1. Shape inference (``onnx.shape_inference`` with data propagation) fills in the shape
   of every intermediate tensor it can.
2. Dynamic dimensions of the graph inputs must be fixed, from ``input_shapes`` (the
   CLI's ``--input-shape NAME:1x3x224x224``); a model with an unfixed one is refused
   with a message that names the input and the flag to use.
3. External data is read only from inside the model's own folder: a location that is
   absolute, or leads out of the folder (``..``, a symbolic link), is refused.
4. Node annotations that transforms leave in ``node.meta`` (``winograd``, ``low_rank``,
   ...) are kept in the model's metadata (``hwcc.node_annotations``) and restored.
5. What the IR does not interpret passes through unchanged: ops of unknown domains,
   subgraph attributes (If/Loop/Scan bodies), functions, non-tensor types (sequences,
   optionals, maps), training info, metadata. Initializers that no transform touched
   are written back from their original protos, bit for bit.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from hwcc import dtypes
from hwcc.errors import ModelLoadError
from hwcc.ir import Dim, Graph

__all__ = ["load", "save", "from_proto", "to_proto", "infer_shapes", "parse_input_shape"]

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")
# Node annotations (``node.meta``) travel in the model's metadata as JSON, node name ->
# {key: value}, so a lowered or factorised model keeps its flags for cost models.
ANNOTATIONS_KEY = "hwcc.node_annotations"
_NODE_META_FROM_ONNX = ("onnx_name", "doc_string", "metadata_props", "overload")
_EXTERNAL_THRESHOLD = 1_800_000_000  # bytes of initializers above which save() goes external
_SIMPLE_TENSOR_TYPES = set(dtypes._TO_NUMPY) - {dtypes.STRING}


class RawAttribute:
    """An attribute the IR carries without interpreting (a subgraph, a type, a
    reference to a function attribute, a tensor of an exotic element type)."""

    def __init__(self, proto: AttributeProto):
        self.proto = proto

    def __deepcopy__(self, memo: dict) -> RawAttribute:
        p = AttributeProto()
        p.CopyFrom(self.proto)
        return RawAttribute(p)

    def __repr__(self) -> str:
        return f"RawAttribute({AttributeProto.AttributeType.Name(self.proto.type)})"


# ---------------------------------------------------------------------- public API
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
    model = _read_model(path)
    _load_external_data(model, path)
    return from_proto(model, input_shapes=input_shapes, allow_dynamic=allow_dynamic, source=str(path))


def resolve_model_path(src: str | os.PathLike) -> Path:
    """A model path, with ``zoo:NAME`` resolved to the bundled model's file."""
    s = os.fspath(src)
    if s.startswith("zoo:"):
        from hwcc.models import model_path

        return Path(model_path(s[4:]))
    return Path(s)


def save(graph: Graph, path: str | os.PathLike) -> Path:
    """Write ``graph`` as an ONNX file, atomically.

    Models whose initializers exceed about 1.8 GB (protobuf's limit is 2 GB) are written
    with external data in ``<file>.data`` beside the model.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = to_proto(graph)
    big = sum(t.data.nbytes for t in graph.tensors.values() if t.data is not None) > _EXTERNAL_THRESHOLD
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if big:
            location = path.name + ".data"
            onnx.save_model(model, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=location + ".tmp", size_threshold=1024)
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


def parse_input_shape(spec: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``NAME:1x3x224x224`` into ``("NAME", (1, 3, 224, 224))``."""
    name, sep, dims = spec.rpartition(":")
    try:
        if not sep or not name:
            raise ValueError
        shape = tuple(int(d) for d in dims.lower().split("x"))
        if any(d < 0 for d in shape):
            raise ValueError
    except ValueError:
        raise ModelLoadError(
            f"cannot read input shape {spec!r}",
            "write it as NAME:DIMxDIMx..., for example input:1x3x224x224",
        ) from None
    return name, shape


# ---------------------------------------------------------------------- reading
def _read_model(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}", "check the path, or use zoo:NAME (see 'hwcc zoo list')")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder, not an ONNX file", "give the path of the .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, OSError) as e:
        raise ModelLoadError(
            f"{path} is not a readable ONNX model ({type(e).__name__}: {e})",
            "the file may be truncated or of another format; re-export it from your framework",
        ) from None
    if not model.opset_import or model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelLoadError(
            f"{path} is not an ONNX model (no graph, IR version or opset imports)",
            "the file may be truncated or of another format; re-export it from your framework",
        )
    return model


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    base = Path(os.path.realpath(path.parent))
    tensors = [t for t in onnx.external_data_helper._get_all_tensors(model)
               if t.data_location == TensorProto.EXTERNAL]
    for t in tensors:
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        target = Path(os.path.realpath(base / loc))
        if os.path.isabs(loc) or os.path.commonpath([base, target]) != str(base):
            raise ModelLoadError(
                f"tensor {t.name!r} of {path} keeps its data at {loc!r}, outside the model's folder {base}",
                "external data must sit in the model's own folder; move the data file there",
            )
        if not target.is_file():
            raise ModelLoadError(
                f"external data file {loc!r} for tensor {t.name!r} is missing from {base}",
                "copy the .data file that came with the model next to it",
            )
    if tensors:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(base))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot read external data of {path}: {e}") from None


def from_proto(
    model: onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    allow_dynamic: bool = False,
    source: str = "<model>",
) -> Graph:
    """Build the IR from a ``ModelProto`` (with its external data already loaded)."""
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
        doc_string=model.doc_string,
        metadata_props=[(p.key, p.value) for p in model.metadata_props if p.key != ANNOTATIONS_KEY],
        functions=[_clone(f) for f in model.functions],
        training_info=[_clone(t) for t in model.training_info],
        graph_doc_string=mg.doc_string,
        graph_metadata_props=[(p.key, p.value) for p in mg.metadata_props],
        quantization_annotation=[_clone(q) for q in mg.quantization_annotation],
        sparse_initializers=[_clone(s) for s in mg.sparse_initializer],
    )
    for init in mg.initializer:
        t = g.tensor(init.name)
        t.data = _to_array(init, source)
        t.elem_type = init.data_type
        t.shape = tuple(int(d) for d in init.dims)
        t.meta["onnx_proto"] = (t.data, _strip_external(init))
    for sp in mg.sparse_initializer:
        name = sp.values.name
        t = g.tensor(name)
        t.data = _sparse_to_dense(sp)
        t.elem_type = sp.values.data_type
        t.shape = tuple(int(d) for d in sp.dims)
        t.meta["sparse"] = True
    for vi in mg.input:
        _read_value_info(g, vi)
        g.inputs.append(vi.name)
    for vi in mg.value_info:
        _read_value_info(g, vi)
        g.tensors[vi.name].meta["declared"] = True
    for vi in mg.output:
        _read_value_info(g, vi)
        g.outputs.append(vi.name)
    _fix_input_shapes(g, input_shapes or {}, allow_dynamic, source)

    defined = set(g.inputs) | {n for n, t in g.tensors.items() if t.data is not None}
    notes = _read_annotations(model, source)
    prev = None  # keep the source order: it is already topological
    for i, n in enumerate(mg.node):
        attrs, types = {}, {}
        implicit: set[str] = set()
        for a in n.attribute:
            attrs[a.name], types[a.name] = _read_attr(a)
            if a.type == AttributeProto.GRAPH:
                implicit |= _outer_refs(a.g)
            elif a.type == AttributeProto.GRAPHS:
                for sg in a.graphs:
                    implicit |= _outer_refs(sg)
        name = n.name
        meta: dict[str, Any] = {}
        if not name or g.has_node(name):
            meta["onnx_name"] = name
            name = g.unique_name(name or f"{n.op_type.lower()}_{i}")
        if n.doc_string:
            meta["doc_string"] = n.doc_string
        if n.metadata_props:
            meta["metadata_props"] = [(p.key, p.value) for p in n.metadata_props]
        if n.overload:
            meta["overload"] = n.overload
        meta.update(notes.get(n.name or name, {}))
        implicit_inputs = tuple(sorted(r for r in implicit if r in defined))
        prev = g.add_node(n.op_type, list(n.input), list(n.output), attrs, name=name, domain=n.domain,
                          meta=meta, attr_types=types, implicit_inputs=implicit_inputs, after=prev)
        defined.update(o for o in n.output if o)
    if not _is_topological(g):
        g.toposort()
    try:
        infer_shapes(g)
    except onnx.shape_inference.InferenceError as e:
        raise ModelLoadError(f"shape inference failed on {source}: {e}",
                             "check the model with onnx.checker, or fix the input shapes") from None
    return g


def _is_topological(g: Graph) -> bool:
    done: set[str] = set()
    for n in g.nodes:
        if any(g.producer(t) is not None and g.producer(t).name not in done
               for t in (*n.inputs, *n.implicit_inputs) if t):
            return False
        done.add(n.name)
    return True


def _read_annotations(model: onnx.ModelProto, source: str) -> dict[str, dict[str, Any]]:
    for p in model.metadata_props:
        if p.key == ANNOTATIONS_KEY:
            try:
                notes = json.loads(p.value)
            except json.JSONDecodeError:
                raise ModelLoadError(f"{source}: the {ANNOTATIONS_KEY} metadata is not valid JSON") from None
            return notes if isinstance(notes, dict) else {}
    return {}


def _fix_input_shapes(g: Graph, shapes: Mapping[str, Sequence[int]], allow_dynamic: bool, source: str) -> None:
    real = g.real_inputs()
    for name in shapes:
        if name not in real:
            raise ModelLoadError(
                f"--input-shape names {name!r}, which is not an input of {source}",
                f"the model's inputs are: {', '.join(real) or '(none)'}",
            )
    for name in real:
        t = g.tensors[name]
        if name in shapes:
            new = tuple(int(d) for d in shapes[name])
            if t.shape is not None and len(t.shape) != len(new):
                raise ModelLoadError(
                    f"input {name!r} has rank {len(t.shape)} but --input-shape gives {len(new)} dims",
                    f"give {len(t.shape)} dims, e.g. {name}:{'x'.join(str(d) if isinstance(d, int) else '1' for d in t.shape)}",
                )
            if t.shape is not None:
                for have, want in zip(t.shape, new):
                    if isinstance(have, int) and have != want:
                        raise ModelLoadError(
                            f"input {name!r} has fixed shape {_fmt(t.shape)}; --input-shape asks for {_fmt(new)}",
                            "only dynamic dimensions can be set",
                        )
            t.shape = new
        elif "type_proto" not in t.meta and not t.is_static and not allow_dynamic:
            raise ModelLoadError(
                f"input {name!r} of {source} has dynamic shape {_fmt(t.shape)}",
                f"fix it with --input-shape {name}:" + "x".join(
                    str(d) if isinstance(d, int) else "1" for d in (t.shape or (1,))
                ) + " (the 1s stand for the dims you choose)",
            )


def _fmt(shape: Sequence[Dim] | None) -> str:
    if shape is None:
        return "[unknown rank]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _read_value_info(g: Graph, vi: onnx.ValueInfoProto) -> None:
    t = g.tensor(vi.name)
    tp = vi.type
    if tp.HasField("tensor_type"):
        t.elem_type = tp.tensor_type.elem_type or t.elem_type
        if tp.tensor_type.HasField("shape"):
            t.shape = tuple(_read_dim(d) for d in tp.tensor_type.shape.dim)
        t.meta.pop("type_proto", None)
    else:
        t.meta["type_proto"] = _clone(tp)
    if vi.doc_string:
        t.meta["doc_string"] = vi.doc_string


def _read_dim(d: onnx.TensorShapeProto.Dimension) -> Dim:
    if d.HasField("dim_value"):
        return int(d.dim_value)
    if d.HasField("dim_param"):
        return d.dim_param
    return None


def _read_attr(a: AttributeProto) -> tuple[Any, int]:
    T = AttributeProto
    if a.ref_attr_name or a.type in (T.GRAPH, T.GRAPHS, T.TYPE_PROTO, T.TYPE_PROTOS,
                                     T.SPARSE_TENSOR, T.SPARSE_TENSORS, T.TENSORS, T.UNDEFINED):
        return RawAttribute(_clone(a)), a.type
    if a.type == T.TENSOR:
        if a.t.data_type not in _SIMPLE_TENSOR_TYPES or a.t.data_location == TensorProto.EXTERNAL:
            return RawAttribute(_clone(a)), a.type
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


def _outer_refs(sg: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from enclosing scopes."""
    defined = {i.name for i in sg.input} | {i.name for i in sg.initializer}
    defined |= {s.values.name for s in sg.sparse_initializer}
    used: set[str] = set()
    for n in sg.node:
        used.update(i for i in n.input if i)
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                used |= _outer_refs(a.g)
            elif a.type == AttributeProto.GRAPHS:
                for s in a.graphs:
                    used |= _outer_refs(s)
        defined.update(n.output)
    used.update(o.name for o in sg.output)
    return used - defined


def _to_array(t: TensorProto, source: str) -> np.ndarray:
    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # onnx raises bare Exceptions for malformed tensors
        raise ModelLoadError(f"initializer {t.name!r} of {source} cannot be read: {e}",
                             "the file may be truncated; re-export it") from None


def _strip_external(t: TensorProto) -> TensorProto:
    c = _clone(t)
    if c.data_location == TensorProto.EXTERNAL:
        c.data_location = TensorProto.DEFAULT
        del c.external_data[:]
    return c


def _sparse_to_dense(sp: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sp.values)
    idx = numpy_helper.to_array(sp.indices)
    dims = tuple(sp.dims)
    dense = np.zeros(int(np.prod(dims)), dtype=values.dtype)
    if idx.ndim == 1:
        dense[idx] = values
    else:
        dense[np.ravel_multi_index(idx.T, dims)] = values
    return dense.reshape(dims)


def _clone(p):
    c = type(p)()
    c.CopyFrom(p)
    return c


# ---------------------------------------------------------------------- writing
def to_proto(graph: Graph, *, value_info: bool = True) -> onnx.ModelProto:
    """Build a ``ModelProto`` from the IR.

    Args:
        graph: the graph.
        value_info: write the intermediate types the source model declared.
    """
    m = graph.meta
    sparse_names = {n for n, t in graph.tensors.items() if t.meta.get("sparse")}
    inits = [_tensor_proto(t) for n, t in graph.tensors.items() if t.data is not None and n not in sparse_names]
    nodes = [_node_proto(n) for n in graph.nodes]
    vis = []
    if value_info:
        vis = [_value_info(graph, n) for n, t in graph.tensors.items()
               if t.meta.get("declared") and n not in graph.inputs and n not in graph.outputs
               and (t.data is None) and n in _live_names(graph)]
    g = helper.make_graph(
        nodes,
        graph.name,
        [_value_info(graph, n) for n in graph.inputs],
        [_value_info(graph, n) for n in graph.outputs],
        initializer=inits,
        value_info=vis,
        doc_string=m.get("graph_doc_string") or None,
        sparse_initializer=[s for s in m.get("sparse_initializers", []) if s.values.name in graph.tensors],
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
    notes = _annotations(graph)
    if notes:
        model.metadata_props.add(key=ANNOTATIONS_KEY, value=json.dumps(notes, sort_keys=True))
    model.training_info.extend(m.get("training_info", []))
    return model


def _annotations(graph: Graph) -> dict[str, dict[str, Any]]:
    """The JSON-serialisable annotations transforms left on nodes (``winograd``, ...)."""
    out = {}
    for n in graph.nodes:
        notes = {k: v for k, v in n.meta.items() if k not in _NODE_META_FROM_ONNX and _jsonable(v)}
        if notes:
            out[n.meta.get("onnx_name") or n.name] = notes
    return out


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _live_names(graph: Graph) -> set[str]:
    names = set()
    for n in graph.nodes:
        names.update(n.inputs)
        names.update(n.outputs)
    return names


def _ir_version_for(opsets: Mapping[str, int]) -> int:
    try:
        return helper.find_min_ir_version_for(
            [helper.make_opsetid(d, v) for d, v in opsets.items()], ignore_unknown=True)
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
            proto = _clone(proto)
            proto.name = t.name
        return proto
    proto = numpy_helper.from_array(np.asarray(t.data), t.name)
    if t.elem_type and proto.data_type != t.elem_type and t.elem_type in _SIMPLE_TENSOR_TYPES:
        proto = numpy_helper.from_array(np.asarray(t.data).astype(dtypes.numpy_dtype(t.elem_type)), t.name)
    return proto


def _node_proto(n) -> onnx.NodeProto:
    name = n.meta.get("onnx_name", n.name)
    p = helper.make_node(n.op_type, list(n.inputs), list(n.outputs), name=name or None,
                         domain=n.domain or None, doc_string=n.meta.get("doc_string"))
    if n.meta.get("overload"):
        p.overload = n.meta["overload"]
    for k, v in n.meta.get("metadata_props", []):
        p.metadata_props.add(key=k, value=v)
    for key, value in n.attrs.items():
        p.attribute.append(_attr_proto(key, value, n.attr_types.get(key)))
    return p


def _attr_proto(key: str, value: Any, attr_type: int | None) -> AttributeProto:
    if isinstance(value, RawAttribute):
        a = _clone(value.proto)
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


def _value_info(graph: Graph, name: str) -> onnx.ValueInfoProto:
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


# ---------------------------------------------------------------------- shapes
def infer_shapes(graph: Graph) -> None:
    """Run ONNX shape inference and record every inferred type and shape on the graph.

    Intermediate shapes are re-derived from the graph inputs and the operators, so
    after a transform they are fresh. Tensors produced by ops of unknown domains keep
    the types the source model declared for them.
    """
    model = to_proto(graph, value_info=False)
    keep = []
    for n in graph.nodes:
        if n.domain not in STANDARD_DOMAINS:
            keep.extend(o for o in n.outputs if o and graph.tensors.get(o) and graph.tensors[o].meta.get("declared"))
    model.graph.value_info.extend(_value_info(graph, o) for o in keep)
    if sum(t.data.nbytes for t in graph.tensors.values() if t.data is not None) > _EXTERNAL_THRESHOLD:
        inferred = _infer_large(model)
    else:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name in graph.tensors or graph.producer(vi.name) is not None:
            t = graph.tensor(vi.name)
            if vi.type.HasField("tensor_type"):
                tt = vi.type.tensor_type
                if tt.elem_type:
                    t.elem_type = tt.elem_type
                if tt.HasField("shape"):
                    shape = tuple(_read_dim(d) for d in tt.shape.dim)
                    if t.shape is None or not _more_known(t.shape, shape):
                        t.shape = shape
            elif vi.type.WhichOneof("value") and vi.name not in graph.outputs:
                t.meta["type_proto"] = _clone(vi.type)


def _more_known(old: tuple, new: tuple) -> bool:
    """True if ``old`` pins down strictly more than ``new`` (keep the old one)."""
    if len(old) != len(new):
        return False
    return sum(isinstance(d, int) for d in old) > sum(isinstance(d, int) for d in new)


def _infer_large(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference for a model over protobuf's 2 GB limit, through a file."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "m.onnx"), os.path.join(d, "inferred.onnx")
        onnx.save_model(model, src, save_as_external_data=True, location="m.data", size_threshold=1024)
        onnx.shape_inference.infer_shapes_path(src, dst, check_type=False, strict_mode=False, data_prop=True)
        return onnx.load(dst, load_external_data=False)
