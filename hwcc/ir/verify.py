"""Checking a rewrite numerically: run the original and the transformed model through
onnxruntime on the same inputs and compare every output.

Sessions run on the CPU provider with onnxruntime's graph optimisations disabled, so the
comparison is of the two models as written, not of what onnxruntime's own rewrites
(constant folding, fusions) make of them. This is the module that owns onnxruntime for
checking; ``hwcc.data.evaluate`` owns it for accuracy. Where ``OMP_NUM_THREADS`` caps a
process's threads (a tuning job's worker holds one CPU), a session's intra-op pool keeps to
it as torch and the BLAS do: onnxruntime reads only its own setting, and its default of a
thread per core had two jobs spin four threads on two cores.

Tolerances are always explicit arguments: an output passes when, element by element,
``|transformed - original| <= atol + rtol * |original|`` (``numpy.allclose`` with the
original as the reference), shapes are equal, and NaNs sit in the same places.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from hwcc.errors import HwccError
from hwcc.ir import Graph, onnx_io
from hwcc.ir.dtypes import numpy_dtype

__all__ = ["OutputCheck", "Verification", "compare", "random_feeds", "run_onnx", "thread_cap"]

Model = Graph | onnx.ModelProto | str | os.PathLike
Feeds = Mapping[str, np.ndarray]

_INT_HIGH = 4  # random integer inputs lie in [0, 4): valid as indices into any non-empty axis
_ORT_STATE = ort.capi.onnxruntime_pybind11_state
_ORT_ERRORS = (RuntimeError, ValueError) + tuple(
    getattr(_ORT_STATE, n)
    for n in (
        "Fail",
        "InvalidArgument",
        "NoSuchFile",
        "NoModel",
        "EngineError",
        "RuntimeException",
        "InvalidProtobuf",
        "NotImplemented",
        "InvalidGraph",
        "EPFail",
    )
    if hasattr(_ORT_STATE, n)
)


@dataclass(frozen=True)
class OutputCheck:
    """One output's comparison, worst case over the inputs tried.

    Attributes:
        name: the output's name.
        shape: its shape in the original model.
        max_abs_err: largest ``|transformed - original|``.
        max_rel_err: largest ``|transformed - original| / max(|original|, |transformed|)``
            (0 where both are 0).
        passed: within tolerance, same shape, NaNs in the same places.
        note: why it failed when the values could not even be compared.
    """

    name: str
    shape: tuple[int, ...]
    max_abs_err: float
    max_rel_err: float
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class Verification:
    """The result of :func:`compare`."""

    passed: bool
    max_abs_err: float
    max_rel_err: float
    rtol: float
    atol: float
    samples: int
    outputs: tuple[OutputCheck, ...]

    def summary(self) -> str:
        """One line, plus a line per failing output."""
        verdict = "passed" if self.passed else "FAILED"
        lines = [
            f"verification {verdict}: max abs err {self.max_abs_err:.3g}, max rel err "
            f"{self.max_rel_err:.3g} (rtol={self.rtol:g}, atol={self.atol:g}, "
            f"{self.samples} input set{'s' if self.samples != 1 else ''})"
        ]
        for o in self.outputs:
            if not o.passed:
                why = o.note or f"max abs err {o.max_abs_err:.3g}, max rel err {o.max_rel_err:.3g}"
                lines.append(f"  output {o.name!r} {list(o.shape)}: {why}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- running
def run_onnx(model: Model, feeds: Feeds) -> list[np.ndarray]:
    """Run a model once in onnxruntime (CPU, graph optimisations disabled).

    Args:
        model: an IR graph, a ``ModelProto`` or a path to an ``.onnx`` file.
        feeds: a value for every input that is not an initializer, by name.

    Returns:
        The outputs, in the model's output order.

    Raises:
        HwccError: onnxruntime cannot load or run the model, or an input is missing.
    """
    return Session(model).run(feeds)


def thread_cap() -> int:
    """``OMP_NUM_THREADS`` when it holds a whole number above 0, else 0 (onnxruntime's
    default: a thread per core)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 0


class Session:
    """An onnxruntime session over one model, reused across input sets."""

    def __init__(self, model: Model):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        opts.intra_op_num_threads = thread_cap()
        try:
            with _model_source(model) as src:
                self.session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        except _ORT_ERRORS as e:
            raise HwccError(
                f"onnxruntime cannot load the model: {_first_line(e)}",
                "check the model with onnx.checker; a model with ops onnxruntime does not have "
                "(custom domains) cannot be verified: run it without verification",
            ) from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise HwccError(
                f"no value given for model input(s) {', '.join(missing)}",
                "give a value for every input that is not an initializer",
            )
        try:
            return self.session.run(None, {n: feeds[n] for n in self.input_names})
        except _ORT_ERRORS as e:
            raise HwccError(f"onnxruntime failed to run the model: {_first_line(e)}") from None


class _model_source:
    """Context manager giving what ``InferenceSession`` takes: bytes, or a path for models
    too large to serialise in memory (protobuf's 2 GB limit)."""

    def __init__(self, model: Model):
        self.model, self.tmp = model, None

    def __enter__(self) -> bytes | str:
        m = self.model
        if isinstance(m, (str, os.PathLike)):
            return os.fspath(m)
        if isinstance(m, Graph):
            if sum(a.nbytes for a in m.initializers.values()) > onnx_io.EXTERNAL_THRESHOLD:
                self.tmp = tempfile.TemporaryDirectory()
                return str(onnx_io.save(m, Path(self.tmp.name) / "model.onnx"))
            m = onnx_io.to_proto(m)
        return m.SerializeToString()

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ---------------------------------------------------------------------- inputs
def random_feeds(
    graph: Graph | onnx.ModelProto | str | os.PathLike, seed: int
) -> dict[str, np.ndarray]:
    """Random values for every real (non-initializer) input of a model.

    Floats are standard normal, integers uniform in ``[0, 4)`` (valid as indices and
    small counts), booleans fair coin flips. The same seed gives the same values.

    Raises:
        HwccError: an input has a dynamic dimension, a non-tensor type, or an element
            type with no numpy equivalent.
    """
    if not isinstance(graph, Graph):
        graph = onnx_io.load(graph, allow_dynamic=True)
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.real_inputs():
        t = graph.tensors[name]
        if "type_proto" in t.meta:
            raise HwccError(
                f"input {name!r} is not a tensor; random inputs cannot be made for it",
                "give the inputs explicitly (feeds=...)",
            )
        if not t.is_static:
            raise HwccError(
                f"input {name!r} has dynamic shape {t.shape}; random inputs need fixed dims",
                f"fix it when loading, e.g. --input-shape {name}:1x...",
            )
        try:
            dtype = numpy_dtype(t.elem_type)
        except KeyError:
            raise HwccError(
                f"input {name!r} has element type {t.elem_type}, which numpy cannot hold",
                "give the inputs explicitly (feeds=...)",
            ) from None
        feeds[name] = _random_array(rng, t.shape, dtype)
    return feeds


def _random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "fc":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, _INT_HIGH, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    raise HwccError(
        f"cannot make random inputs of dtype {dtype}", "give the inputs explicitly (feeds=...)"
    )


# ---------------------------------------------------------------------- comparing
def compare(
    original: Model,
    transformed: Model,
    *,
    rtol: float,
    atol: float,
    feeds: Feeds | Sequence[Feeds] | None = None,
    n: int = 2,
    seed: int = 0,
) -> Verification:
    """Run both models on the same inputs and compare every output by name.

    Args:
        original: the reference model.
        transformed: the rewritten model; it must keep the original's output names.
        rtol: relative tolerance.
        atol: absolute tolerance.
        feeds: input sets to use; by default ``n`` sets from :func:`random_feeds` of the
            original, with seeds ``seed, seed + 1, ...``.
        n: how many random input sets to try when ``feeds`` is not given.
        seed: the first seed.

    Returns:
        The worst error over all input sets, per output and overall.
    """
    if feeds is None:
        sets = [random_feeds(original, seed + i) for i in range(n)]
    elif isinstance(feeds, Mapping):
        sets = [feeds]
    else:
        sets = list(feeds)
    ref, new = Session(original), Session(transformed)
    checks: dict[str, OutputCheck] = {}
    for f in sets:
        want = dict(zip(ref.output_names, ref.run(f)))
        got = dict(zip(new.output_names, new.run(f)))
        for name, a in want.items():
            c = _check(name, a, got.get(name), rtol, atol)
            checks[name] = _worse(checks.get(name), c)
    outs = tuple(checks.values())
    return Verification(
        passed=all(c.passed for c in outs),
        max_abs_err=max((c.max_abs_err for c in outs), default=0.0),
        max_rel_err=max((c.max_rel_err for c in outs), default=0.0),
        rtol=rtol,
        atol=atol,
        samples=len(sets),
        outputs=outs,
    )


def _check(name: str, a: np.ndarray, b: np.ndarray | None, rtol: float, atol: float) -> OutputCheck:
    a = np.asarray(a)
    shape = tuple(a.shape)
    if b is None:
        return OutputCheck(name, shape, np.inf, np.inf, False, "missing from the transformed model")
    b = np.asarray(b)
    if a.shape != b.shape:
        return OutputCheck(name, shape, np.inf, np.inf, False, f"shape changed to {list(b.shape)}")
    if a.dtype.kind in "OSU" or b.dtype.kind in "OSU":
        same = bool(np.array_equal(a, b))
        err = 0.0 if same else np.inf
        return OutputCheck(name, shape, err, err, same, "" if same else "values differ")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(a64) & np.isnan(b64)
    diff = np.where(both_nan, 0.0, np.abs(b64 - a64))
    scale = np.maximum(np.abs(a64), np.abs(b64))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(diff == 0, 0.0, diff / scale)
    passed = bool(np.allclose(b64, a64, rtol=rtol, atol=atol, equal_nan=True))
    abs_err = float(np.nanmax(diff, initial=0.0)) if diff.size else 0.0
    rel_err = float(np.nanmax(rel, initial=0.0)) if rel.size else 0.0
    if np.isnan(diff).any():  # NaN on one side only
        abs_err = rel_err = np.inf
    return OutputCheck(name, shape, abs_err, rel_err, passed)


def _worse(old: OutputCheck | None, new: OutputCheck) -> OutputCheck:
    if old is None:
        return new
    return OutputCheck(
        new.name,
        new.shape,
        max(old.max_abs_err, new.max_abs_err),
        max(old.max_rel_err, new.max_rel_err),
        old.passed and new.passed,
        old.note or new.note,
    )
