"""Malformed and hostile model files: ``hwcc.load`` refuses each with a ModelLoadError that
says what is wrong and where, never with a traceback from onnx, protobuf or numpy; and
never blocks, reads outside the model's folder or asks for absurd memory.

Each case is a small model built with ``onnx.helper`` and then broken in one way, or a
file that is not a model at all. The fuzzer (``test_fuzz_loader.py``) covers the rest.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import AttributeProto, TensorProto, helper, numpy_helper

import hwcc
from hwcc.errors import HwccError, ModelLoadError
from hwcc.ir import onnx_io


def make_model(
    nodes, inputs=None, outputs=None, *, initializer=(), sparse=(), opsets=()
) -> onnx.ModelProto:
    """A model of ``nodes`` reading float[2] ``x`` and writing ``y`` (opset 17, IR 10)."""
    g = helper.make_graph(
        nodes,
        "g",
        inputs or [vi("x")],
        outputs or [vi("y")],
        initializer=list(initializer),
        sparse_initializer=list(sparse),
    )
    imports = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, v) for d, v in opsets]
    return helper.make_model(g, opset_imports=imports, ir_version=10)


def vi(name: str, shape=(2,), elem=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def write(tmp_path: Path, model: onnx.ModelProto | bytes, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    return path


def refused(path_or_model, match: str, **kw) -> ModelLoadError:
    """Load, expecting a ModelLoadError whose message matches ``match``."""
    with pytest.raises(ModelLoadError, match=match) as e:
        hwcc.load(path_or_model, **kw)
    return e.value


def raw_tensor(name: str, raw: bytes, dims=(2,), elem=TensorProto.FLOAT) -> TensorProto:
    """A tensor with exactly these raw bytes (``helper.make_tensor`` refuses a bad size)."""
    t = TensorProto(name=name, data_type=elem, raw_data=raw)
    t.dims.extend(dims)
    return t


# ---------------------------------------------------------------- dynamic dims as -1
def _minus_one_model() -> onnx.ModelProto:
    """A conv whose input is written as paddle2onnx writes it: ``dim_value: -1``."""
    x = onnx.ValueInfoProto(name="x")
    x.type.tensor_type.elem_type = TensorProto.FLOAT
    for d in (-1, 3, -1, -1):
        x.type.tensor_type.shape.dim.add().dim_value = d
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"])], [x], [vi("y", None)], initializer=[w]
    )


def test_minus_one_dims_are_dynamic_and_the_hint_is_a_real_shape():
    assert [d.dim_value for d in _minus_one_model().graph.input[0].type.tensor_type.shape.dim] == [
        -1,
        3,
        -1,
        -1,
    ]
    e = refused(_minus_one_model(), r"dynamic shape \[\?, 3, \?, \?\]")
    assert "--input-shape x:1x3x224x224" in e.hint
    assert "-1" not in str(e)


def test_input_shape_fixes_minus_one_dims():
    g = hwcc.load(_minus_one_model(), input_shapes={"x": (2, 3, 8, 8)})
    assert g.tensors["x"].shape == (2, 3, 8, 8)
    assert g.tensors["y"].shape == (2, 4, 6, 6)
    with pytest.raises(ModelLoadError, match="fixed shape"):
        hwcc.load(_minus_one_model(), input_shapes={"x": (1, 4, 8, 8)})  # 3 channels are fixed


def test_allow_dynamic_keeps_minus_one_dims_open():
    g = hwcc.load(_minus_one_model(), allow_dynamic=True)
    assert g.tensors["x"].shape == (None, 3, None, None)


# ---------------------------------------------------------------- dataflow
def test_a_node_that_feeds_itself(tmp_path):
    m = make_model([helper.make_node("Add", ["x", "y"], ["y"], name="acc")])
    refused(write(tmp_path, m), r"node 'acc' \(Add\) of .*m.onnx reads its own output")


def test_two_nodes_in_a_cycle(tmp_path):
    m = make_model(
        [
            helper.make_node("Add", ["x", "b"], ["y"], name="add"),
            helper.make_node("Relu", ["y"], ["b"], name="relu"),
        ]
    )
    refused(write(tmp_path, m), r"form a cycle: 'add' \(Add\) -> 'relu' \(Relu\) -> 'add' \(Add\)")


def test_a_tensor_produced_by_two_nodes(tmp_path):
    m = make_model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])])
    refused(
        write(tmp_path, m), r"tensor 'y' of .* is computed by two nodes, #0 \(Relu\) and #1 \(Neg\)"
    )


@pytest.mark.parametrize("clash", ["initializer", "input"])
def test_a_node_output_that_is_an_initializer_or_input(tmp_path, clash):
    if clash == "initializer":
        w = numpy_helper.from_array(np.ones(2, np.float32), "w")
        m = make_model(
            [helper.make_node("Relu", ["x"], ["w"]), helper.make_node("Neg", ["w"], ["y"])],
            initializer=[w],
        )
        name = "w"
    else:
        m = make_model(
            [helper.make_node("Relu", ["x"], ["x"]), helper.make_node("Neg", ["x"], ["y"])]
        )
        name = "x"
    refused(write(tmp_path, m), f"tensor '{name}' .* is also an initializer or a graph input")


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


# ---------------------------------------------------------------- annotations metadata
@pytest.mark.parametrize(
    "value, match",
    [
        ("5", "but it is a number"),
        ('"winograd"', "but it is a string"),
        ("[1, 2]", "but it is an array"),
        ('{"n": 3}', "but node 'n' has a number"),
        ('{"n": [1]}', "but node 'n' has an array"),
        ('{"n": {"onnx_name": 5}}', "node 'n' sets 'onnx_name'"),
        ("[" * 100_000, "not valid JSON"),
    ],
    ids=["int", "string", "list", "node-int", "node-list", "reserved-key", "nested-too-deep"],
)
def test_annotations_of_the_wrong_type(tmp_path, value, match):
    m = make_model([helper.make_node("Relu", ["x"], ["y"], name="n")])
    m.metadata_props.add(key=onnx_io.ANNOTATIONS_KEY, value=value)
    e = refused(write(tmp_path, m), match)
    assert onnx_io.ANNOTATIONS_KEY in str(e) and "remove the" in e.hint


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


# ---------------------------------------------------------------- control flow and functions
def test_a_loop_without_its_body_passes_through(tmp_path):
    """ONNX's checker would refuse it; hwcc keeps what it does not interpret, as it is."""
    consts = [
        helper.make_node(
            "Constant", [], ["n"], value=helper.make_tensor("v", TensorProto.INT64, [], [3])
        ),
        helper.make_node(
            "Constant", [], ["c"], value=helper.make_tensor("v", TensorProto.BOOL, [], [True])
        ),
    ]
    m = make_model(consts + [helper.make_node("Loop", ["n", "c", "x"], ["y"], name="loop")])
    g = hwcc.load(write(tmp_path, m))
    assert g.node("loop").attrs == {}
    hwcc.save(g, tmp_path / "out.onnx")
    assert onnx.load(str(tmp_path / "out.onnx")).graph.node[2].op_type == "Loop"


def test_a_body_attribute_that_holds_no_graph_passes_through(tmp_path):
    body = AttributeProto(name="body", type=AttributeProto.GRAPH)
    loop = helper.make_node("Loop", ["", "", "x"], ["y"], name="loop")
    loop.attribute.append(body)
    g = hwcc.load(write(tmp_path, make_model([loop])))
    hwcc.save(g, tmp_path / "out.onnx")
    assert onnx.load(str(tmp_path / "out.onnx")).graph.node[0].attribute[0] == body


def test_a_model_local_function_that_calls_itself(tmp_path):
    f = helper.make_function(
        "local",
        "F",
        ["a"],
        ["b"],
        [helper.make_node("F", ["a"], ["b"], domain="local")],
        [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
    )
    m = make_model([helper.make_node("F", ["x"], ["y"], domain="local")], opsets=[("local", 1)])
    m.functions.append(f)
    refused(
        write(tmp_path, m),
        r"shape inference failed on .*m.onnx: ValidationError: Cycle detected "
        r"in model-local function references",
    )


# ---------------------------------------------------------------- text that is not UTF-8
def _break_utf8(model: onnx.ModelProto, token: str) -> bytes:
    """The serialised model with ``token``'s first two bytes made invalid UTF-8 wherever it
    occurs (lengths stay the same, so the protobuf is still well formed)."""
    data = model.SerializeToString()
    assert token.encode() in data
    return data.replace(token.encode(), b"\xff\xfe" + token.encode()[2:])


_NAMED_NODES = {  # where the bad text goes: (nodes with a TOKEN there, the field the error names)
    "node name": ([helper.make_node("Relu", ["x"], ["y"], name="TOKEN")], r"graph.node\[0\].name"),
    "tensor name": (
        [helper.make_node("Relu", ["x"], ["TOKEN"]), helper.make_node("Neg", ["TOKEN"], ["y"])],
        r"graph.node\[0\].output",
    ),
    "attribute name": (
        [helper.make_node("Relu", ["x"], ["y"], TOKEN=1)],
        r"graph.node\[0\].attribute\[0\].name",
    ),
    "domain": ([helper.make_node("Relu", ["x"], ["y"], domain="TOKEN")], r"graph.node\[0\].domain"),
}


@pytest.mark.parametrize("where", list(_NAMED_NODES))
def test_names_that_are_not_utf8_are_refused(tmp_path, where):
    nodes, field = _NAMED_NODES[where]
    e = refused(
        write(tmp_path, _break_utf8(make_model(nodes), "TOKEN")),
        field + r" is not valid UTF-8 text",
    )
    assert "b'\\xff\\xfeKEN'" in str(e)


def test_doc_strings_that_are_not_utf8_load_and_save(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"], name="n", doc_string="NODEDOC")
    m = make_model([node])
    m.doc_string, m.graph.doc_string = "MODELDOC", "GRAPHDOC"
    m.graph.input[0].doc_string = "INPUTDOC"
    data = m.SerializeToString()
    for token in ("NODEDOC", "MODELDOC", "GRAPHDOC", "INPUTDOC"):
        data = data.replace(token.encode(), b"\xff\xfe" + token.encode()[2:])
    g = hwcc.load(write(tmp_path, data))
    assert g.node("n").meta["doc_string"] == "\ufffd\ufffdDEDOC"
    assert g.meta["doc_string"] == "\ufffd\ufffdDELDOC"
    hwcc.save(g, tmp_path / "out.onnx")
    back = onnx.load(str(tmp_path / "out.onnx"))
    assert back.graph.node[0].doc_string == "\ufffd\ufffdDEDOC"
    assert back.graph.doc_string == "\ufffd\ufffdAPHDOC"
    assert back.graph.input[0].doc_string == "\ufffd\ufffdPUTDOC"


def test_attribute_strings_that_are_not_utf8_round_trip_as_bytes(tmp_path):
    node = helper.make_node(
        "Custom", ["x"], ["y"], name="n", domain="acme", mode="MODEVALUE", tags=["TAGVALUE", "ok"]
    )
    data = _break_utf8(make_model([node], opsets=[("acme", 1)]), "MODEVALUE")
    data = data.replace(b"TAGVALUE", b"\xff\xfeGVALUE")
    g = hwcc.load(write(tmp_path, data))
    assert g.node("n").attrs["mode"] == b"\xff\xfeDEVALUE"
    assert g.node("n").attrs["tags"] == [b"\xff\xfeGVALUE", "ok"]
    hwcc.save(g, tmp_path / "out.onnx")
    attrs = {a.name: a for a in onnx.load(str(tmp_path / "out.onnx")).graph.node[0].attribute}
    assert attrs["mode"].s == b"\xff\xfeDEVALUE"
    assert list(attrs["tags"].strings) == [b"\xff\xfeGVALUE", b"ok"]


@pytest.mark.parametrize("where", ["node name", "doc string", "attribute"])
def test_saving_text_that_has_no_utf8_form_is_a_clean_error(tmp_path, where):
    g = hwcc.load(make_model([helper.make_node("Relu", ["x"], ["y"], name="n")]))
    bad = "n\udcff"  # a lone surrogate, as os.fsdecode makes of a bad byte
    if where == "node name":
        g.node("n").meta["onnx_name"] = bad
    elif where == "doc string":
        g.node("n").meta["doc_string"] = bad
    else:
        g.node("n").attrs["mode"] = bad
    with pytest.raises(
        HwccError, match=r"cannot write .*out.onnx: the text 'n\\udcff' .* is not valid UTF-8"
    ):
        hwcc.save(g, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


# ---------------------------------------------------------------- files that are not models
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)

    def unblock():  # if load blocked on the pipe, give it an end so the test fails, not hangs
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    timer = threading.Timer(5, unblock)
    timer.start()
    try:
        start = time.perf_counter()
        refused(fifo, r"m.onnx is not a regular file \(a named pipe\)")
        assert time.perf_counter() - start < 2
    finally:
        timer.cancel()


def test_a_device_is_refused():
    refused(Path(os.devnull), r"is not a regular file \(a character device\)")


def test_a_file_beyond_protobufs_limit_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:
        f.truncate(3 * 2**30)  # sparse: no disk space, no reading
    refused(big, "more than protobuf's 2 GB limit")


@pytest.mark.parametrize(
    "path, match",
    [
        ("m\0.onnx", "embedded null byte"),
        ("a" * 5000 + ".onnx", "File name too long"),
    ],
    ids=["nul", "too-long"],
)
def test_model_paths_the_file_system_cannot_take(tmp_path, path, match):
    refused(str(tmp_path / path), match)


def test_random_bytes_are_not_a_model(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    refused(write(tmp_path, data), "not .*ONNX model")


# ---------------------------------------------------------------- saving
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_save_applies_the_umask(tmp_path, umask, mode):
    g = hwcc.load(make_model([helper.make_node("Relu", ["x"], ["y"])]))
    old = os.umask(umask)
    try:
        out = hwcc.save(g, tmp_path / "out.onnx")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]  # no temporary file left


# ---------------------------------------------------------------- absurd sizes on Eyeriss
def _conv_graph(input_shape) -> hwcc.Graph:
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    m = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
        [vi("x", input_shape)],
        [vi("y", None)],
        initializer=[w],
    )
    return hwcc.load(m)


@pytest.mark.parametrize(
    "input_shape, batch",
    [
        ((1, 3, 32, 32), 10**12),
        ((1, 3, 10**9, 224), 1),
        ((10**12, 3, 32, 32), 10**12),
    ],
    ids=["batch-1e12", "a-billion-rows", "huge-declared-batch-times-1e12"],
)
def test_eyeriss_maps_absurd_sizes_quickly(input_shape, batch):
    from hwcc.targets.base import CostContext, load_target

    start = time.perf_counter()
    gc = load_target("eyeriss").cost(_conv_graph(input_shape), CostContext(batch=batch))
    assert time.perf_counter() - start < 5
    conv = next(c for c in gc.layers if c.layer.op_type == "Conv")
    assert conv.cost.energy_j > 0
