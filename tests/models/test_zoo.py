"""The zoo's public API: listing, lookup errors, export, the ``hwcc zoo list`` table."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from hwcc import models
from hwcc.errors import HwccError
from hwcc.models import register
from hwcc.models.registry import get_spec


def test_list_models():
    entries = models.list_models()
    names = [e.name for e in entries]
    assert len(names) == len(set(names)) == 18
    kinds = [e.kind for e in entries]
    assert kinds == sorted(kinds)  # architectures first
    by_name = {e.name: e for e in entries}
    assert by_name["alexnet"].input_shapes == {"input": (1, 3, 227, 227)}
    assert by_name["lstm_lm"].input_shapes == {"tokens": (1, 35)}
    assert by_name["alexnet"].accuracy is None
    # The digits are nearly saturated; the glyphs (unseen fonts) are meant not to be.
    floors = {"digits": 0.95, "glyphs": 0.9}
    assert all(
        e.accuracy >= floors[e.name.rsplit("-", 1)[1]] for e in entries if e.kind == "trained"
    )
    assert all(e.description and e.params > 0 for e in entries)
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_name["alexnet"].name = "x"
    record = json.loads(json.dumps(by_name["lstm_lm"].to_dict()))
    assert record["input_shapes"] == {"tokens": [1, 35]} and record["kind"] == "architecture"


def test_unknown_name_lists_known_names():
    with pytest.raises(HwccError) as info:
        models.model_path("alexnt")
    message = str(info.value)
    assert "unknown zoo model 'alexnt'" in message
    assert "alexnet" in message and "lenet5-digits" in message
    assert "hwcc zoo list" in info.value.hint
    for call in (models.build_torch, models.example_inputs):
        with pytest.raises(HwccError):
            call("nope")


def test_zoo_prefix_accepted():
    assert get_spec("zoo:resnet18").name == "resnet18"


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="registered twice"):
        register("alexnet", description="again", input_shapes={"input": (1,)})(lambda: None)


def test_example_inputs():
    (tokens,) = models.example_inputs("lstm_lm")
    assert tokens.dtype == torch.int64 and tokens.shape == (1, 35)
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 10_000
    (image,) = models.example_inputs("alexnet")
    assert image.shape == (1, 3, 227, 227) and image.dtype == torch.float32
    assert torch.equal(image, models.example_inputs("alexnet")[0])


def test_export_trained_copies_the_shipped_file(tmp_path):
    out = models.export("lenet300-digits", tmp_path / "deep" / "m.onnx")
    assert out.read_bytes() == models.model_path("lenet300-digits").read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["m.onnx"]


def test_export_architecture(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = models.export("lenet300", tmp_path / "lenet300.onnx")
    assert out.read_bytes() == models.model_path("lenet300").read_bytes()


def test_format_table():
    table = models.format_table(models.list_models())
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["NAME", "KIND", "INPUT", "PARAMS", "ACCURACY"]
    alexnet = next(line for line in lines if line.startswith("alexnet "))
    assert "input 1x3x227x227" in alexnet and "61.0M" in alexnet and " - " in alexnet
    digits_line = next(line for line in lines if line.startswith("lenet5-digits "))
    assert "%" in digits_line
    assert len(lines) == 19


def test_import_needs_no_sklearn():
    code = (
        "import sys, hwcc.models as m; m.list_models(); m.build_torch('lenet5-digits'); "
        "assert 'sklearn' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
