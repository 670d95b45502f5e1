"""The loader fuzzer's mutations of what a model declares about its tensors: value-info
dims and types, tensor dims, types, values and data, external data locations, and sparse
initializers. Each takes the model and a ``random.Random`` and says what it did."""

from __future__ import annotations

import numpy as np
from fuzz_bases import DATA, SECRET
from fuzz_protos import INTS, graphs_of, is_external, tensors_of, value_infos_of
from onnx import TensorProto, numpy_helper

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


def m_dim(m, rng):
    vis = [v for v in value_infos_of(m) if v.type.HasField("tensor_type")]
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
    vis = value_infos_of(m)
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
    ts = tensors_of(m)
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
    ts = tensors_of(m)
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
        for t in tensors_of(m)
        if t.data_type == TensorProto.INT64 and t.raw_data and not is_external(t)
    ]
    if not ts:
        return "tensor values: none"
    t = rng.choice(ts)
    values = numpy_helper.to_array(t).copy()
    values.flat[rng.randrange(values.size)] = rng.choice(INTS)
    t.raw_data = values.tobytes()
    return f"tensor values of {t.name!r} -> {values.ravel().tolist()[:8]}"


def m_tensor_data(m, rng):
    ts = tensors_of(m)
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
    ts = tensors_of(m)
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


def m_sparse(m, rng):
    sps = [s for g in graphs_of(m) for s in g.sparse_initializer]
    if not sps:
        return "sparse: none"
    s = rng.choice(sps)
    how = rng.choice(["index", "dims", "drop-indices", "float-indices", "values-shape", "rank"])
    idx = (
        numpy_helper.to_array(s.indices)
        if s.indices.dims and not is_external(s.indices)
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
