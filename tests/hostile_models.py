"""Builders for the hostile-model tests (tests/test_load_hostile_*.py): a small model made
with ``onnx.helper``, its value infos, writing it (or any bytes) to a file, loading it
expecting a ModelLoadError, and tensors with exactly the raw bytes given."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import hwcc
from hwcc.errors import ModelLoadError


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
