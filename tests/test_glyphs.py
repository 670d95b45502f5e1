"""Bundled 32x32 glyphs data, the trained glyphs models, and their training script."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import hwcc
from hwcc import models
from hwcc.errors import HwccError
from hwcc.models import arch_glyphs, glyphs, train_glyphs, zoo

TRAINED = ["mobilenet-glyphs", "resnet-glyphs"]


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((glyphs.DATA_DIR / "zoo_glyphs.json").read_text())


def test_raw_data():
    raw = glyphs.load_raw()
    assert raw["images"].shape == (5000, 32, 32) and raw["images"].dtype == np.uint8
    assert raw["labels"].dtype == np.int64 and raw["fonts"].dtype == np.int64
    assert list(raw["font_names"]) == [*glyphs.TRAIN_FONTS, *glyphs.TEST_FONTS]
    assert np.bincount(raw["labels"]).tolist() == [500] * 10
    assert glyphs.GLYPHS_FILE.stat().st_size < 3_000_000
    assert (glyphs.DATA_DIR / "GLYPHS_LICENSE.txt").exists()


def test_split_by_font_is_stratified_and_disjoint():
    raw = glyphs.load_raw()
    split = glyphs.split_indices(raw["fonts"], raw["font_names"])
    assert len(split["train"]) == 4000 and len(split["test"]) == 1000
    train_fonts, test_fonts = (set(raw["fonts"][split[k]]) for k in ("train", "test"))
    assert len(train_fonts) == 16 and len(test_fonts) == 5 and not train_fonts & test_fonts
    for part, per_font in (("train", 25), ("test", 20)):
        pairs = raw["fonts"][split[part]] * 10 + raw["labels"][split[part]]
        assert set(np.unique(pairs, return_counts=True)[1]) == {per_font}


def test_load_split():
    x, y = glyphs.load_split("test")
    assert x.shape == (1000, 1, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert glyphs.load_split("train")[0].shape == (4000, 1, 32, 32)
    with pytest.raises(HwccError, match="unknown glyphs split 'val'"):
        glyphs.load_split("val")
    x_zoo, y_zoo = models.load_data("zoo:glyphs", "test")
    np.testing.assert_array_equal(x_zoo, x)
    np.testing.assert_array_equal(y_zoo, y)


def test_missing_or_broken_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(glyphs, "GLYPHS_FILE", tmp_path / "glyphs.npz")
    with pytest.raises(HwccError, match="is missing") as info:
        glyphs.load_split("train")
    assert "make_glyphs_data" in info.value.hint
    (tmp_path / "glyphs.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(HwccError, match="cannot read"):
        glyphs.load_raw()


def test_write_npz(tmp_path):
    path = glyphs.write_npz("test", tmp_path / "glyphs-test.npz")
    with np.load(path) as data:
        assert sorted(data.files) == ["input", "labels"]
        assert data["input"].shape == (1000, 1, 32, 32)


def test_rendering_is_deterministic():
    pil = pytest.importorskip("PIL")
    from hwcc.models import make_glyphs_data

    if not all((make_glyphs_data.FONT_DIR / f).is_file() for f in glyphs.TRAIN_FONTS):
        pytest.skip("the DejaVu fonts are not installed")
    with np.load(glyphs.GLYPHS_FILE) as data:
        shipped, drawn_with = data["images"], str(data["pillow_version"])
    indices = [0, 1234, 3999, 4000, 4999]
    again = make_glyphs_data.render_all(indices)
    np.testing.assert_array_equal(again, make_glyphs_data.render_all(indices))
    if pil.__version__ != drawn_with:
        pytest.skip(f"drawn with Pillow {drawn_with}, this is {pil.__version__}")
    np.testing.assert_array_equal(again, shipped[indices])


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_model_accuracy_in_onnxruntime(name, record):
    entry = record["models"][name]
    path = models.model_path(name)
    assert path.stat().st_size == entry["onnx_bytes"] < 2_000_000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["onnx_sha256"]
    graph = hwcc.load(f"zoo:{name}")
    assert graph.real_inputs() == ["input"]
    assert glyphs.onnx_accuracy(path, "test") >= entry["test_accuracy"] - 0.005
    # A harder task than the digits: not saturated, so pruning shows.
    assert 0.8 <= entry["test_accuracy"] < 0.98
    listed = {e.name: e for e in models.list_models()}[name]
    assert listed.kind == "trained" and listed.accuracy == entry["test_accuracy"]


@pytest.mark.parametrize("name", TRAINED)
def test_recorded_overhead_share_is_under_a_fifth(name, record):
    overhead = record["models"][name]["overhead"]
    assert overhead["threads"] == 1
    assert 0 < overhead["probe_latency_s"] < overhead["latency_s"] < 0.005
    assert overhead["overhead_share"] == pytest.approx(
        overhead["probe_latency_s"] / overhead["latency_s"]
    )
    assert overhead["overhead_share"] < 0.2
    assert overhead["probe_kernels"] >= overhead["kernels"] > 10


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_onnx_and_torch_weights(name):
    proto = onnx.load(str(models.model_path(name)))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.name for o in proto.graph.output] == ["logits"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 32, 32]
    ops = {n.op_type for n in proto.graph.node}
    assert {"BatchNormalization", "Add", "Conv"} <= ops
    module = models.build_torch(name)
    (x,) = models.example_inputs(name)
    assert x.shape == (1, 1, 32, 32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", TRAINED)
def test_overhead_probe_has_the_same_layers_at_width_one(name):
    full, probe = models.build_torch(name), arch_glyphs.overhead_probe(name)
    kinds = [type(m).__name__ for m in full.modules()]
    assert kinds == [type(m).__name__ for m in probe.modules()]
    assert all(c.out_channels == 1 for c in probe.modules() if isinstance(c, torch.nn.Conv2d))
    with torch.no_grad():
        assert probe.eval()(torch.zeros(arch_glyphs.PROBE_INPUT)).shape == (1, 10)


def test_training_is_deterministic():
    settings = dataclasses.replace(train_glyphs.default_settings("resnet-glyphs"), epochs=1)
    first = train_glyphs.train("resnet-glyphs", settings, limit=96).state_dict()
    second = train_glyphs.train("resnet-glyphs", settings, limit=96).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = dataclasses.replace(settings, seed=1)
    third = train_glyphs.train("resnet-glyphs", other, limit=96).state_dict()
    assert not torch.equal(first["0.0.weight"], third["0.0.weight"])


def test_zoo_knows_the_glyphs():
    assert "glyphs" in zoo.DATA_SETS
    assert zoo.data_set("zoo:glyphs") == "glyphs"
    assert set(TRAINED) <= set(zoo.read_zoo_json()["models"])
