"""How a data set's arrays map onto the model's runs: samples, stacked runs, or one for all.

A *run* is one call of the model with its declared input shapes. A data set gives one
array per model input, and each array holds that input's values for every run in one of
three layouts, told apart by the array's shape ``A`` against the input's shape ``S``:

1. **one run for all**: ``A == S``, every dim of ``S`` fixed. The same value is fed to
   every run: a recurrent state at zeros ``[2, 1, 128]``, a scalar such as a sample rate
   (a 0-d array for a 0-d input).
2. **stacked runs**: ``A == [R, *S]``, one axis more than the input. Run ``i`` is
   ``A[i]``: a state per run ``[R, 2, 1, 128]``, a scalar per run ``[R]``. This is the
   layout for inputs whose batch is not on axis 0 (LSTM states ``[layers, batch,
   hidden]``) and for models whose axis 0 is time.
3. **samples on axis 0**: ``A == [N, *S[1:]]``, the input's rank. The samples are cut
   into runs of the input's axis 0: ``R = N / S[0]`` runs, ``N`` a multiple of ``S[0]``
   (for a model whose axis 0 is time, consecutive frames). When ``S[0]`` is not fixed,
   every sample is a run of its own and runs of any size may be formed.

Rule 1 wins where rule 3 also fits (an array holding exactly one run's samples): both
mean one run, and rule 1 also feeds it to every other run. A dim of ``S`` that is not
fixed matches any size. Every array that is not rule 1 must give the same number of
runs ``R`` (rule-1 arrays alone: one run).

The data's *samples* are what labels count, fine-tuning batches and reports name:
``samples_per_run`` of them per run, the ``S[0]`` of the first input in layout 3 (else
of the first in layout 1, else one sample per run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from hwcc.errors import HwccError

__all__ = ["SAME", "RUNS", "SAMPLES", "InputLayout", "Layout", "data_layout", "input_layout"]

SAME, RUNS, SAMPLES = "same", "runs", "samples"
Shape = Sequence[int | str | None]


@dataclass(frozen=True)
class InputLayout:
    """How one input's array holds its runs.

    Attributes:
        kind: :data:`SAME` (one run for all), :data:`RUNS` (stacked) or :data:`SAMPLES`.
        step: samples per run (:data:`SAMPLES`); 1 for the others.
        free: :data:`SAMPLES` for an input whose axis 0 is not fixed (runs of any size).
    """

    kind: str
    step: int = 1
    free: bool = False


@dataclass(frozen=True)
class Layout:
    """How every input's array holds the runs, and how many runs there are.

    Attributes:
        inputs: input name -> its :class:`InputLayout`.
        runs: the number of runs ``R``.
        samples_per_run: how many samples one run holds (see the module docstring).
    """

    inputs: dict[str, InputLayout]
    runs: int
    samples_per_run: int = 1

    @property
    def samples(self) -> int:
        """All the samples: ``runs * samples_per_run``."""
        return self.runs * self.samples_per_run

    @property
    def mergeable(self) -> bool:
        """Every input that varies holds samples on a free axis 0: runs may be joined."""
        varying = [x for x in self.inputs.values() if x.kind != SAME]
        return bool(varying) and all(x.kind == SAMPLES and x.free for x in varying)

    def with_runs(self, runs: int) -> Layout:
        return replace(self, runs=runs)

    def take(self, arrays: Mapping[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
        """The runs ``index`` (in that order) of ``arrays``, each input in its layout."""
        index = np.asarray(index, dtype=np.int64)
        out = {}
        for name, a in arrays.items():
            x = self.inputs[name]
            if x.kind == SAME:
                out[name] = a
            elif x.kind == RUNS:
                out[name] = a[index]
            else:
                runs = a.reshape(self.runs, x.step, *a.shape[1:])
                out[name] = runs[index].reshape(len(index) * x.step, *a.shape[1:])
        return out

    def run(self, arrays: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
        """Run ``i``'s feed: every array in its input's own shape."""
        out = {}
        for name, a in arrays.items():
            x = self.inputs[name]
            if x.kind == SAME:
                out[name] = a
            elif x.kind == RUNS:
                out[name] = a[i]
            else:
                out[name] = a[i * x.step : (i + 1) * x.step]
        return out

    def joined(self, arrays: Mapping[str, np.ndarray], runs: int) -> dict[str, np.ndarray]:
        """The first ``runs`` runs with each input's runs joined along its axis 0: the layout
        readers that know only samples on axis 0 accept (a 0-d input: its first run's value).
        """
        out = {}
        for name, a in arrays.items():
            x = self.inputs[name]
            if x.kind == SAMPLES:
                out[name] = a[: runs * x.step]
                continue
            one = a if x.kind == SAME else a[0]
            if one.ndim == 0:
                out[name] = one
            elif x.kind == SAME:
                out[name] = np.concatenate([a] * runs) if runs > 1 else a
            else:
                out[name] = a[:runs].reshape(runs * a.shape[1], *a.shape[2:])
        return out


def _fixed(d) -> bool:
    return isinstance(d, int) and d >= 0


def _fits(dims: Sequence[int], want: Shape) -> bool:
    return len(dims) == len(want) and all(not _fixed(w) or d == w for d, w in zip(dims, want))


def _show(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def input_layout(source: str, name: str, shape: Shape, a: np.ndarray) -> tuple[InputLayout, int]:
    """The layout of input ``name``'s array ``a`` (the input has ``shape``), and its runs.

    Raises:
        HwccError: ``a`` fits none of the layouts, holds no samples, or holds a number of
            samples that is not a multiple of the input's axis 0.
    """
    shape = tuple(shape or ())
    dims = tuple(a.shape)
    if all(_fixed(d) for d in shape) and dims == shape:
        return InputLayout(SAME), 1
    if len(dims) == len(shape) + 1 and _fits(dims[1:], shape):
        if dims[0] == 0:
            raise HwccError(f"{source}: array {name!r} holds no runs ({_show(dims)})")
        return InputLayout(RUNS), dims[0]
    if shape and len(dims) == len(shape) and _fits(dims[1:], shape[1:]):
        n, b = dims[0], shape[0]
        if n == 0:
            raise HwccError(f"{source}: array {name!r} holds no samples ({_show(dims)})")
        if not _fixed(b) or b == 0:
            return InputLayout(SAMPLES, 1, free=True), n
        if n % b:
            raise HwccError(
                f"{source}: array {name!r} holds {n} samples, which do not split into runs "
                f"of the model's batch {b} (input {name!r} is {_show(shape)})",
                f"give a positive multiple of {b} samples",
            )
        return InputLayout(SAMPLES, b), n // b
    raise HwccError(_misfit(source, name, shape, dims), _layouts_hint(shape))


def _misfit(source: str, name: str, shape: tuple, dims: tuple) -> str:
    if not dims:
        return f"{source}: array {name!r} is a single value, the model's input takes {_show(shape)}"
    if shape and len(dims) == len(shape):
        return (
            f"{source}: array {name!r} has samples of shape {_show(dims[1:])}, the model's "
            f"input takes {_show(shape[1:])} after axis 0 (input {_show(shape)})"
        )
    return f"{source}: array {name!r} of shape {_show(dims)} does not fit input {_show(shape)}"


def _layouts_hint(shape: tuple) -> str:
    ways = [f"{_show(shape)} (one run, fed to every run)", f"{_show(('R', *shape))} (R runs)"]
    if shape:
        ways.append(f"{_show(('N', *shape[1:]))} (samples on axis 0, N a multiple of {shape[0]})")
    return "give the array as " + ", or ".join(ways)


def data_layout(
    shapes: Mapping[str, Shape], arrays: Mapping[str, np.ndarray], source: str = "the data"
) -> Layout:
    """The layout of ``arrays`` (by input name) for inputs of ``shapes``.

    Raises:
        HwccError: an array fits no layout (:func:`input_layout`), or the arrays give
            different numbers of runs (the message lists each array's count).
    """
    layouts, counts = {}, {}
    for name, a in arrays.items():
        layouts[name], runs = input_layout(source, name, shapes[name], np.asarray(a))
        if layouts[name].kind != SAME:
            counts[name] = runs
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{k} {_how(layouts[k], v, arrays[k])}" for k, v in counts.items())
        raise HwccError(
            f"{source}: the arrays give different numbers of runs: {listed}",
            "give every input the same number of runs, or one run for all (an array of the "
            "input's exact shape, such as a state at zeros)",
        )
    runs = next(iter(counts.values()), 1)
    return Layout(layouts, runs, _samples_per_run(shapes, layouts))


def _how(x: InputLayout, runs: int, a: np.ndarray) -> str:
    if x.kind == RUNS:
        return f"{runs} (a stack of runs, shape {_show(a.shape)})"
    if x.free:
        return f"{runs} (one per sample)"
    return f"{runs} ({len(a)} samples in runs of {x.step})"


def _samples_per_run(shapes: Mapping[str, Shape], layouts: Mapping[str, InputLayout]) -> int:
    for name, x in layouts.items():
        if x.kind == SAMPLES:
            return x.step
    for name, x in layouts.items():
        shape = tuple(shapes[name] or ())
        if x.kind == SAME and shape and _fixed(shape[0]) and shape[0] > 0:
            return shape[0]
    return 1
