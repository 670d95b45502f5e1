"""ONNX ``ModelProto`` to :class:`hwcc.ir.Graph` and back.

This is the only module that builds or reads ONNX protos for graphs. Contract:
``save(load(m))`` gives a model that passes ``onnx.checker.check_model(full_check=True)``
whenever ``m`` does, and runs in onnxruntime with outputs identical to ``m``'s.

What it takes care of:

1. Shape inference (``onnx.shape_inference`` with data propagation) fills in the shape
   of every intermediate tensor it can. Data propagation stays off for a model with a
   1-D tensor of over 2**20 elements: it would cost gigabytes (:func:`_data_prop_is_safe`).
2. Dynamic dimensions of the graph inputs must be fixed, from ``input_shapes`` (the
   CLI's ``--input-shape NAME:1x3x224x224``); a model with an unfixed one is refused
   with a message that names the input and the flag to use. Some exporters (paddle2onnx)
   write a dynamic dimension as ``dim_value: -1``: any negative ``dim_value`` is one.
3. External data is read only from inside the model's own folder: a location that is
   absolute, or leads out of the folder (``..``, a symbolic link), is refused.
   Only regular files are read: a named pipe or a device would block or never end.
4. Node annotations that transforms leave in ``node.meta`` (``winograd``, ``low_rank``,
   ...) are kept in the model's metadata (``hwcc.node_annotations``) and restored.
5. What the IR does not interpret passes through unchanged: ops of unknown domains,
   subgraph attributes (If/Loop/Scan bodies), functions, non-tensor types (sequences,
   optionals, maps), training info, metadata. Initializers that no transform touched
   are written back from their original protos, bit for bit.
6. A malformed file is refused with a :class:`ModelLoadError` that says what is wrong
   and where, never with an exception from onnx, protobuf or numpy: the whole model is
   audited (text fields are UTF-8, tensor dims are not negative, each tensor has one
   producer, the nodes form no cycle, a sparse initializer's indices fit its dims) before
   the IR is built, and errors of the third-party parsers are wrapped (:func:`_foreign`).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.inliner
from google.protobuf.message import Message
from onnx import AttributeProto, SparseTensorProto, TensorProto, helper, numpy_helper

from hwcc.ir import dtypes
from hwcc.errors import HwccError, ModelLoadError, json_kind
from hwcc.ir import Dim, Graph

__all__ = ["load", "save", "from_proto", "to_proto", "infer_shapes", "parse_input_shape"]

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training")
# Node annotations (``node.meta``) travel in the model's metadata as JSON, node name ->
# {key: value}, so a lowered or factorised model keeps its flags for cost models.
ANNOTATIONS_KEY = "hwcc.node_annotations"
_NODE_META_FROM_ONNX = ("onnx_name", "doc_string", "metadata_props", "overload")
_EXTERNAL_THRESHOLD = 1_800_000_000  # bytes of initializers above which save() goes external
_SIMPLE_TENSOR_TYPES = set(dtypes._TO_NUMPY) - {dtypes.STRING}
_MAX_MODEL_BYTES = 2**31 - 1  # protobuf cannot parse a larger message
# Sparse initializers are expanded to dense arrays; their dims are the file's word, not its
# size, so dense sizes above this (all sparse initializers together) are refused before
# numpy is asked for the memory: a file of a few bytes must not make hwcc hold gigabytes.
_MAX_DENSE_BYTES = 2**30
_DATA_PROP_MAX_LENGTH = 2**20  # see _data_prop_is_safe
# Tensors whose values shape inference may read (Reshape's shape, Pad's pads, Resize's
# scales...) have a handful of elements: one per dimension, or two.
_SHAPE_TENSOR_MAX = 1024
_TYPED_DATA_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
_REEXPORT = "the file may be truncated, damaged or hand-edited; re-export it from your framework"
_ANNOTATIONS_HINT = f"remove the {ANNOTATIONS_KEY} metadata entry: hwcc writes it, and it holds only hwcc's own notes"


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
    _load_external_data(_audit(model, str(path)), path)
    return _build(model, input_shapes or {}, allow_dynamic, str(path))


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
    model = _proto_to_write(graph, path)
    big = sum(t.data.nbytes for t in graph.tensors.values() if t.data is not None) > _EXTERNAL_THRESHOLD
    tmp = _new_temp_file(path)
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


def _proto_to_write(graph: Graph, path: Path) -> onnx.ModelProto:
    """``to_proto(graph)``, refusing text that ONNX cannot store: names and doc strings are
    UTF-8 in the file, and a Python string with lone surrogates has no UTF-8 form."""
    try:
        return to_proto(graph)
    except UnicodeError as e:
        raise HwccError(
            f"cannot write {path}: the text {_short(e.object)!r} in the graph is not valid UTF-8 ({e.reason})",
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
@contextmanager
def _foreign(what: str, hint: str = _REEXPORT) -> Iterator[None]:
    """Report an error of onnx, protobuf or numpy parsing a malformed model as a
    :class:`ModelLoadError` that says ``what`` failed, with the original type and message.

    Only third-party calls on the model's contents go inside: they raise bare
    ``Exception``, ``ValueError``, ``KeyError``, ``MemoryError``, onnx's C++ errors ...
    for bad input, so no narrower class catches them all.
    """
    try:
        yield
    except Exception as e:
        raise ModelLoadError(f"{what} ({type(e).__name__}: {_short(str(e), 300)})", hint) from e


def _short(text: str | bytes, limit: int = 80) -> str | bytes:
    """``text`` cut to ``limit`` characters, so that a hostile name keeps a message readable."""
    return text if len(text) <= limit else text[:limit] + (b"..." if isinstance(text, bytes) else "...")


def _read_model(path: Path) -> onnx.ModelProto:
    size = _model_file_size(path)
    if size > _MAX_MODEL_BYTES:
        raise ModelLoadError(f"{path} is {size} bytes, more than protobuf's 2 GB limit for an ONNX file",
                             "keep the weights of a model this large in external data (a .data file beside it)")
    data = _read_regular_file(path)
    with _foreign(f"{path} is not a readable ONNX model",
                  "the file may be truncated or of another format; re-export it from your framework"):
        model = onnx.load_model_from_string(data)
    if not model.opset_import or model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelLoadError(
            f"{path} is not an ONNX model (no graph, IR version or opset imports)",
            "the file may be truncated or of another format; re-export it from your framework",
        )
    return model


def _model_file_size(path: Path) -> int:
    """The size of the model file, refusing what is not a regular file before it is opened:
    reading a named pipe blocks until a writer comes, a device may never end."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ModelLoadError(f"model file not found: {path}",
                             "check the path, or use zoo:NAME (see 'hwcc zoo list')") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise ModelLoadError(f"cannot read the model file {_short(str(path))}: {e}", "check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelLoadError(f"{path} is a folder, not an ONNX file", "give the path of the .onnx file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelLoadError(f"{path} is not a regular file ({_file_kind(st.st_mode)})",
                             "give the path of an .onnx file; copy a model from a pipe to a file first")
    return st.st_size


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a named pipe", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "not a plain file")


def _read_regular_file(path: Path) -> bytes:
    """The bytes of ``path``, opened without blocking and checked again once open, in case
    the file was replaced by a pipe after :func:`_model_file_size` looked at it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ModelLoadError(f"cannot open the model file {path}: {e.strerror}", "check its permissions") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ModelLoadError(f"{path} is not a regular file ({_file_kind(mode)})",
                                 "give the path of an .onnx file")
        try:
            return f.read()
        except OSError as e:
            raise ModelLoadError(f"cannot read the model file {path}: {e.strerror}") from None


def _audit(model: onnx.ModelProto, source: str) -> list[tuple[str, TensorProto]]:
    """Check every message of the model, and return the tensors that keep their data in
    external files, with where they are.

    The walk covers subgraphs, functions, attribute tensors, sparse tensors and training
    graphs, so no corner of the model escapes the checks: text fields are UTF-8
    (:func:`_check_text`), tensor dims are not negative and fit the tensor's data
    (:func:`_check_tensor_size`).
    """
    external = []
    stack: list[tuple[str, Message]] = [("", model)]
    while stack:
        where, msg = stack.pop()
        if isinstance(msg, (TensorProto, SparseTensorProto)) and any(d < 0 for d in msg.dims):
            raise ModelLoadError(f"{source}: the tensor at {where} has negative dims {list(msg.dims)}", _REEXPORT)
        if isinstance(msg, TensorProto) and msg.data_location == TensorProto.EXTERNAL:
            external.append((where, msg))
        elif isinstance(msg, TensorProto):
            _check_tensor_size(msg, where, source)
        children = []
        for fd, value in msg.ListFields():
            if fd.message_type is None:
                _check_text(fd, value, where, source)
                continue
            here = f"{where}.{fd.name}" if where else fd.name
            if isinstance(value, Message):
                children.append((here, value))
            else:
                children.extend((f"{here}[{i}]", v) for i, v in enumerate(value))
        stack.extend(reversed(children))
    return external


def _check_text(fd: Any, value: Any, where: str, source: str) -> None:
    """Refuse a string field that is not UTF-8: protobuf hands one to Python as ``bytes``,
    which would end up as a node or tensor name and break far from here. Doc strings are
    exempt: they are only comments, read with the bad bytes replaced (:func:`_text`)."""
    if fd.type != fd.TYPE_STRING or fd.name == "doc_string":
        return
    for v in (value,) if isinstance(value, (str, bytes)) else value:
        if isinstance(v, bytes):
            raise ModelLoadError(f"{source}: {where + '.' if where else ''}{fd.name} is not valid UTF-8 text "
                                 f"({_short(v)!r})", "ONNX names are UTF-8; re-export the model, or rename "
                                 "it with the onnx Python package")


def _check_tensor_size(t: TensorProto, where: str, source: str) -> None:
    """Refuse a tensor whose dims do not fit its data, by far.

    onnx's C++ shape inference allocates what the dims say before it compares them with
    the data: four bytes with dims ``[2**31]`` cost it minutes and gigabytes. And external
    data without a length is read to the end of its file, whatever the dims; checked as
    each tensor is read, a model cannot keep many such copies of a large file. The
    bounds are the densest and the widest element ONNX has (four 2-bit elements a byte or
    a typed-field entry; 16 bytes of complex128); the exact size is checked where the
    tensor is converted.
    """
    elements = math.prod(t.dims)
    stored = len(t.raw_data) + sum(len(getattr(t, f)) for f in _TYPED_DATA_FIELDS)
    if elements > 4 * stored or len(t.raw_data) > 16 * elements:
        raise ModelLoadError(f"{source}: the tensor {_short(t.name)!r} at {where} has dims {list(t.dims)} "
                             f"({elements} elements) but {stored} bytes or values of data", _REEXPORT)


def _text(value: str | bytes) -> str:
    """A doc string as text: a malformed one (``bytes``) with its bad bytes replaced."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _load_external_data(tensors: list[tuple[str, TensorProto]], path: Path) -> None:
    """Read the data of ``tensors`` (from :func:`_audit`) into them, from files in the
    folder of the model at ``path``."""
    base = Path(os.path.realpath(path.parent))
    for _, t in tensors:
        _check_external_location(t, base, path)
    for where, t in tensors:
        with _foreign(f"cannot read external data of tensor {t.name!r} of {path}",
                      "the .data file may be truncated or belong to another version of the model"):
            onnx.external_data_helper.load_external_data_for_tensor(t, str(base))
        _check_tensor_size(t, where, str(path))


def _check_external_location(t: TensorProto, base: Path, path: Path) -> None:
    """Refuse a data location that leaves the model's folder or names no regular file."""
    loc = {e.key: e.value for e in t.external_data}.get("location", "")
    if "\0" in loc:
        raise ModelLoadError(f"tensor {t.name!r} of {path} keeps its data at {_short(loc)!r}, "
                             "a name with a NUL byte", _REEXPORT)
    try:
        target = Path(os.path.realpath(base / loc))
        inside = not os.path.isabs(loc) and os.path.commonpath([base, target]) == str(base)
        is_file = inside and target.is_file()
    except OSError as e:
        raise ModelLoadError(f"external data {_short(loc)!r} of tensor {t.name!r} in {path} cannot be "
                             f"opened: {e.strerror}", _REEXPORT) from None
    if not inside:
        raise ModelLoadError(
            f"tensor {t.name!r} of {path} keeps its data at {_short(loc)!r}, outside the model's folder {base}",
            "external data must sit in the model's own folder; move the data file there",
        )
    if not is_file:
        raise ModelLoadError(
            f"external data file {_short(loc)!r} for tensor {t.name!r} is missing from {base}",
            "copy the .data file that came with the model next to it",
        )


def from_proto(
    model: onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    allow_dynamic: bool = False,
    source: str = "<model>",
) -> Graph:
    """Build the IR from a ``ModelProto`` (with its external data already loaded).

    Raises:
        ModelLoadError: the model is malformed (module docstring, point 6), keeps tensor
            data in external files, or has a dynamic input dimension that is not fixed.
    """
    if _audit(model, source):
        raise ModelLoadError(f"{source} keeps tensor data in external files, which a model given in memory "
                             "cannot reach safely", "give hwcc the model's path, so that it reads the data "
                             "from the model's own folder")
    return _build(model, input_shapes or {}, allow_dynamic, source)


def _build(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]], allow_dynamic: bool,
           source: str) -> Graph:
    """The IR of an audited model (:func:`_audit`) whose external data is loaded."""
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
        doc_string=_text(model.doc_string),
        metadata_props=[(p.key, p.value) for p in model.metadata_props if p.key != ANNOTATIONS_KEY],
        functions=[_clone(f) for f in model.functions],
        training_info=[_clone(t) for t in model.training_info],
        graph_doc_string=_text(mg.doc_string),
        graph_metadata_props=[(p.key, p.value) for p in mg.metadata_props],
        quantization_annotation=[_clone(q) for q in mg.quantization_annotation],
        sparse_initializers=[_clone(s) for s in mg.sparse_initializer],
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
    _fix_input_shapes(g, input_shapes, allow_dynamic, source)
    _read_nodes(g, model, source)
    if not _is_topological(g):
        g.toposort()
    try:
        g.meta["data_prop"] = _data_prop_is_safe(g)
        infer_shapes(g)
    except onnx.shape_inference.InferenceError as e:
        raise ModelLoadError(f"shape inference failed on {source}: {_short(str(e), 300)}",
                             "check the model with onnx.checker, or fix the input shapes") from None
    return g


def _read_initializers(g: Graph, mg: onnx.GraphProto, source: str) -> None:
    for init in mg.initializer:
        t = g.tensor(init.name)
        t.data = _to_array(init, source)
        t.elem_type = init.data_type
        t.shape = tuple(int(d) for d in init.dims)
        t.meta["onnx_proto"] = (t.data, _strip_external(init))
    budget = _MAX_DENSE_BYTES
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
    _check_dataflow(nodes, given, refs, source)
    defined = given | {o for n in nodes for o in n.output if o}
    notes = _read_annotations(model, source)
    prev = None  # keep the source order: it is usually topological already
    for i, n in enumerate(nodes):
        where = f"node {_node_label(n, i)} of {source}"
        attrs, types = {}, {}
        for a in n.attribute:
            attrs[a.name], types[a.name] = _read_attr(a, where)
        name, meta = _node_name_and_meta(g, n, i)
        meta.update(notes.get(n.name or name, {}))
        prev = g.add_node(n.op_type, list(n.input), list(n.output), attrs, name=name, domain=n.domain,
                          meta=meta, attr_types=types, implicit_inputs=tuple(sorted(refs[i] & defined)),
                          after=prev)


def _node_name_and_meta(g: Graph, n: onnx.NodeProto, i: int) -> tuple[str, dict[str, Any]]:
    """The IR name of ``n`` (unique, generated if it has none) and what the IR keeps of
    the ONNX node beside its dataflow: its original name, doc string, metadata, overload."""
    name = n.name
    meta: dict[str, Any] = {}
    if not name or g.has_node(name):
        meta["onnx_name"] = name
        name = g.unique_name(name or f"{n.op_type.lower()}_{i}")
    if n.doc_string:
        meta["doc_string"] = _text(n.doc_string)
    if n.metadata_props:
        meta["metadata_props"] = [(p.key, p.value) for p in n.metadata_props]
    if n.overload:
        meta["overload"] = n.overload
    return name, meta


def _node_label(n: onnx.NodeProto, i: int) -> str:
    return f"{_short(n.name)!r} ({_short(n.op_type)})" if n.name else f"#{i} ({_short(n.op_type)})"


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


def _check_dataflow(nodes: Sequence[onnx.NodeProto], given: set[str], refs: list[set[str]], source: str) -> None:
    """Refuse nodes that do not form a dataflow graph: a tensor computed by two nodes, or
    computed although it is an initializer or a graph input, or nodes in a cycle. The IR
    holds these as invariants, so the model is checked before the IR is built."""
    hint = "each tensor must be computed once, before it is read; re-export the model"
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if not o:
                continue
            if o in producer:
                raise ModelLoadError(f"tensor {_short(o)!r} of {source} is computed by two nodes, "
                                     f"{_node_label(nodes[producer[o]], producer[o])} and {_node_label(n, i)}", hint)
            if o in given:
                raise ModelLoadError(f"tensor {_short(o)!r} of {source} is computed by node {_node_label(n, i)} "
                                     "but is also an initializer or a graph input", hint)
            producer[o] = i
    preds = [{producer[t] for t in (*n.input, *r) if t in producer} for n, r in zip(nodes, refs)]
    cycle = _find_cycle(preds)
    if cycle and len(cycle) == 2:
        raise ModelLoadError(f"node {_node_label(nodes[cycle[0]], cycle[0])} of {source} reads its own output", hint)
    if cycle:
        path = " -> ".join(_node_label(nodes[i], i) for i in cycle)
        raise ModelLoadError(f"the nodes of {source} form a cycle: {path}", hint)


def _find_cycle(preds: list[set[int]]) -> list[int] | None:
    """A cycle of the graph whose node ``i`` reads from the nodes ``preds[i]``, as the
    nodes along it in dataflow order with the first repeated at the end; None if acyclic.

    Kahn's algorithm takes away the nodes that do not depend on a cycle; every node left
    reads from another one left, so walking back from any of them must come round.
    """
    users: list[list[int]] = [[] for _ in preds]
    waiting = [len(p) for p in preds]
    for i, ps in enumerate(preds):
        for p in ps:
            users[p].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    while ready:
        for u in users[ready.pop()]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    left = [i for i, w in enumerate(waiting) if w > 0]
    if not left:
        return None
    walk, seen, i = [], {}, left[0]
    while i not in seen:
        seen[i] = len(walk)
        walk.append(i)
        i = next(p for p in preds[i] if waiting[p] > 0)
    return list(reversed(walk[seen[i]:] + [i]))


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
            except (ValueError, RecursionError):  # not JSON, a number too long, nested too deep
                raise ModelLoadError(f"{source}: the {ANNOTATIONS_KEY} metadata is not valid JSON",
                                     _ANNOTATIONS_HINT) from None
            _check_annotations(notes, source)
            return notes
    return {}


def _check_annotations(notes: Any, source: str) -> None:
    """hwcc writes node name -> {key: value}; anything else did not come from hwcc, and
    merged into ``node.meta`` it would break far from here."""
    problem = _annotations_problem(notes)
    if problem:
        raise ModelLoadError(f"{source}: the {ANNOTATIONS_KEY} metadata must map node names to objects "
                             f"of notes, but {problem}", _ANNOTATIONS_HINT)


def _annotations_problem(notes: Any) -> str | None:
    if not isinstance(notes, dict):
        return f"it is {json_kind(type(notes))}"
    for node, v in notes.items():
        if not isinstance(v, dict):
            return f"node {_short(node)!r} has {json_kind(type(v))}"
        reserved = sorted(set(v) & set(_NODE_META_FROM_ONNX))
        if reserved:
            return f"node {_short(node)!r} sets {reserved[0]!r}, which comes from the ONNX node itself"
    return None


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
                    f"give {len(t.shape)} dims, e.g. {name}:{'x'.join(map(str, _suggested_shape(t.shape)))}",
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
                f"fix it with --input-shape {name}:{'x'.join(map(str, _suggested_shape(t.shape)))} "
                "(the dynamic dims, named or ?, are yours to choose; 1 for the batch, the rest a guess)",
            )


def _suggested_shape(shape: Sequence[Dim] | None) -> tuple[int, ...]:
    """A concrete shape to offer for a dynamic input: the known dims as they are, a batch
    of 1, 224x224 for the two spatial dims of a 4-D input that leaves both open (an image),
    1 for any other open dim."""
    if shape is None:
        return (1,)
    dims = [d if isinstance(d, int) else None for d in shape]
    if len(dims) == 4 and dims[2] is None and dims[3] is None:
        dims[2:] = [224, 224]
    return tuple(1 if d is None else d for d in dims)


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
        t.meta["doc_string"] = _text(vi.doc_string)


def _read_dim(d: onnx.TensorShapeProto.Dimension) -> Dim:
    """A dimension; a negative ``dim_value`` (paddle2onnx writes -1) is a dynamic one."""
    if d.HasField("dim_value"):
        return int(d.dim_value) if d.dim_value >= 0 else None
    if d.HasField("dim_param"):
        return d.dim_param
    return None


def _read_attr(a: AttributeProto, where: str) -> tuple[Any, int]:
    """The value of attribute ``a`` of the node ``where`` names, and its type."""
    T = AttributeProto
    if a.ref_attr_name or a.type in (T.GRAPH, T.GRAPHS, T.TYPE_PROTO, T.TYPE_PROTOS,
                                     T.SPARSE_TENSOR, T.SPARSE_TENSORS, T.TENSORS, T.UNDEFINED):
        return RawAttribute(_clone(a)), a.type
    if a.type == T.TENSOR and a.t.data_type not in _SIMPLE_TENSOR_TYPES:
        return RawAttribute(_clone(a)), a.type
    with _foreign(f"attribute {_short(a.name)!r} of {where} cannot be read"):
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


def _to_array(t: TensorProto, source: str) -> np.ndarray:
    with _foreign(f"initializer {_short(t.name)!r} of {source} cannot be read"):
        return numpy_helper.to_array(t)


def _strip_external(t: TensorProto) -> TensorProto:
    c = _clone(t)
    if c.data_location == TensorProto.EXTERNAL:
        c.data_location = TensorProto.DEFAULT
        del c.external_data[:]
    return c


def _sparse_to_dense(sp: SparseTensorProto, source: str, budget: int) -> np.ndarray:
    """The dense array of a sparse initializer, after checking that its indices fit its
    dims and that the dense array takes at most ``budget`` bytes (the dims are only the
    file's word: ``[2**40]`` would ask numpy for terabytes)."""
    where = f"sparse initializer {_short(sp.values.name)!r} of {source}"
    with _foreign(f"{where} cannot be read"):
        values = numpy_helper.to_array(sp.values)
        idx = numpy_helper.to_array(sp.indices)
    dims = tuple(int(d) for d in sp.dims)
    _check_sparse(values, idx, dims, where, budget)
    dense = np.zeros(math.prod(dims), dtype=values.dtype)
    if idx.ndim == 1:
        dense[idx] = values
    else:
        dense[np.ravel_multi_index(idx.T, dims)] = values
    return dense.reshape(dims)


def _check_sparse(values: np.ndarray, idx: np.ndarray, dims: tuple[int, ...], where: str, budget: int) -> None:
    """Refuse a sparse tensor whose dense form is over ``budget`` bytes, or whose indices
    are not ``[NNZ]`` linear positions or ``[NNZ, rank]`` coordinates inside ``dims``."""
    dense_bytes = math.prod(dims) * values.dtype.itemsize
    if dense_bytes > budget:
        raise ModelLoadError(f"{where} has dims {list(dims)}: {dense_bytes} bytes once dense, more than the "
                             f"{_MAX_DENSE_BYTES >> 30} GiB hwcc expands all sparse initializers to together",
                             "store large constants as dense initializers")
    nnz = values.size
    if values.ndim != 1 or idx.dtype.kind not in "iu" or idx.shape not in ((nnz,), (nnz, len(dims))) \
            or (idx.ndim == 2 and not dims):
        raise ModelLoadError(f"{where} has {values.shape} values and {idx.dtype} indices of shape {idx.shape}; "
                             f"ONNX wants [NNZ] values and int64 indices [NNZ] or [NNZ, {len(dims)}]", _REEXPORT)
    bounds = np.asarray(dims if idx.ndim == 2 else (math.prod(dims),), dtype=object)
    if idx.size and (idx.min() < 0 or np.any(idx.max(axis=0).astype(object) >= bounds)):
        raise ModelLoadError(f"{where} has indices outside its dims {list(dims)}", _REEXPORT)


def _clone(p):
    c = type(p)()
    c.CopyFrom(p)
    return c


# ---------------------------------------------------------------------- writing
def to_proto(graph: Graph, *, value_info: bool = True, weights: bool = True) -> onnx.ModelProto:
    """Build a ``ModelProto`` from the IR.

    Args:
        graph: the graph.
        value_info: write the intermediate types the source model declared.
        weights: write every initializer. False writes those of more than
            ``_SHAPE_TENSOR_MAX`` elements as typed graph inputs, without their data: a
            model for shape inference without data propagation, which reads the values of
            small tensors only (shapes, axes, pads, scales), at a fraction of the size.
    """
    m = graph.meta
    sparse_names = {n for n, t in graph.tensors.items() if t.meta.get("sparse")}
    dense = {n: t for n, t in graph.tensors.items() if t.data is not None and n not in sparse_names}
    typed_only = [] if weights else [n for n, t in dense.items() if t.data.size > _SHAPE_TENSOR_MAX
                                      and n not in graph.inputs]
    inits = [_tensor_proto(t) for n, t in dense.items() if n not in typed_only]
    nodes = [_node_proto(n) for n in graph.nodes]
    vis = []
    if value_info:
        vis = [_value_info(graph, n) for n, t in graph.tensors.items()
               if t.meta.get("declared") and n not in graph.inputs and n not in graph.outputs
               and (t.data is None) and n in _live_names(graph)]
    g = helper.make_graph(
        nodes,
        graph.name,
        [_value_info(graph, n) for n in (*graph.inputs, *typed_only)],
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
    inferred = _onnx_shape_inference(model, _is_big(graph), graph.meta.get("data_prop", True))
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


def _is_big(graph: Graph) -> bool:
    return sum(t.data.nbytes for t in graph.tensors.values() if t.data is not None) > _EXTERNAL_THRESHOLD


def _data_prop_is_safe(graph: Graph) -> bool:
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
            for sg in ([a.g] if a.type == AttributeProto.GRAPH else a.graphs):
                yield from _all_graphs(sg)


def _onnx_shape_inference(model: onnx.ModelProto, big: bool, data_prop: bool) -> onnx.ModelProto:
    with _inference_errors():
        if big:
            return _infer_large(model, data_prop)
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=data_prop)


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
        onnx.save_model(model, src, save_as_external_data=True, location="m.data", size_threshold=1024)
        onnx.shape_inference.infer_shapes_path(src, dst, check_type=False, strict_mode=False, data_prop=data_prop)
        return onnx.load(dst, load_external_data=False)
