"""``hwcc.compile``: a model, a target and budgets in; a deployable model out.

The steps, each recorded in the artifact's ``hwcc.json``:

1. Load the model (a path or ``zoo:NAME``), price it in the target's legal form (int8 on
   the TPU, fixed point on Eyeriss and EIE: the target's ``legal_form``) and resolve the
   budgets (``50%`` is half of that price).
2. Exact cleanups (BatchNormalization folding, constant folding, dead code), checked in
   onnxruntime against the input.
3. The NetAdapt loop (:mod:`hwcc.search.loop`), then a long-term fine-tune.
4. The legal form, priced and evaluated: the final metrics. On a measured target (this
   machine's CPU) the final model is also timed in onnxruntime beside the input model;
   if the measurement misses a latency budget the prediction met, the limit is tightened
   by the ratio and the loop goes on (at most ``honesty_rounds`` times).
5. The artifact, written atomically; with ``output`` given, a checkpoint after the cleanups
   and after every iteration lets ``resume=True`` continue a killed run. The compile holds
   ``OUTPUT.lock`` from its start to its artifact: a second compile told to write the same
   folder fails at once (see :func:`hwcc.report.artifact.output_lock`).

Exit code (:attr:`CompileResult.exit_code`): 0 when every budget and the accuracy floor
are met, 3 otherwise (the best model found is still returned and saved).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from hwcc.report.artifact import Checkpoint, check_destination, check_fields, is_artifact, output_lock, write_artifact
from hwcc.search.budget import Budget, parse_budget
from hwcc.errors import BudgetError, HwccError
from hwcc.ir import Graph
from hwcc.search.loop import METRICS, Hooks, SearchConfig, new_state, run_loop, tighten, unmet

__all__ = ["compile", "CompileResult", "SearchConfig"]

CLEANUP = ("fold_batchnorm", "fold_constants", "eliminate_dead")
EXIT_UNMET = 3


@dataclass
class CompileResult:
    """What ``hwcc.compile`` returns.

    Attributes:
        graph: the final model, in the target's legal form.
        summary: everything ``hwcc.json`` holds (see :mod:`hwcc.report.artifact`).
        target: the target object (it writes the payload).
        path: the artifact folder, once saved.
    """

    graph: Graph
    summary: dict[str, Any]
    target: Any
    path: Path | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        """The final model's metrics as the target predicts them, and its accuracy."""
        return dict(self.summary["final"])

    @property
    def budget_met(self) -> bool:
        return bool(self.summary["budget_met"])

    @property
    def exit_code(self) -> int:
        return 0 if self.budget_met and self.summary["accuracy_floor_met"] else EXIT_UNMET

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the artifact folder (atomically); returns its path."""
        self.path = write_artifact(folder, self.graph, self.summary, self.target)
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
def compile(model: str | os.PathLike | Graph, target: str, budget: str | Sequence[str], *,
            data: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
            holdout: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
            output: str | os.PathLike | None = None, resume: bool = False,
            config: SearchConfig | None = None, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
            honesty_rounds: int = 3, progress: Callable[[str, dict[str, Any]], None] | None = None,
            **options: Any) -> CompileResult:
    """Compile ``model`` for ``target`` so that it meets every ``budget``.

    Args:
        model: an ``.onnx`` path, ``zoo:NAME``, or a loaded graph.
        target: a target name (``hwcc targets``) or a target ``.toml``.
        budget: one budget or several (``"5ms"``, ``"2mJ"``, ``"1.5MB"``, ``"50%"``).
        data: ``.npz`` (or arrays) with one array per model input and optionally
            ``labels``; ``"zoo:digits"`` for the bundled digits; None: random inputs.
        holdout: a held-out set of its own (else ``data`` is split with the seed).
        output: the artifact folder. When given, the artifact is written there, the run
            checkpoints to ``OUTPUT.checkpoint`` and holds ``OUTPUT.lock`` while it runs.
        resume: continue the run checkpointed for ``output``.
        config: search options; keyword ``options`` override its fields
            (``seed=1, max_accuracy_drop=0.01, passes=("prune_channels",)``).
        input_shapes: fix dynamic input dims.
        honesty_rounds: on a measured target, how often a missed measurement may send the
            search back to work.
        progress: called with ``(event, info)`` as the search goes (see :mod:`hwcc.cli.commands`).

    Returns:
        A :class:`CompileResult` (saved to ``output`` when given).

    Raises:
        HwccError: bad input (model, target, budget, data, options), said plainly; another
            compile is writing ``output``; its disk is full or not writable.
    """
    import hwcc
    from hwcc.data.evaluate import Evaluator, resolve_data
    from hwcc.targets.base import load_target

    start = time.monotonic()
    config = replace(config or SearchConfig(), **_checked_options(options))
    budgets = [parse_budget(b) for b in ([budget] if isinstance(budget, str) else list(budget))]
    if not budgets:
        raise BudgetError("no budget given", "give at least one, e.g. budget='5ms' (--budget 5ms)")
    if output is not None:
        check_destination(output)
    if resume and output is None:
        raise HwccError("resume needs the output folder of the run to continue", "give -o OUT with --resume")
    tgt = load_target(target)
    src = model if isinstance(model, Graph) else hwcc.load(model, input_shapes=input_shapes or {})
    emit = progress or (lambda kind, info: None)

    tune, held, data_warning = resolve_data(src, data, holdout, config.seed)
    warnings = [data_warning] if data_warning else []
    evaluator = Evaluator(src, held)
    calib = {k: v[:64] for k, v in tune.inputs.items()}
    legal = _Legalizer(tgt, calib, config.seed)
    # Pricing needs the legal form's types and shapes, not good ranges: a few samples calibrate it.
    price = _Pricer(tgt, _Legalizer(tgt, {k: v[:4] for k, v in calib.items()}, config.seed), src)
    teacher = None if tune.labels is not None else _outputs(src, tune.inputs)
    if config.short_term_steps > 0 or config.long_term_steps > 0:
        from hwcc.train.finetune import to_torch

        to_torch(src)  # an op the fine-tuner cannot run is reported now, not mid-search

    def finetune(g: Graph, steps: int, seed: int) -> Graph:
        if steps <= 0:
            return g
        from hwcc.train.finetune import finetune as run

        return run(g, tune.inputs, tune.labels, teacher=teacher, steps=steps, lr=config.lr,
                   batch_size=config.batch_size, seed=seed, optimizer=config.optimizer).graph

    original = price.legal(src)
    limits = _limits(budgets, original, tgt.primary_metric)
    fingerprint = {"model": _graph_hash(src), "data": tune.sha256, "holdout": held.sha256, "target": tgt.name,
                   "budgets": [b.text for b in budgets], "config": config.to_dict()}
    ckpt = Checkpoint(f"{output}.checkpoint", fingerprint) if output is not None else None
    if ckpt is not None and ckpt.exists and not resume:
        raise HwccError(f"an interrupted run left a checkpoint at {ckpt.folder}",
                        "add --resume to continue it, or remove that folder to start afresh")
    if resume:
        graph, state = _resumed(ckpt, output)
        emit("resumed", {"state": state})
    else:
        graph = _cleanup(src, config.seed)
        acc0 = evaluator.accuracy(src)
        state = new_state(graph, limits, original, acc0, config)
        state["current"] = price(graph)
        state["warnings"] = warnings + state["warnings"]
        state["rounds"] = []
        state["cleanup"] = {"passes": list(CLEANUP), "metrics": dict(state["current"])}
        if ckpt:  # a run killed in its first iteration resumes after the cleanups
            ckpt.save(graph, state)
    for w in state["warnings"]:
        emit("warning", {"message": w})

    hooks = Hooks(price=price, layer_energy=price.layer_energy, finetune=finetune,
                  accuracy=evaluator.accuracy, checkpoint=(ckpt.save if ckpt else (lambda g, s: None)), event=emit)
    while True:
        graph, state = run_loop(graph, state, config, hooks)
        emit("long_term", {"steps": config.long_term_steps})
        tuned = finetune(graph, config.long_term_steps, config.seed + 1_000_003 * (len(state["rounds"]) + 1))
        final = legal(tuned)
        final_metrics = price.metrics(final)
        measured = _measure(tgt, src, final, budgets, original, final_metrics, state)
        miss = measured.get("miss") if measured else None
        if not miss or unmet(state) or len(state["rounds"]) >= honesty_rounds:
            break
        metric, got, limit, predicted = miss
        new = tighten(state, metric, predicted * limit / got)
        state["rounds"].append({"after_iteration": state["iteration"], "measured_s": got, "measured_limit_s": limit,
                                "predicted_s": predicted, "new_search_limit_s": new})
        state["stop"] = None
        emit("warning", {"message": f"measured {got * 1e6:.1f} us misses the latency budget ({limit * 1e6:.1f} us) "
                                    f"that the prediction ({predicted * 1e6:.1f} us) met; the search goes on with "
                                    f"a predicted limit of {new * 1e6:.1f} us"})
        if ckpt:
            ckpt.save(graph, state)

    accuracy = evaluator.accuracy(final)
    summary = _summary(src, model, tgt, budgets, original, final_metrics, accuracy, state, measured, config,
                       tune, held, evaluator, price, final, data, time.monotonic() - start)
    result = CompileResult(final, summary, tgt)
    if output is not None:
        result.save(output)
        ckpt.remove()
    emit("done", {"result": result})
    return result


# ---------------------------------------------------------------------- pieces
_NUMBER = (int, float)
_STATE_FIELDS = {"iteration": int, "limits": dict, "original": dict, "current": dict,
                 "accuracy0": (int, float, type(None)), "accuracy": (int, float, type(None)), "schedule": dict,
                 "warnings": list, "history": list, "proposals": list, "rejected": list, "rounds": list,
                 "stop": (str, type(None))}


def _resumed(ckpt: Checkpoint, output: str | os.PathLike) -> tuple[Graph, dict[str, Any]]:
    """The checkpointed graph and state, after checking the state holds what the search
    reads: an edited or damaged ``state.json`` is refused here, not met as a traceback later.

    Raises:
        HwccError: no checkpoint (saying so when ``output`` is already complete), or one
            that cannot be read.
    """
    if not ckpt.exists and is_artifact(Path(output)):
        raise HwccError(f"--resume: {output} is already complete; no checkpoint is left at {ckpt.folder}",
                        "nothing to resume; run without --resume to compile it afresh")
    graph, state = ckpt.load()
    try:
        check_fields(state, _STATE_FIELDS, "the state")
        check_fields(state["schedule"], {"r0": _NUMBER, "decay": _NUMBER}, "the state's schedule")
        for key in ("original", "current"):
            check_fields(state[key], dict.fromkeys(METRICS, _NUMBER), f"the state's {key!r}")
        check_fields(state["limits"], dict.fromkeys(state["limits"], _NUMBER), "the state's 'limits'")
        unknown = sorted(set(state["limits"]) - set(METRICS))
        if unknown:
            raise ValueError(f"the state's 'limits' name unknown metrics: {', '.join(unknown)}")
        for key in ("history", "proposals", "rejected", "rounds"):
            if not all(isinstance(x, dict) for x in state[key]):
                raise ValueError(f"the state's {key!r} holds something other than objects")
    except ValueError as e:
        raise ckpt.unreadable(str(e)) from None
    return graph, state


def _checked_options(options: Mapping[str, Any]) -> dict[str, Any]:
    known = set(SearchConfig.__dataclass_fields__)
    bad = sorted(set(options) - known)
    if bad:
        raise HwccError(f"unknown compile option(s): {', '.join(bad)}", f"known: {', '.join(sorted(known))}")
    out = dict(options)
    if "passes" in out:
        out["passes"] = tuple(out["passes"])
    return out


class _Legalizer:
    """The target's legal form of a graph: its ``legal_form`` passes, in order."""

    def __init__(self, target: Any, calib: Mapping[str, np.ndarray], seed: int):
        self.form: dict[str, dict[str, Any]] = dict(getattr(target, "legal_form", {}) or {})
        self.calib, self.seed = calib, seed

    def __call__(self, graph: Graph) -> Graph:
        from hwcc.ir.transform import PassContext, get_pass

        for name, knobs in self.form.items():
            ctx = PassContext(knobs={name: dict(knobs)}, data=self.calib, seed=self.seed, verify=False)
            graph = get_pass(name)(graph, ctx).graph
        return graph


class _Pricer:
    """Metrics of a graph as the target prices it, in the target's legal form.

    When legalizing the input model leaves its latency and energy unchanged, the search
    prices float graphs directly (legalizing every proposal would cost far more than
    pricing it) and scales their size by the legal form's bits per weight (the input's
    legal size over its float size: the legal forms change every weight's width alike).
    The final model is always priced in its legal form.
    """

    def __init__(self, target: Any, legal: _Legalizer, src: Graph):
        self.target, self.legalize = target, legal
        self.cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.size_scale = 1.0
        self.direct = not legal.form
        if legal.form:
            raw, lawful = self.metrics(src), self.metrics(legal(src))
            self.direct = all(raw[m] == lawful[m] for m in ("latency_s", "energy_j"))
            self.size_scale = lawful["size_bytes"] / raw["size_bytes"] if raw["size_bytes"] else 1.0

    def metrics(self, graph: Graph) -> dict[str, float]:
        cost = self.target.cost(graph)
        size = sum(lc.layer.weight_bytes for lc in cost.layers)
        return {"latency_s": float(cost.latency_s), "energy_j": float(cost.energy_j), "size_bytes": float(size)}

    def __call__(self, graph: Graph) -> dict[str, float]:
        if graph not in self.cache:
            if self.direct:
                m = self.metrics(graph)
                self.cache[graph] = {**m, "size_bytes": m["size_bytes"] * self.size_scale}
            else:
                self.cache[graph] = self.metrics(self.legalize(graph))
        return self.cache[graph]

    def legal(self, graph: Graph) -> dict[str, float]:
        return self.metrics(self.legalize(graph))

    def layer_energy(self, graph: Graph) -> dict[str, float]:
        cost = self.target.cost(graph if self.direct else self.legalize(graph))
        return {lc.layer.name: lc.cost.energy_j for lc in cost.layers}


def _limits(budgets: Sequence[Budget], original: Mapping[str, float], primary: str) -> dict[str, float]:
    limits: dict[str, float] = {}
    for b in budgets:
        r = b.resolve(original, primary)
        limits[r.metric] = min(limits.get(r.metric, float("inf")), r.limit)
    return limits


def _cleanup(graph: Graph, seed: int) -> Graph:
    from hwcc.ir.transform import PassContext, PassManager

    return PassManager(list(CLEANUP), PassContext(seed=seed, verify=True)).run(graph).graph


def _outputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    from hwcc.data.activations import split_batches
    from hwcc.ir.verify import Session

    s = Session(graph)
    return np.concatenate([s.run(f)[0] for f in split_batches(graph, inputs)])


def _graph_hash(graph: Graph) -> str:
    from hwcc.ir.onnx_io import to_proto

    return hashlib.sha256(to_proto(graph).SerializeToString(deterministic=True)).hexdigest()


def _measure(target: Any, src: Graph, final: Graph, budgets: Sequence[Budget], original: Mapping[str, float],
             predicted: Mapping[str, float], state: dict[str, Any]) -> dict[str, Any] | None:
    """On a measured target: the input and final models timed side by side, and a latency
    budget the measurement misses (``miss``: metric, measured, predicted)."""
    measure = getattr(target, "measure_latency", None)
    if measure is None or getattr(target, "provenance", "model") != "measured":
        return None
    t0, t1 = measure([src, final])
    out: dict[str, Any] = {"original_latency_s": t0, "final_latency_s": t1}
    for b in budgets:
        r = b.resolve(original, target.primary_metric)
        if r.metric != "latency_s":
            continue
        limit = t0 * b.fraction if b.is_relative else r.limit  # a relative budget against the measured input
        out.setdefault("limits_s", []).append(limit)
        if t1 > limit and "miss" not in out:
            out["miss"] = ("latency_s", t1, limit, predicted["latency_s"])
    out["budget_met"] = "miss" not in out
    return out


def _summary(src, model, tgt, budgets, original, final, accuracy, state, measured, config, tune, held,
             evaluator, price, final_graph, data, wall) -> dict[str, Any]:
    from hwcc import __version__

    user_limits = state.get("user_limits", state["limits"])
    b_out = []
    for b in budgets:
        r = b.resolve(original, tgt.primary_metric)
        b_out.append({"text": b.text, "metric": r.metric, "limit": r.limit, "met": final[r.metric] <= r.limit})
    predicted_met = all(x["met"] for x in b_out)
    measured_met = True if not measured else measured["budget_met"]
    floor = None if config.max_accuracy_drop is None or state["accuracy0"] is None else \
        state["accuracy0"] - config.max_accuracy_drop
    floor_met = floor is None or accuracy is None or accuracy >= floor - 1e-12
    met = predicted_met and measured_met
    reason = state["stop"] or ""
    if met and not floor_met:
        reason = f"budgets met, but accuracy {accuracy:.2%} is below the floor {floor:.2%}"
    elif predicted_met and not measured_met:
        reason = "the prediction meets the budget but the measured latency does not"
    elif not predicted_met and state["stop"] == "every budget met":
        reason = "the search met every budget, but the final model in the target's legal form does not"
    if met and state["iteration"] == 0 and reason == "every budget met":
        reason = f"every budget met by the exact cleanups alone ({', '.join(CLEANUP)}); no search step was needed"
    before = {lc.layer.name: lc for lc in tgt.cost(price.legalize(src)).layers}
    after = {lc.layer.name: lc for lc in tgt.cost(final_graph).layers}
    layers = []
    for name in list(before) + [n for n in after if n not in before]:
        b, a = before.get(name), after.get(name)
        ref = b or a
        if ref.layer.kind == "constant":
            continue
        layers.append({"name": name, "op_type": ref.layer.op_type, "on": (a or b).on,
                       "before": _lc(b), "after": _lc(a)})
    return {
        "hwcc_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": {"model": str(model) if not isinstance(model, Graph) else "<graph>", "sha256": _graph_hash(src),
                  "data": tune.source, "data_sha256": tune.sha256, "holdout": held.source,
                  "holdout_sha256": held.sha256},
        "target": {"name": tgt.name, "provenance": tgt.provenance, "primary_metric": tgt.primary_metric,
                   "description": tgt.description},
        "budgets": b_out, "user_limits": user_limits, "search_limits": state["limits"],
        "accuracy_kind": evaluator.kind,
        "original": {**original, "accuracy": state["accuracy0"]},
        "final": {**final, "accuracy": accuracy},
        "measured": {k: v for k, v in measured.items() if k != "miss"} if measured else None,
        "budget_met": met, "accuracy_floor": floor, "accuracy_floor_met": floor_met,
        "exit_reason": reason, "warnings": state["warnings"],
        "legal_form": price.legalize.form or None,
        "options": config.to_dict(), "layers": layers, "history": state["history"],
        "proposals": state["proposals"], "rejected": state["rejected"], "honesty_rounds": state.get("rounds", []),
        "cleanup": state.get("cleanup"),
        "timing": {"wall_s": wall, "iterations": state["iteration"]},
        "metric_notes": {"size_bytes": "weights of compute layers at their bit width, zeros included",
                         "original": "the input model in the target's legal form"},
    }


def _lc(lc) -> dict[str, float] | None:
    return None if lc is None else {"latency_s": lc.cost.latency_s, "energy_j": lc.cost.energy_j}

