"""``hwcc.compile``: a model, a target and budgets in; a deployable model out.

The steps, each recorded in the artifact's ``hwcc.json``:

1. Load the model (a path or ``zoo:NAME``), price it in the target's legal form (int8 on
   the TPU, fixed point on Eyeriss and EIE; :class:`hwcc.targets.pricing.Pricer`) and
   resolve the budgets once (``50%`` is half of that price).
2. Exact cleanups (:mod:`hwcc.ir.cleanup`), checked in onnxruntime against the input.
3. The search (:func:`hwcc.search.run.search`): the NetAdapt loop, a long-term fine-tune,
   the legal form, and on a measured target the measurement that checks the prediction.
4. The summary (:class:`hwcc.report.summary.CompileSummary`) and, with ``output`` given,
   the artifact, written atomically. A checkpoint after the cleanups and after every
   iteration lets ``resume=True`` continue a killed run. The compile holds ``OUTPUT.lock``
   from its start to its artifact: a second compile told to write the same folder fails
   at once (see :func:`hwcc.report.artifact.output_lock`).

Exit code (:attr:`CompileResult.exit_code`): 0 when every budget and the accuracy floor
are met, 3 otherwise (the best model found is still returned and saved).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwcc.data.activations import split_batches
from hwcc.data.evaluate import Dataset, Evaluator, resolve_data
from hwcc.data.metrics import Metric
from hwcc.errors import BudgetError, HwccError
from hwcc.ir import Graph
from hwcc.ir.cleanup import CLEANUP, cleanup
from hwcc.ir.onnx_io import load, to_proto
from hwcc.ir.specialise import specialise
from hwcc.passes.dequantize import dequantize_for_search
from hwcc.passes.lib.importance import activation_means
from hwcc.progress import PhaseClock
from hwcc.report.artifact import (
    Checkpoint,
    check_destination,
    is_artifact,
    output_lock,
    write_artifact,
)
from hwcc.report.summary import CompileSummary, RunInputs
from hwcc.search.budget import Budget, parse_budget
from hwcc.search.config import SearchConfig
from hwcc.search.finetuning import finetuner, probed, sized, teacher_outputs
from hwcc.search.loop import Hooks
from hwcc.search.run import Finish, search
from hwcc.search.state import SearchState
from hwcc.targets.base import load_target
from hwcc.targets.pricing import Pricer

__all__ = ["compile", "CompileResult", "SearchConfig"]

EXIT_UNMET = 3


@dataclass
class CompileResult:
    """What ``hwcc.compile`` returns.

    Attributes:
        graph: the final model, in the target's legal form.
        summary: everything ``hwcc.json`` holds.
        target: the target object (it writes the payload).
        path: the artifact folder, once saved.
    """

    graph: Graph
    summary: CompileSummary
    target: Any
    path: Path | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        """The final model's metrics as the target predicts them, and its accuracy."""
        return dict(self.summary.final)

    @property
    def budget_met(self) -> bool:
        return bool(self.summary.budget_met)

    @property
    def exit_code(self) -> int:
        return 0 if self.budget_met and self.summary.accuracy_floor_met else EXIT_UNMET

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the artifact folder (atomically); returns its path."""
        self.path, payload = write_artifact(folder, self.graph, self.summary.to_json(), self.target)
        self.summary = self.summary.with_payload(payload)
        return self.path


def _one_writer(compile_fn: Callable[..., CompileResult]) -> Callable[..., CompileResult]:
    """Run a compile that has an ``output`` holding that folder's lock throughout, so that two
    compiles told to write the same folder never mix their checkpoints or artifacts."""

    @functools.wraps(compile_fn)
    def locked(*args: Any, output: str | os.PathLike | None = None, **kwargs: Any) -> CompileResult:
        if output is None:
            return compile_fn(*args, **kwargs)
        with output_lock(output):
            return compile_fn(*args, output=output, **kwargs)

    return locked


@_one_writer
def compile(
    model: str | os.PathLike | Graph,
    target: str,
    budget: str | Budget | Sequence[str | Budget],
    *,
    data: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
    holdout: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
    metric: str | Metric | None = None,
    output: str | os.PathLike | None = None,
    resume: bool = False,
    config: SearchConfig | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    honesty_rounds: int = 3,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    **options: Any,
) -> CompileResult:
    """Compile ``model`` for ``target`` so that it meets every ``budget``.

    Args:
        model: an ``.onnx`` path, ``zoo:NAME``, or a loaded graph.
        target: a target name (``hwcc targets``) or a target ``.toml``.
        budget: one budget or several (``"5ms"``, ``"2mJ"``, ``"1.5MB"``, ``"50%"``), as
            text or parsed (:func:`hwcc.search.budget.parse_budget`).
        data: ``.npz`` (or arrays) with one array per model input and optionally
            ``labels``; ``"zoo:digits"`` for the bundled digits; None: random inputs.
        holdout: a held-out set of its own (else ``data`` is split with the seed).
        metric: how accuracy is measured (:mod:`hwcc.data.metrics`): ``"top1"``,
            ``"per-step"``, ``"binary"``, ``"cosine"``, ``"auto"``/None (picked from the
            original's output), or a callable ``f(output, reference, labels) -> float``.
        output: the artifact folder. When given, the artifact is written there, the run
            checkpoints to ``OUTPUT.checkpoint`` and holds ``OUTPUT.lock`` while it runs.
        resume: continue the run checkpointed for ``output``.
        config: search options; keyword ``options`` override its fields
            (``seed=1, max_accuracy_drop=0.01, passes=("prune_channels",)``).
        input_shapes: fix dynamic input dims.
        honesty_rounds: on a measured target, how often a missed measurement may send the
            search back to work.
        progress: called with ``(event, info)`` as the search goes (see :mod:`hwcc.search.run`).

    Returns:
        A :class:`CompileResult` (saved to ``output`` when given).

    Raises:
        HwccError: bad input (model, target, budget, data, options), said plainly; another
            compile is writing ``output``; its disk is full or not writable.
    """
    start = time.monotonic()
    if data is None and config is None and "max_accuracy_drop" not in options:
        options["max_accuracy_drop"] = None  # on noise, accuracy is no measure to hold a floor to
    config = dataclasses.replace(config or SearchConfig(), **_checked_options(options))
    budgets = _parsed(budget)
    _check_output(output, resume)
    tgt = load_target(target)
    src = model if isinstance(model, Graph) else load(model, input_shapes=input_shapes or {})
    emit = progress or (lambda kind, info: None)
    src, quantized = dequantize_for_search(src, source=_source_name(model))
    quantized = quantized and quantized + _requantized(tgt)
    tune, held, data_warning = resolve_data(src, data, holdout, config.seed)
    specialised = specialise(src, split_batches(src, tune.inputs)[0], config.seed)
    src = specialised.graph
    evaluator = Evaluator(src, held, metric)
    config = sized(config, src, tune)
    teacher = teacher_outputs(src, tune, config)
    clean = cleanup(src, config.seed)  # the probe trains weights, some held in Constant nodes
    config, rate_notice = probed(config, clean, tune, teacher, evaluator.metric)
    finetune = finetuner(src, tune, config, evaluator.metric_name, teacher)
    calib = tune.head(64)  # whole runs, joined on axis 0: what calibration reads
    price = Pricer(tgt, src, tune.head(4), config.seed)
    budgets = [b.resolve(price.original(), tgt.primary_metric) for b in budgets]
    ckpt = _checkpoint(output, resume, src, tune, held, tgt, budgets, config, evaluator.kind)
    notes = [w for w in (quantized, specialised.notice, data_warning, rate_notice) if w]
    notes += price.notes()
    if resume:
        graph, state = _resumed(ckpt, output)
        emit("resumed", {"state": state})
    else:
        graph = clean
        state = SearchState.start(
            _limits(budgets),
            price.original(),
            price(graph),
            evaluator.accuracy(src),
            initial_reduction=config.initial_reduction,
            decay=config.decay,
            max_iterations=config.max_iterations,
            warnings=notes,
            cleanup={"passes": list(CLEANUP), "metrics": price(graph)},
        )
        if ckpt:  # a run killed in its first iteration resumes after the cleanups
            ckpt.save(graph, state.to_json())
    for w in state.warnings:
        emit("warning", {"message": w})
    clock = PhaseClock()
    hooks = Hooks(
        price=clock.timed("pricing", price),
        layer_energy=price.layer_energy,
        finetune=clock.timed("fine-tuning", finetune),
        accuracy=clock.timed("evaluation", evaluator.accuracy),
        checkpoint=(lambda g, s: ckpt.save(g, s.to_json())) if ckpt else (lambda g, s: None),
        event=emit,
        distortion=clock.timed("evaluation", evaluator.distortion),  # ranks the one-shot's layers
        granularity=tgt.channel_granularity(),
        importance=_importance(config, tune),
        int8=tgt.runs_dynamic_int8,
    )
    finish = Finish(
        finetune=clock.timed("long-term fine-tune", finetune),
        legalize=clock.timed("legal form", lambda g: tgt.legalize(g, calib, config.seed)),
        price=clock.timed("pricing", price.cost_metrics),
    )
    outcome = search(
        *(graph, state, config, hooks, finish),
        target=tgt,
        source=src,
        budgets=budgets,
        honesty_rounds=honesty_rounds,
    )
    summary = CompileSummary.make(
        inputs=RunInputs(
            str(model) if not isinstance(model, Graph) else "<graph>",
            _graph_hash(src),
            tune.source,
            tune.sha256,
            held.source,
            held.sha256,
        ),
        target=tgt,
        budgets=budgets,
        state=state,
        outcome=outcome,
        accuracy=evaluator.accuracy(outcome.graph),
        accuracy_interval=evaluator.interval(outcome.graph),
        accuracy_kind=evaluator.kind,
        config=config,
        layers_before=price.cost(price.source_legal).layers,
        layers_after=price.cost(outcome.graph).layers,
        wall_s=time.monotonic() - start,
        phases=clock.seconds,
    )
    result = CompileResult(outcome.graph, summary, tgt)
    if output is not None:
        result.save(output)
        ckpt.remove()
    emit("done", {"result": result})
    return result


# ---------------------------------------------------------------------- pieces
def _parsed(budget: str | Budget | Sequence[str | Budget]) -> list[Budget]:
    given = [budget] if isinstance(budget, (str, Budget)) else list(budget)
    if not given:
        raise BudgetError("no budget given", "give at least one, e.g. budget='5ms' (--budget 5ms)")
    return [b if isinstance(b, Budget) else parse_budget(b) for b in given]


def _importance(config: SearchConfig, tune: Dataset) -> Callable[[Graph], Any] | None:
    """What the ``activation`` criterion measures a network on: its mean activations over
    the first 32 fine-tune samples, once per network the search steps from."""
    if config.criterion != "activation":
        return None
    sample, last = tune.head(32), {}

    def measure(graph: Graph) -> Any:  # the same network again after a halved step: kept
        if last.get("graph") is not graph:
            last.update(graph=graph, means=activation_means(graph, sample))
        return last["means"]

    return measure


def _source_name(model: str | os.PathLike | Graph) -> str:
    """How messages name the input model: its file name, zoo:NAME, or the graph's name."""
    if isinstance(model, Graph):
        return model.name
    text = os.fspath(model)
    return text if text.startswith("zoo:") else Path(text).name


def _check_output(output: str | os.PathLike | None, resume: bool) -> None:
    if output is not None:
        check_destination(output)
    if resume and output is None:
        raise HwccError(
            "resume needs the output folder of the run to continue", "give -o OUT with --resume"
        )


def _limits(budgets: Sequence[Budget]) -> dict[str, float]:
    """Metric -> the tightest resolved budget on it."""
    limits: dict[str, float] = {}
    for b in budgets:
        limits[b.metric] = min(limits.get(b.metric, float("inf")), b.limit)
    return limits


def _checkpoint(
    output: str | os.PathLike | None,
    resume: bool,
    src: Graph,
    tune: Dataset,
    held: Dataset,
    tgt: Any,
    budgets: Sequence[Budget],
    config: SearchConfig,
    metric: str,
) -> Checkpoint | None:
    """The run's checkpoint (None without ``output``); one left by a killed run is refused
    unless ``resume`` asks to continue it."""
    if output is None:
        return None
    fingerprint = {
        "model": _graph_hash(src),
        "data": tune.sha256,
        "holdout": held.sha256,
        "target": tgt.name,
        "budgets": [b.text for b in budgets],
        "config": config.to_dict(),
        "metric": metric,
    }
    ckpt = Checkpoint(f"{output}.checkpoint", fingerprint)
    if ckpt.exists and not resume:
        raise HwccError(
            f"an interrupted run left a checkpoint at {ckpt.folder}",
            "add --resume to continue it, or remove that folder to start afresh",
        )
    return ckpt


def _resumed(ckpt: Checkpoint, output: str | os.PathLike) -> tuple[Graph, SearchState]:
    """The checkpointed graph and state, the state checked field by field.

    Raises:
        HwccError: no checkpoint (saying so when ``output`` is already complete), or one
            that cannot be read.
    """
    if not ckpt.exists and is_artifact(Path(output)):
        raise HwccError(
            f"--resume: {output} is already complete; no checkpoint is left at {ckpt.folder}",
            "nothing to resume; run without --resume to compile it afresh",
        )
    graph, saved = ckpt.load()
    try:
        return graph, SearchState.from_json(saved)
    except ValueError as e:
        raise ckpt.unreadable(str(e)) from None


def _checked_options(options: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(SearchConfig)}
    bad = sorted(set(options) - known)
    if bad:
        raise HwccError(
            f"unknown compile option(s): {', '.join(bad)}", f"known: {', '.join(sorted(known))}"
        )
    out = dict(options)
    if "passes" in out:
        out["passes"] = tuple(out["passes"])
    return out


def _graph_hash(graph: Graph) -> str:
    return hashlib.sha256(to_proto(graph).SerializeToString(deterministic=True)).hexdigest()


def _requantized(target: Any) -> str:
    """How a dequantized input comes back quantized, or that it does not: the end of the
    dequantize notice."""
    again = [p for p in target.legal_form if p.startswith("quantize")]
    if again:
        return f"; the target's legal form quantizes it again ({', '.join(again)})"
    return (
        f"; {target.name}'s legal form does not quantize, so budgets, measurements and the "
        "result are float: quantize the result again for deployment (hwcc apply "
        "quantize_int8 OUT/model.onnx --data D.npz -o Q.onnx, or quantize_dynamic for "
        "MatMul layers) and check its accuracy"
    )
