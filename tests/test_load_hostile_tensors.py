"""Hostile tensors: ``hwcc.load`` refuses each with a ModelLoadError that says what is wrong
and where, and never asks for absurd memory or reads outside the model's folder. Sparse
initializers out of range or too large once dense, raw data that is not a whole number of
elements, negative dims, dims that claim more than the data, vectors too long for onnx's
data propagation, and external data with a NUL byte, too long a name, too many bytes,
outside the folder, or kept by a model in memory."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hostile_models import make_model, raw_tensor, refused, vi, write
from onnx import TensorProto, helper, numpy_helper

import hwcc


# ---------------------------------------------------------------- sparse initializers
def _sparse_model(indices, dims, nnz=None) -> onnx.ModelProto:
    idx = np.asarray(indices, np.int64)
    values = numpy_helper.from_array(np.ones(nnz if nnz is not None else len(idx), np.float32), "s")
    sp = helper.make_sparse_tensor(values, numpy_helper.from_array(idx, ""), dims)
    return make_model([helper.make_node("Add", ["x", "s"], ["y"])], sparse=[sp])


@pytest.mark.parametrize(
    "indices, dims, match",
    [
        ([0, 5], [2], r"indices outside its dims \[2\]"),
        ([0], [0], r"indices outside its dims \[0\]"),
        ([0], [-2], r"graph.sparse_initializer\[0\] has negative dims \[-2\]"),
        ([0], [2**40], r"4398046511104 bytes once dense, more than the 1 GiB"),
        ([[0, 0], [7, 7]], [2, 2], r"indices outside its dims \[2, 2\]"),
        ([[0, 0, 0]], [2, 2], r"indices of shape \(1, 3\)"),
        ([-1], [2], "indices outside its dims"),
    ],
    ids=[
        "out-of-range",
        "zero-dim",
        "negative-dim",
        "huge",
        "2d-out-of-range",
        "2d-wrong-rank",
        "negative-index",
    ],
)
def test_bad_sparse_initializers(tmp_path, indices, dims, match):
    start = time.perf_counter()
    refused(write(tmp_path, _sparse_model(indices, dims)), match)
    assert time.perf_counter() - start < 5  # nothing was allocated for the dense form


def test_sparse_initializers_together_expand_to_at_most_a_gibibyte(tmp_path):
    half = [
        helper.make_sparse_tensor(
            numpy_helper.from_array(np.ones(1, np.float32), name),
            numpy_helper.from_array(np.array([0], np.int64), ""),
            [2**27 + 1],
        )
        for name in ("a", "b")
    ]  # 512 MiB and 4 bytes each
    m = make_model([helper.make_node("Add", ["x", "x"], ["y"])], sparse=half)
    refused(
        write(tmp_path, m),
        r"sparse initializer 'b' .* more than the 1 GiB hwcc expands all sparse "
        r"initializers to together",
    )


def test_good_sparse_initializer_still_loads(tmp_path):
    g = hwcc.load(write(tmp_path, _sparse_model([[0, 1]], [1, 2], nnz=1)))
    np.testing.assert_array_equal(g.initializer("s"), [[0, 1]])


# ---------------------------------------------------------------- raw data sizes
def test_constant_whose_raw_data_is_not_a_whole_number_of_elements(tmp_path):
    const = helper.make_node("Constant", [], ["c"], name="k", value=raw_tensor("v", b"\0" * 7))
    m = make_model([const, helper.make_node("Add", ["x", "c"], ["y"])])
    refused(
        write(tmp_path, m),
        r"attribute 'value' of node 'k' \(Constant\) of .*m.onnx cannot be read "
        r"\(ValueError: buffer size must be a multiple of element size\)",
    )


def test_initializer_whose_raw_data_is_not_a_whole_number_of_elements(tmp_path):
    m = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"])], initializer=[raw_tensor("w", b"\0" * 7)]
    )
    refused(write(tmp_path, m), r"initializer 'w' of .*m.onnx cannot be read \(ValueError")


def test_initializer_with_negative_dims(tmp_path):
    m = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        initializer=[raw_tensor("w", b"\0" * 8, dims=(-1,))],
    )
    refused(write(tmp_path, m), r"graph.initializer\[0\] has negative dims \[-1\]")


def test_a_tensor_whose_dims_claim_more_than_its_data_inside_a_function(tmp_path):
    """onnx's shape inference would allocate the 2**31 floats before noticing: refused first."""
    claim = raw_tensor("two", b"\0" * 4, dims=(2**31,))
    body = [
        helper.make_node("Constant", [], ["two"], value=claim),
        helper.make_node("Mul", ["a", "two"], ["b"]),
    ]
    f = helper.make_function("local", "Double", ["a"], ["b"], body, [helper.make_opsetid("", 17)])
    m = make_model(
        [helper.make_node("Double", ["x"], ["y"], domain="local")], opsets=[("local", 1)]
    )
    m.functions.append(f)
    start = time.perf_counter()
    refused(
        write(tmp_path, m),
        r"the tensor 'two' at functions\[0\].node\[0\].attribute\[0\].t has dims "
        r"\[2147483648\] \(2147483648 elements\) but 4 bytes or values of data",
    )
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("where", ["graph", "function"])
def test_a_vector_too_long_for_onnx_data_propagation(tmp_path, where):
    """Data propagation tracks each element of a 1-D tensor: one of 2**40 would take it
    terabytes, so shapes are inferred without it (the length itself is still known)."""
    nodes = [
        helper.make_node(
            "Constant", [], ["shape"], value=numpy_helper.from_array(np.array([2**40], np.int64))
        ),
        helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
        helper.make_node("Cast", ["zeros"], ["ints"], to=TensorProto.INT64),
        helper.make_node("Size", ["ints"], ["n"]),
        helper.make_node("Shape", ["a"], ["b"]),
    ]
    if where == "graph":
        m = make_model(nodes, [vi("a")], [vi("b", None, TensorProto.INT64)])
    else:
        f = helper.make_function("local", "F", ["a"], ["b"], nodes, [helper.make_opsetid("", 17)])
        m = make_model(
            [helper.make_node("F", ["x"], ["y"], domain="local")],
            [vi("x")],
            [vi("y", None, TensorProto.INT64)],
            opsets=[("local", 1)],
        )
        m.functions.append(f)
    start = time.perf_counter()
    g = hwcc.load(write(tmp_path, m))
    assert time.perf_counter() - start < 5
    assert g.meta["data_prop"] is False
    if where == "graph":
        assert g.tensors["ints"].shape == (2**40,)


def test_data_propagation_still_runs_on_ordinary_models():
    """A Reshape to a shape computed from Shape needs it."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Reshape", ["x", "s"], ["y"]),
    ]
    g = hwcc.load(make_model(nodes, [vi("x", (2, 3))], [vi("y", None)]))
    assert g.meta["data_prop"] is True
    assert g.tensors["y"].shape == (2, 3)


# ---------------------------------------------------------------- external data
def _external_model(tmp_path: Path, location: str, *, sparse: bool = False) -> Path:
    """A model whose weight ``w`` (or sparse values) is in ``m.data`` and then points at
    ``location``; a ``secret.data`` with the same bytes sits outside its folder."""
    d = tmp_path / "model"
    d.mkdir(parents=True)
    data = np.arange(2, dtype=np.float32).tobytes()
    (d / "m.data").write_bytes(data)
    (tmp_path / "secret.data").write_bytes(data)
    w = raw_tensor("w", b"", dims=(2,))
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value=location)
    if sparse:
        sp = helper.make_sparse_tensor(
            w, numpy_helper.from_array(np.array([0, 1], np.int64), ""), [2]
        )
        m = make_model([helper.make_node("Add", ["x", "w"], ["y"])], sparse=[sp])
    else:
        m = make_model([helper.make_node("Add", ["x", "w"], ["y"])], initializer=[w])
    return write(d, m)


def test_external_data_location_with_a_nul_byte(tmp_path):
    refused(_external_model(tmp_path, "m.data\0../../etc/passwd"), r"a name with a NUL byte")


@pytest.mark.parametrize(
    "location", ["a" * 300, "a/" * 3000 + "m.data"], ids=["long-name", "long-path"]
)
def test_external_data_location_too_long_for_the_file_system(tmp_path, location):
    refused(_external_model(tmp_path, location), r"cannot be opened: File name too long")


def test_an_external_data_key_onnx_does_not_know_is_refused(tmp_path):
    """onnx would warn and ignore it: a damaged ``offset`` would read from the file's start.
    Found by the loader fuzz (a bit flipped in ``offset``)."""
    path = _external_model(tmp_path, "m.data")
    (path.parent / "m.data").write_bytes(np.array([0.0, 1.0], np.float32).tobytes())
    m = onnx.load(str(path), load_external_data=False)
    m.graph.initializer[0].external_data.add(key="of\x04set", value="4")
    onnx.save(m, str(path))
    refused(path, r"external-data key\(s\) ONNX does not know: 'of\\x04set'")


def test_external_data_far_larger_than_the_dims_is_refused_as_it_is_read(tmp_path):
    """Without a length, onnx reads to the end of the file, whatever the dims say."""
    path = _external_model(tmp_path, "m.data")
    (path.parent / "m.data").write_bytes(bytes(2**20))
    refused(
        path,
        r"the tensor 'w' at graph.initializer\[0\] has dims \[2\] \(2 elements\) but 1048576 bytes",
    )


def test_sparse_initializer_data_outside_the_folder_is_refused(tmp_path):
    """Its values are read like any other tensor's, not relative to the working folder."""
    refused(_external_model(tmp_path, "../secret.data", sparse=True), "outside the model's folder")
    path = _external_model(tmp_path / "ok", "m.data", sparse=True)
    np.testing.assert_array_equal(hwcc.load(path).initializer("w"), [0.0, 1.0])


def test_a_model_in_memory_with_external_data_is_refused(tmp_path, monkeypatch):
    model = onnx.load(str(_external_model(tmp_path, "m.data")), load_external_data=False)
    monkeypatch.chdir(tmp_path / "model")  # where onnx would look for m.data
    refused(model, "keeps tensor data in external files")
