"""Dimensions as ONNX writes them, and the graph inputs' dynamic dims fixed by the user.

Dynamic dimensions of the graph inputs must be fixed, from ``input_shapes`` (the CLI's
``--input-shape NAME:1x3x224x224``); a model with an unfixed one is refused with a
message that names the input and the flag to use. Some exporters (paddle2onnx) write a
dynamic dimension as ``dim_value: -1``: any negative ``dim_value`` is one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from hwcc.errors import ModelLoadError
from hwcc.ir import Dim, Graph


def read_dim(d: onnx.TensorShapeProto.Dimension) -> Dim:
    """A dimension; a negative ``dim_value`` (paddle2onnx writes -1) is a dynamic one."""
    if d.HasField("dim_value"):
        return int(d.dim_value) if d.dim_value >= 0 else None
    if d.HasField("dim_param"):
        return d.dim_param
    return None


def parse_input_shape(spec: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``NAME:1x3x224x224`` into ``("NAME", (1, 3, 224, 224))``."""
    name, sep, dims = spec.rpartition(":")
    try:
        if not sep or not name:
            raise ValueError
        shape = tuple(int(d) for d in dims.lower().split("x"))
        if any(d < 0 for d in shape):
            raise ValueError
    except ValueError:
        raise ModelLoadError(
            f"cannot read input shape {spec!r}",
            "write it as NAME:DIMxDIMx..., for example input:1x3x224x224",
        ) from None
    return name, shape


def fix_input_shapes(
    g: Graph, shapes: Mapping[str, Sequence[int]], allow_dynamic: bool, source: str
) -> None:
    """Give the graph inputs named in ``shapes`` those shapes, and refuse a dynamic input
    left unfixed (unless ``allow_dynamic``).

    Raises:
        ModelLoadError: ``shapes`` names no input, has the wrong rank or changes a fixed
            dimension; an input is left dynamic.
    """
    real = g.real_inputs()
    for name in shapes:
        if name not in real:
            raise ModelLoadError(
                f"--input-shape names {name!r}, which is not an input of {source}",
                f"the model's inputs are: {', '.join(real) or '(none)'}",
            )
    for name in real:
        t = g.tensors[name]
        if name in shapes:
            t.shape = _checked_shape(name, t.shape, tuple(int(d) for d in shapes[name]))
        elif "type_proto" not in t.meta and not t.is_static and not allow_dynamic:
            raise ModelLoadError(
                f"input {name!r} of {source} has dynamic shape {_fmt(t.shape)}",
                f"fix it with --input-shape {name}:{'x'.join(map(str, _suggested_shape(t.shape)))} "
                "(the dynamic dims, named or ?, are yours to choose; 1 for the batch, the rest a "
                "guess)",
            )


def _checked_shape(
    name: str, have: tuple[Dim, ...] | None, new: tuple[int, ...]
) -> tuple[int, ...]:
    """``new``, the shape ``--input-shape`` gives input ``name``, once it fits ``have``."""
    if have is not None and len(have) != len(new):
        raise ModelLoadError(
            f"input {name!r} has rank {len(have)} but --input-shape gives {len(new)} dims",
            f"give {len(have)} dims, e.g. {name}:{'x'.join(map(str, _suggested_shape(have)))}",
        )
    if have is not None:
        for d, want in zip(have, new):
            if isinstance(d, int) and d != want:
                raise ModelLoadError(
                    f"input {name!r} has fixed shape {_fmt(have)}; --input-shape asks for "
                    f"{_fmt(new)}",
                    "only dynamic dimensions can be set",
                )
    return new


def _suggested_shape(shape: Sequence[Dim] | None) -> tuple[int, ...]:
    """A concrete shape to offer for a dynamic input: the known dims as they are, a batch
    of 1, 224x224 for the two spatial dims of a 4-D input that leaves both open (an image),
    1 for any other open dim."""
    if shape is None:
        return (1,)
    dims = [d if isinstance(d, int) else None for d in shape]
    if len(dims) == 4 and dims[2] is None and dims[3] is None:
        dims[2:] = [224, 224]
    return tuple(1 if d is None else d for d in dims)


def _fmt(shape: Sequence[Dim] | None) -> str:
    if shape is None:
        return "[unknown rank]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
