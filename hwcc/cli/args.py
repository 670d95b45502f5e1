"""What the ``hwcc`` commands share: checked flag types, the model arguments, output checks.

Flags are checked as they are parsed, data and outputs before any work: a bad value
ends as one ``hwcc COMMAND: error: ...`` line, never as a failure deep in a command.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from hwcc.data.evaluate import load_dataset, zoo_dataset
from hwcc.errors import HwccError
from hwcc.ir.onnx_io import parse_input_shape, zoo_name


def ranged(
    kind: Callable[[str], float], accepted: str, ok: Callable[[float], bool]
) -> Callable[[str], float]:
    """An argparse ``type`` that reads a number and refuses it outside ``ok`` (nan included).

    argparse then says ``argument --decay: must be a number in (0, 1], got 'nan'``.
    """

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {text!r}")
        return value

    return parse


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    if high is not None:
        accepted = f"a whole number from {low} to {high}"
    else:
        accepted = f"a whole number, {low} or more"
    return ranged(int, accepted, lambda v: v >= low and (high is None or v <= high))


SEED = _whole(0, 2**32 - 1)
POSITIVE = _whole(1)
# Larger batches are not inference, and the measured CPU target would run kernels that big.
BATCH = _whole(1, 4096)
COUNT = _whole(0)
BITS = _whole(1, 64)
FRACTION = ranged(float, "a number in [0, 1]", lambda v: 0 <= v <= 1)
TOLERANCE = ranged(float, "a finite number, 0 or more", lambda v: 0 <= v < math.inf)


def input_shapes(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """The ``--input-shape NAME:DIMS`` flags as a mapping, input name -> shape."""
    return dict(parse_input_shape(s) for s in specs or ())


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add MODEL and ``--input-shape`` to the parser of a command that loads a model."""
    p.add_argument("model", metavar="MODEL", help="an .onnx file, or zoo:NAME")
    p.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME:DIMS",
        help="fix a dynamic input, e.g. input:1x3x224x224 (repeatable)",
    )


def read_data(graph, text: str) -> dict:
    """The model's input arrays from ``--data`` (an .npz, or bundled data: its train split).

    Read and checked before any work, as ``compile`` reads its data: a bad file is
    reported as such, not as a failure of the pass or the cost model that reads it.
    """
    if zoo_name(text) is not None:
        return zoo_dataset(graph, text, "train").inputs
    return load_dataset(graph, text).inputs


def check_output(output: str, *, folder: bool) -> None:
    """Refuse an output path that cannot be written, before any work is done.

    The nearest folder that exists on the way to ``output`` must be a folder and accept a
    new file (a probe, created unnamed or removed at once, finds out: permission bits do
    not tell root, a read-only mount or /proc apart).

    Args:
        output: the -o path.
        folder: the output is a folder (``compile``'s artifact) rather than a file.
    """
    path = Path(output)
    if not output.strip():
        raise HwccError("the output path (-o) is empty", "name the file or folder to write")
    if path.is_dir() and not folder:
        raise HwccError(
            f"output {output} is a folder", f"name the file to write, e.g. -o {path / 'model.onnx'}"
        )
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HwccError(
            f"cannot write {output}: {parent} is a file, not a folder", "choose another output path"
        )
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise HwccError(
            f"cannot write {output}: {parent} does not accept new files ({e.strerror})",
            "choose an output path in a folder you can write",
        ) from None
