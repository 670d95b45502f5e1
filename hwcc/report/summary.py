"""What a compile run produced, in one versioned, immutable record: ``hwcc.json``.

:class:`CompileSummary` is made once, at the end of a compile (:meth:`CompileSummary.make`),
and never changed: the artifact writes its JSON form (:meth:`to_json`) with the payload's
files added (:meth:`with_payload` returns a new summary), and the report, the command line
and the bench read it. Its JSON keys are its field names, plus ``summary_version``
(:data:`VERSION`), raised whenever a field changes meaning.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwcc.ir.cleanup import CLEANUP
from hwcc.search.budget import Budget
from hwcc.search.config import SearchConfig
from hwcc.search.run import Outcome
from hwcc.search.state import SearchState

__all__ = ["VERSION", "CompileSummary", "RunInputs"]

VERSION = 1


@dataclass(frozen=True)
class RunInputs:
    """What a run was given, as the summary records it: names and hashes."""

    model: str
    sha256: str
    data: str
    data_sha256: str
    holdout: str
    holdout_sha256: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CompileSummary:
    """Everything ``hwcc.json`` holds (see the README's "Compiling" section for each key)."""

    hwcc_version: str
    created: str
    input: dict[str, Any]
    target: dict[str, Any]
    budgets: list[dict[str, Any]]
    user_limits: dict[str, float]
    search_limits: dict[str, float]
    accuracy_kind: str
    original: dict[str, Any]
    final: dict[str, Any]
    measured: dict[str, Any] | None
    budget_met: bool
    accuracy_floor: float | None
    accuracy_floor_met: bool
    exit_reason: str
    warnings: list[str]
    legal_form: dict[str, Any] | None
    options: dict[str, Any]
    layers: list[dict[str, Any]]
    history: list[dict[str, Any]]
    proposals: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    honesty_rounds: list[dict[str, Any]]
    cleanup: dict[str, Any] | None
    timing: dict[str, Any]
    metric_notes: dict[str, str]
    payload: dict[str, str] | None = None
    recoveries: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    accuracy_interval: list[float] | None = None

    @classmethod
    def make(
        cls,
        *,
        inputs: RunInputs,
        target: Any,
        budgets: Sequence[Budget],
        state: SearchState,
        outcome: Outcome,
        accuracy: float | None,
        accuracy_interval: tuple[float, float] | None = None,
        accuracy_kind: str,
        config: SearchConfig,
        layers_before: Sequence[Any],
        layers_after: Sequence[Any],
        wall_s: float,
        phases: Mapping[str, float] | None = None,
    ) -> CompileSummary:
        """The summary of a finished run. ``budgets`` are resolved; ``layers_*`` are the
        priced layers (``LayerCost``) of the input and final models in the legal form;
        ``phases`` the seconds spent in each part of the run (pricing, fine-tuning, ...)."""
        from hwcc import __version__  # the package's face imports the API, which imports this

        final = outcome.metrics
        b_out = [
            {
                "text": b.text,
                "metric": b.metric,
                "limit": b.limit,
                "met": final[b.metric] <= b.limit,
            }
            for b in budgets
        ]
        predicted_met = all(x["met"] for x in b_out)
        measured_met = outcome.measured is None or outcome.measured.budget_met
        floor = state.floor(config.max_accuracy_drop)
        floor_met = floor is None or accuracy is None or accuracy >= floor - 1e-12
        met = predicted_met and measured_met
        return cls(
            hwcc_version=__version__,
            created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            input=inputs.to_json(),
            target={
                "name": target.name,
                "provenance": target.provenance,
                "primary_metric": target.primary_metric,
                "description": target.description,
            },
            budgets=b_out,
            user_limits=dict(state.user_limits),
            search_limits=dict(state.limits),
            accuracy_kind=accuracy_kind,
            original={**state.original, "accuracy": state.accuracy0},
            final={**final, "accuracy": accuracy},
            accuracy_interval=list(accuracy_interval) if accuracy_interval else None,
            measured=outcome.measured.to_json() if outcome.measured else None,
            budget_met=met,
            accuracy_floor=floor,
            accuracy_floor_met=floor_met,
            exit_reason=_reason(
                state, met, predicted_met, measured_met, floor_met, accuracy, floor
            ),
            warnings=list(state.warnings),
            legal_form=target.legal_form or None,
            options=config.to_dict(),
            layers=_layers(layers_before, layers_after),
            history=list(state.history),
            proposals=list(state.proposals),
            rejected=list(state.rejected),
            honesty_rounds=list(state.rounds),
            recoveries=list(state.recoveries),
            cleanup=state.cleanup,
            timing={
                "wall_s": wall_s,
                "iterations": state.iteration,
                **({"phases_s": dict(phases)} if phases else {}),
            },
            metric_notes={
                "size_bytes": "weights of compute layers at their bit width, zeros included",
                "original": "the input model in the target's legal form",
            },
        )

    def with_payload(self, files: Mapping[str, str]) -> CompileSummary:
        """This summary with the target payload's files (path -> what it is)."""
        return dataclasses.replace(self, payload=dict(files))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["payload"] is None:
            del out["payload"]
        return {"summary_version": VERSION, **out}


def _reason(
    state: SearchState,
    met: bool,
    predicted_met: bool,
    measured_met: bool,
    floor_met: bool,
    accuracy: float | None,
    floor: float | None,
) -> str:
    reason = state.stop or ""
    if met and not floor_met:
        reason = f"budgets met, but accuracy {accuracy:.2%} is below the floor {floor:.2%}"
    elif predicted_met and not measured_met:
        reason = "the prediction meets the budget but the measured latency does not"
    elif not predicted_met and state.stop == "every budget met":
        reason = (
            "the search met every budget, but the final model in the target's legal form does not"
        )
    if met and state.iteration == 0 and reason == "every budget met":
        reason = (
            f"every budget met by the exact cleanups alone ({', '.join(CLEANUP)}); "
            "no search step was needed"
        )
    return reason


def _layers(before: Sequence[Any], after: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per layer of either model (constants left out), with its cost before and after."""
    b_by, a_by = {lc.layer.name: lc for lc in before}, {lc.layer.name: lc for lc in after}
    rows = []
    for name in list(b_by) + [n for n in a_by if n not in b_by]:
        b, a = b_by.get(name), a_by.get(name)
        ref = b or a
        if ref.layer.kind == "constant":
            continue
        rows.append(
            {
                "name": name,
                "op_type": ref.layer.op_type,
                "on": (a or b).on,
                "before": _cost(b),
                "after": _cost(a),
            }
        )
    return rows


def _cost(lc: Any) -> dict[str, float] | None:
    return None if lc is None else {"latency_s": lc.cost.latency_s, "energy_j": lc.cost.energy_j}
