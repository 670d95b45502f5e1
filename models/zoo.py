"""The zoo's public functions: list, build, locate and export bundled models.

Two kinds of model live here (see :mod:`hwcc.models.registry`):

* ``architecture``: published networks with seeded random weights, for costing. Their ONNX
  is exported on first use and cached (:mod:`hwcc.models.onnx_export`).
* ``trained``: small networks trained on the bundled 8x8 digits or 32x32 glyphs; their
  ONNX ships in ``models/data`` with accuracies recorded in ``models/data/zoo_digits.json``
  and ``models/data/zoo_glyphs.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwcc.errors import HwccError
from hwcc.ir.onnx_io import zoo_name
from hwcc.models import digits, glyphs, onnx_export
from hwcc.models.registry import ModelSpec, all_specs, get_spec

ZOO_JSON = digits.DATA_DIR / "zoo_digits.json"
GLYPHS_JSON = digits.DATA_DIR / "zoo_glyphs.json"
_RETRAIN_HINT = "re-create it with `python -m hwcc.models.{script} --only {name}`"


def _data_module(spec: ModelSpec):
    """The bundled data set a trained model was trained on: digits or glyphs."""
    return glyphs if spec.name.endswith("-glyphs") else digits


def _retrain_hint(spec: ModelSpec) -> str:
    script = "train_glyphs" if _data_module(spec) is glyphs else "train_digits"
    return _RETRAIN_HINT.format(script=script, name=spec.name)


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One bundled model, as ``hwcc zoo list`` shows it.

    Attributes:
        name: zoo name (use as ``zoo:NAME``).
        kind: ``"architecture"`` or ``"trained"``.
        description: one line.
        input_shapes: ONNX input name -> fixed shape (batch 1).
        accuracy: test accuracy on the digits test split (trained models), else None.
        params: number of parameters (weights, biases, BN statistics excluded).
    """

    name: str
    kind: str
    description: str
    input_shapes: dict[str, tuple[int, ...]] = dataclasses.field(hash=False)
    accuracy: float | None
    params: int

    def to_dict(self) -> dict:
        """Returns the entry as plain JSON types (shapes as lists)."""
        fields = dataclasses.asdict(self)
        fields["input_shapes"] = {k: list(v) for k, v in self.input_shapes.items()}
        return fields


def read_zoo_json() -> dict:
    """Returns the training record ``zoo_digits.json`` (empty if not written yet), with
    the glyphs models of ``zoo_glyphs.json`` added to its ``models``."""
    record = json.loads(ZOO_JSON.read_text()) if ZOO_JSON.exists() else {"models": {}}
    if GLYPHS_JSON.exists():
        record["models"] = {**record["models"], **json.loads(GLYPHS_JSON.read_text())["models"]}
    return record


def _count_params(spec: ModelSpec) -> int:
    # Built on the meta device: shapes without memory or init cost (VGG-16 is 138 M).
    with torch.device("meta"):
        module = spec.builder()
    return sum(p.numel() for p in module.parameters())


def list_models() -> list[ZooEntry]:
    """Lists every model in the zoo, architectures first, then by name.

    Returns:
        One :class:`ZooEntry` per model; trained models carry the test accuracy recorded
        in ``zoo_digits.json`` or ``zoo_glyphs.json`` (measured with onnxruntime on the
        shipped ONNX).
    """
    record = read_zoo_json()["models"]
    return [
        ZooEntry(
            name=spec.name,
            kind=spec.kind,
            description=spec.description,
            input_shapes=dict(spec.input_shapes),
            accuracy=record.get(spec.name, {}).get("test_accuracy"),
            params=_count_params(spec),
        )
        for spec in all_specs()
    ]


def _trained_path(spec: ModelSpec) -> Path:
    path = digits.DATA_DIR / spec.onnx_file
    if not path.exists():
        raise HwccError(
            f"the trained zoo model file {path} is missing",
            hint=_retrain_hint(spec),
        )
    return path


def _load_trained_weights(module: nn.Module, spec: ModelSpec) -> None:
    """Copies the initializers of the shipped ONNX into ``module`` by state_dict name."""
    import onnx
    from onnx import numpy_helper

    path = _trained_path(spec)
    weights = {t.name: t for t in onnx.load(str(path)).graph.initializer}
    state = module.state_dict()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key not in weights:
            raise HwccError(
                f"{path} has no initializer named {key!r} for {spec.name}",
                hint=_retrain_hint(spec),
            )
        array = torch.from_numpy(numpy_helper.to_array(weights[key]).copy())
        if array.shape != value.shape:
            raise HwccError(
                f"{path}: {key} has shape {tuple(array.shape)}, the definition of "
                f"{spec.name} expects {tuple(value.shape)}",
                hint=_retrain_hint(spec),
            )
        state[key] = array
    module.load_state_dict(state)


def _build(spec: ModelSpec) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        module = spec.builder()
    if spec.kind == "trained":
        _load_trained_weights(module, spec)
    return module.eval()


def _example_inputs(spec: ModelSpec) -> tuple[torch.Tensor, ...]:
    if spec.kind == "trained":
        x, _ = _data_module(spec).load_split("test")
        return (torch.from_numpy(x[:1]),)
    generator = torch.Generator().manual_seed(spec.seed)
    inputs = []
    for name, shape in spec.input_shapes.items():
        if spec.input_dtypes[name] == "int64":
            inputs.append(torch.randint(0, spec.vocab or 2, shape, generator=generator))
        else:
            inputs.append(torch.randn(shape, generator=generator))
    return tuple(inputs)


def build_torch(name: str) -> nn.Module:
    """Builds a zoo model as a ``torch.nn.Module`` in eval mode.

    Architectures get their fixed-seed random weights; trained models get the weights of
    their shipped ONNX.

    Args:
        name: zoo name.

    Returns:
        The module, in eval mode.

    Raises:
        HwccError: unknown name, or a trained model's file is missing or stale.
    """
    return _build(get_spec(name))


def example_inputs(name: str) -> tuple[torch.Tensor, ...]:
    """Returns deterministic example inputs, one tensor per ONNX input, batch 1.

    Architectures get seeded ``randn`` (or ``randint`` below the vocabulary for token
    inputs); trained models get the first sample of their data set's test split.

    Args:
        name: zoo name.

    Returns:
        Tensors in the order of the model's inputs.
    """
    return _example_inputs(get_spec(name))


def model_path(name: str) -> Path:
    """Returns the ONNX file of a zoo model.

    Trained models: the shipped file. Architectures: the cached export, exported on first
    use (VGG-16 takes a while and ~550 MB).

    Args:
        name: zoo name (``zoo:`` prefix accepted).

    Returns:
        Path of the ``.onnx`` file.
    """
    spec = get_spec(name)
    if spec.kind == "trained":
        return _trained_path(spec)
    return onnx_export.cached_export(spec, _build, _example_inputs)


def export(name: str, out_path: str | os.PathLike) -> Path:
    """Writes a zoo model's ONNX to ``out_path`` (atomically).

    Args:
        name: zoo name.
        out_path: destination file; its folder is created.

    Returns:
        The path written.

    Raises:
        HwccError: an unknown name, or ``out_path`` is a folder.
    """
    if Path(out_path).is_dir():
        raise HwccError(f"output {os.fspath(out_path)} is a folder", "name the .onnx file to write")
    return onnx_export.copy_atomic(model_path(name), out_path)


DATA_SETS = {
    "digits": (
        "the UCI 8x8 handwritten digits, 10 classes: train split to fine-tune, test split held out"
    ),
    "glyphs": (
        "32x32 letters A-J rendered from fonts, 10 classes: train fonts to fine-tune, "
        "unseen fonts held out"
    ),
}


def data_set(name: str) -> str:
    """The bare name of the bundled data set ``name`` (``zoo:`` prefix accepted).

    Raises:
        HwccError: no bundled data set has that name; the message lists those that do.
    """
    bare = zoo_name(name)
    if bare is None:
        bare = name
    if bare not in DATA_SETS:
        listed = "; ".join(f"zoo:{k} ({v})" for k, v in DATA_SETS.items())
        raise HwccError(f"no bundled data set named {name!r}", f"bundled data sets: {listed}")
    return bare


def load_data(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of a bundled data set as model inputs and labels.

    Args:
        name: ``digits``, ``glyphs``, or either with ``zoo:`` (see :data:`DATA_SETS`).
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(x, labels)``, samples on axis 0.

    Raises:
        HwccError: an unknown data set or split.
    """
    return (glyphs if data_set(name) == "glyphs" else digits).load_split(split)


def _human(count: int) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.1f}{suffix}"
    return str(count)


def _shape_text(spec_shapes: dict[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in spec_shapes.items())


def format_table(entries: list[ZooEntry]) -> str:
    """Renders entries as the plain-text table of ``hwcc zoo list``.

    Args:
        entries: e.g. ``list_models()``.

    Returns:
        Aligned columns: name, kind, input, params, accuracy (or ``-``), description.
    """
    header = ("NAME", "KIND", "INPUT", "PARAMS", "ACCURACY", "DESCRIPTION")
    rows = [
        (
            e.name,
            e.kind,
            _shape_text(e.input_shapes),
            _human(e.params),
            "-" if e.accuracy is None else f"{100 * e.accuracy:.1f}%",
            e.description,
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]
        return "  ".join(cells).rstrip()

    return "\n".join(line(r) for r in [header, *rows])
