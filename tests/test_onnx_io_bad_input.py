"""Loading ONNX files that need care: dynamic dims that ``--input-shape`` must fix, input
shapes that do not fit, external data inside the model's folder (read) and outside it
(refused), missing, non-ONNX and truncated files, and large models saved with external
data. The round trips themselves are in test_onnx_io_round_trip.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_round_trip import LIGHT, assert_round_trip, make_model, session

import hwcc
from hwcc.errors import ModelLoadError
from hwcc.ir import onnx_io


# ---------------------------------------------------------------- shapes and bad input
def _dynamic_model() -> onnx.ModelProto:
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return make_model(g)


def test_dynamic_dims_must_be_fixed():
    with pytest.raises(ModelLoadError) as e:
        hwcc.load(_dynamic_model())
    assert "--input-shape x:1x3x1x4" in str(e.value)
    g = hwcc.load(_dynamic_model(), input_shapes={"x": (2, 3, 5, 4)})
    assert g.tensors["x"].shape == (2, 3, 5, 4)
    assert g.tensors["r"].shape == (2, 3, 5, 4)  # shape inference ran on the fixed shape
    assert g.tensors["y"].shape == (2, 60)


@pytest.mark.parametrize(
    "shapes, words",
    [
        ({"nope": (1, 3, 1, 4)}, "not an input"),
        ({"x": (1, 3, 4)}, "rank"),
        ({"x": (1, 2, 1, 4)}, "fixed shape"),
    ],
)
def test_bad_input_shapes(shapes, words):
    with pytest.raises(ModelLoadError, match=words):
        hwcc.load(_dynamic_model(), input_shapes=shapes)


def test_parse_input_shape():
    assert onnx_io.parse_input_shape("input:1x3x224x224") == ("input", (1, 3, 224, 224))
    assert onnx_io.parse_input_shape("a:b:2x2") == ("a:b", (2, 2))
    for bad in ("input", ":1x2", "x:1xax2", "x:"):
        with pytest.raises(ModelLoadError):
            onnx_io.parse_input_shape(bad)


def _external_model(tmp_path: Path) -> Path:
    w = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        initializer=[w],
    )
    model = make_model(g)
    d = tmp_path / "m"
    d.mkdir()
    onnx.save_model(
        model, str(d / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0
    )
    return d / "m.onnx"


def test_external_data_inside_the_folder_is_read(tmp_path):
    path = _external_model(tmp_path)
    graph = assert_round_trip(path, tmp_path)
    assert graph.tensors["w"].data[1, 2] == 66.0


def _point_external_data_at(path: Path, location: str) -> None:
    m = onnx.load(str(path), load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    onnx.save_model(m, str(path))


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_external_data_outside_the_folder_is_refused(tmp_path, how):
    path = _external_model(tmp_path)
    secret = tmp_path / "secret.data"
    os.replace(path.parent / "m.data", secret)
    if how == "dotdot":
        _point_external_data_at(path, "../secret.data")
    elif how == "absolute":
        _point_external_data_at(path, str(secret))
    else:
        os.symlink(secret, path.parent / "m.data")
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        hwcc.load(path)


def test_missing_not_onnx_and_truncated_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        hwcc.load(tmp_path / "nope.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    with pytest.raises(ModelLoadError, match="not .*ONNX"):
        hwcc.load(text)
    good = LIGHT / "light_squeezenet.onnx"
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelLoadError):
        hwcc.load(cut)


def test_large_models_are_saved_with_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_io.writer, "EXTERNAL_THRESHOLD", 1000)
    path = _external_model(tmp_path)
    graph = hwcc.load(path)
    out = tmp_path / "out" / "big.onnx"
    hwcc.save(graph, out)
    assert (out.parent / "big.onnx.data").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "big.onnx",
        "big.onnx.data",
    ]  # no temp files left
    x = np.ones((1, 64), np.float32)
    np.testing.assert_array_equal(
        session(out).run(None, {"x": x})[0], session(path).run(None, {"x": x})[0]
    )
