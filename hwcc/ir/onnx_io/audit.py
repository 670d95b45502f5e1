"""Checks that refuse a malformed or hostile ``ModelProto`` before the IR is built.

The whole model is audited: text fields are UTF-8, tensor dims are not negative and fit
the tensor's data, each tensor has one producer, the nodes form no cycle, a sparse
initializer's indices fit its dims. Errors of the third-party parsers are wrapped
(:func:`foreign`), so a bad file ends in a :class:`~hwcc.errors.ModelLoadError` that
says what is wrong and where, never in an exception from onnx, protobuf or numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import SparseTensorProto, TensorProto

from hwcc.errors import ModelLoadError
from hwcc.ir.onnx_io.protos import short

REEXPORT = "the file may be truncated, damaged or hand-edited; re-export it from your framework"
# Sparse initializers are expanded to dense arrays; their dims are the file's word, not its
# size, so dense sizes above this (all sparse initializers together) are refused before
# numpy is asked for the memory: a file of a few bytes must not make hwcc hold gigabytes.
MAX_DENSE_BYTES = 2**30
_TYPED_DATA_FIELDS = (
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


@contextmanager
def foreign(what: str, hint: str = REEXPORT) -> Iterator[None]:
    """Report an error of onnx, protobuf or numpy parsing a malformed model as a
    :class:`ModelLoadError` that says ``what`` failed, with the original type and message.

    Only third-party calls on the model's contents go inside: they raise bare
    ``Exception``, ``ValueError``, ``KeyError``, ``MemoryError``, onnx's C++ errors ...
    for bad input, so no narrower class catches them all.
    """
    try:
        yield
    except Exception as e:
        raise ModelLoadError(f"{what} ({type(e).__name__}: {short(str(e), 300)})", hint) from e


def audit(model: onnx.ModelProto, source: str) -> list[tuple[str, TensorProto]]:
    """Check every message of the model, and return the tensors that keep their data in
    external files, with where they are.

    The walk covers subgraphs, functions, attribute tensors, sparse tensors and training
    graphs, so no corner of the model escapes the checks: text fields are UTF-8
    (:func:`_check_text`), tensor dims are not negative and fit the tensor's data
    (:func:`check_tensor_size`).
    """
    external = []
    stack: list[tuple[str, Message]] = [("", model)]
    while stack:
        where, msg = stack.pop()
        if isinstance(msg, (TensorProto, SparseTensorProto)) and any(d < 0 for d in msg.dims):
            raise ModelLoadError(
                f"{source}: the tensor at {where} has negative dims {list(msg.dims)}", REEXPORT
            )
        if isinstance(msg, TensorProto) and msg.data_location == TensorProto.EXTERNAL:
            external.append((where, msg))
        elif isinstance(msg, TensorProto):
            check_tensor_size(msg, where, source)
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
    exempt: they are only comments, read with the bad bytes replaced
    (:func:`hwcc.ir.onnx_io.protos.text`)."""
    if fd.type != fd.TYPE_STRING or fd.name == "doc_string":
        return
    for v in (value,) if isinstance(value, (str, bytes)) else value:
        if isinstance(v, bytes):
            field = f"{where}.{fd.name}" if where else fd.name
            raise ModelLoadError(
                f"{source}: {field} is not valid UTF-8 text ({short(v)!r})",
                "ONNX names are UTF-8; re-export the model, or rename it with "
                "the onnx Python package",
            )


def check_tensor_size(t: TensorProto, where: str, source: str) -> None:
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
        raise ModelLoadError(
            f"{source}: the tensor {short(t.name)!r} at {where} has dims "
            f"{list(t.dims)} ({elements} elements) but {stored} bytes or values "
            "of data",
            REEXPORT,
        )


def node_label(n: onnx.NodeProto, i: int) -> str:
    """How a message names node ``i`` of a graph: its name and op, or its index and op."""
    if n.name:
        return f"{short(n.name)!r} ({short(n.op_type)})"
    return f"#{i} ({short(n.op_type)})"


def check_dataflow(
    nodes: Sequence[onnx.NodeProto], given: set[str], refs: list[set[str]], source: str
) -> None:
    """Refuse nodes that do not form a dataflow graph: a tensor computed by two nodes, or
    computed although it is an initializer or a graph input, or nodes in a cycle. The IR
    holds these as invariants, so the model is checked before the IR is built.

    Args:
        nodes: the nodes of the main graph.
        given: the names of the graph inputs and initializers.
        refs: for each node, the outer names its subgraphs read.
        source: the model's name for messages.
    """
    hint = "each tensor must be computed once, before it is read; re-export the model"
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if not o:
                continue
            if o in producer:
                first = producer[o]
                raise ModelLoadError(
                    f"tensor {short(o)!r} of {source} is computed by two nodes, "
                    f"{node_label(nodes[first], first)} and {node_label(n, i)}",
                    hint,
                )
            if o in given:
                raise ModelLoadError(
                    f"tensor {short(o)!r} of {source} is computed by node "
                    f"{node_label(n, i)} but is also an initializer or a graph "
                    "input",
                    hint,
                )
            producer[o] = i
    preds = [{producer[t] for t in (*n.input, *r) if t in producer} for n, r in zip(nodes, refs)]
    cycle = _find_cycle(preds)
    if cycle and len(cycle) == 2:
        raise ModelLoadError(
            f"node {node_label(nodes[cycle[0]], cycle[0])} of {source} reads its own output", hint
        )
    if cycle:
        path = " -> ".join(node_label(nodes[i], i) for i in cycle)
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
    return list(reversed(walk[seen[i] :] + [i]))


def check_sparse(
    values: np.ndarray, idx: np.ndarray, dims: tuple[int, ...], where: str, budget: int
) -> None:
    """Refuse a sparse tensor whose dense form is over ``budget`` bytes, or whose indices
    are not ``[NNZ]`` linear positions or ``[NNZ, rank]`` coordinates inside ``dims``."""
    dense_bytes = math.prod(dims) * values.dtype.itemsize
    if dense_bytes > budget:
        raise ModelLoadError(
            f"{where} has dims {list(dims)}: {dense_bytes} bytes once dense, more "
            f"than the {MAX_DENSE_BYTES >> 30} GiB hwcc expands all sparse "
            "initializers to together",
            "store large constants as dense initializers",
        )
    nnz = values.size
    shape_ok = idx.shape in ((nnz,), (nnz, len(dims))) and not (idx.ndim == 2 and not dims)
    if values.ndim != 1 or idx.dtype.kind not in "iu" or not shape_ok:
        raise ModelLoadError(
            f"{where} has {values.shape} values and {idx.dtype} indices of shape "
            f"{idx.shape}; ONNX wants [NNZ] values and int64 indices [NNZ] or "
            f"[NNZ, {len(dims)}]",
            REEXPORT,
        )
    bounds = np.asarray(dims if idx.ndim == 2 else (math.prod(dims),), dtype=object)
    if idx.size and (idx.min() < 0 or np.any(idx.max(axis=0).astype(object) >= bounds)):
        raise ModelLoadError(f"{where} has indices outside its dims {list(dims)}", REEXPORT)
