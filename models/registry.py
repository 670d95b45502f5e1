"""The zoo's registry: one decorator, one table of model specs.

A model joins the zoo by decorating the function that builds its ``torch.nn.Module``::

    @register("alexnet", description="...", input_shapes={"input": (1, 3, 227, 227)})
    def alexnet() -> nn.Module: ...

The builders live in the modules named ``arch_*.py`` in this package; the registry imports
all of them the first time it is asked for a name, so adding a file is all it takes to add
models (no hand-kept import list).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import zlib
from collections.abc import Callable, Mapping

from torch import nn

from hwcc.errors import HwccError
from hwcc.ir.onnx_io import zoo_name

KINDS = ("architecture", "trained")

# The one table the decorator fills; it is written only while the arch_* modules import.
_SPECS: dict[str, "ModelSpec"] = {}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo knows about one model, including how to build it.

    Attributes:
        name: the zoo name (``hwcc zoo export NAME``, ``zoo:NAME``).
        kind: ``"architecture"`` (random weights, exported on demand for costing) or
            ``"trained"`` (weights trained on the bundled digits data, ONNX shipped).
        description: one line for ``hwcc zoo list``.
        input_shapes: ONNX input name -> fixed shape (batch 1).
        input_dtypes: ONNX input name -> torch dtype name (``"float32"``, ``"int64"``).
        output_names: ONNX output names, in order.
        seed: the ``torch.manual_seed`` used before building, so weights are reproducible.
        builder: zero-argument function returning the ``nn.Module``.
        vocab: for token models, the vocabulary size (integer inputs lie in
            ``[0, vocab)``).
    """

    name: str
    kind: str
    description: str
    input_shapes: Mapping[str, tuple[int, ...]]
    input_dtypes: Mapping[str, str]
    output_names: tuple[str, ...]
    seed: int
    builder: Callable[[], nn.Module] = dataclasses.field(compare=False, repr=False)
    vocab: int | None = None

    @property
    def onnx_file(self) -> str | None:
        """For trained models, the shipped file's name under ``models/data``."""
        return f"{self.name}.onnx" if self.kind == "trained" else None


def register(
    name: str,
    *,
    description: str,
    input_shapes: Mapping[str, tuple[int, ...]],
    kind: str = "architecture",
    input_dtypes: Mapping[str, str] | None = None,
    output_names: tuple[str, ...] = ("output",),
    seed: int | None = None,
    vocab: int | None = None,
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Registers a model builder under ``name``.

    Args:
        name: zoo name; must be unique.
        description: one line shown by ``hwcc zoo list``.
        input_shapes: ONNX input name -> fixed shape, batch 1.
        kind: ``"architecture"`` or ``"trained"``. Trained models ship
            ``models/data/<name>.onnx``.
        input_dtypes: input name -> dtype name; ``float32`` where not given.
        output_names: ONNX output names.
        seed: weight-init seed; by default derived from the name (CRC-32), so each model
            has its own fixed seed.
        vocab: vocabulary size, for models with integer token inputs.

    Returns:
        The decorator, which returns the builder unchanged.

    Raises:
        ValueError: on a duplicate name or an unknown kind (programming errors).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    dtypes = {k: "float32" for k in input_shapes}
    dtypes.update(input_dtypes or {})

    def decorate(builder: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _SPECS:
            raise ValueError(f"zoo model {name!r} is registered twice")
        _SPECS[name] = ModelSpec(
            name=name,
            kind=kind,
            description=description,
            input_shapes={k: tuple(v) for k, v in input_shapes.items()},
            input_dtypes=dtypes,
            output_names=tuple(output_names),
            seed=zlib.crc32(name.encode()) if seed is None else seed,
            builder=builder,
            vocab=vocab,
        )
        return builder

    return decorate


def _discover() -> None:
    """Imports every ``arch_*`` module of this package so their decorators run."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("arch_"):
            importlib.import_module(f"{__package__}.{info.name}")


def all_specs() -> list[ModelSpec]:
    """Returns every registered model spec, architectures first, then by name."""
    _discover()
    return sorted(_SPECS.values(), key=lambda s: (KINDS.index(s.kind), s.name))


def get_spec(name: str) -> ModelSpec:
    """Looks a model up by name.

    Args:
        name: zoo name; a leading ``zoo:`` is accepted.

    Returns:
        The model's spec.

    Raises:
        HwccError: the name is not in the zoo; the message lists the names that are.
    """
    _discover()
    key = zoo_name(name) or name
    if key not in _SPECS:
        known = ", ".join(s.name for s in all_specs())
        raise HwccError(
            f"unknown zoo model {name!r}; known models: {known}",
            hint="run `hwcc zoo list` to see the bundled models with their input shapes",
        )
    return _SPECS[key]
