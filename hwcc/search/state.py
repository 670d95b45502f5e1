"""The search's state: one typed record that only the search writes, and its JSON form.

The state is everything a killed run needs to go on: the limits the search works to (and
the user's, when a measurement tightened them), the input's and the current metrics,
the accuracy, the schedule, and the record of every iteration, proposal and rejection.
It is saved after every iteration as JSON (:meth:`SearchState.to_json`) beside the graph,
and read back with every field checked (:meth:`SearchState.from_json`), so an edited or
damaged checkpoint is refused with a reason rather than met as a traceback later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hwcc.errors import check_fields
from hwcc.search.budget import CHIP_METRICS

__all__ = ["METRICS", "Schedule", "SearchState", "needed_reduction"]

METRICS = ("latency_s", "energy_j", "size_bytes")


@dataclass
class Schedule:
    """``ΔR_i = r0 · R0 · d**i`` and whether it was adapted."""

    r0: float
    decay: float
    warning: str | None = None

    @classmethod
    def fit(cls, r0: float, decay: float, needed: float, iterations: int) -> Schedule:
        """The schedule, with ``r0`` raised if it cannot remove ``needed`` (a fraction of R0)."""
        reach = r0 * (1 - decay**iterations) / (1 - decay) if decay < 1 else r0 * iterations
        if needed <= reach:
            return cls(r0, decay)
        new = needed / (0.9 * reach / r0)
        new = min(new, needed)
        return cls(
            new,
            decay,
            f"the schedule (initial reduction {r0:g}, decay {decay:g}) removes at "
            f"most {reach:.0%} of the input's cost in {iterations} iterations, the "
            f"budget needs {needed:.0%}: initial reduction raised to {new:.3g}",
        )

    def step(self, r_original: float, i: int) -> float:
        return self.r0 * r_original * self.decay**i

    def iterations_for(self, needed: float, most: int = 1000) -> int:
        """Iterations until the steps add up to ``needed`` (a fraction of R0), at most ``most``."""
        total, i = 0.0, 0
        while total < needed and i < most:
            total += self.r0 * self.decay**i
            i += 1
        return max(1, i)


def needed_reduction(original: Mapping[str, float], limits: Mapping[str, float]) -> float:
    """The largest share of its input value that a budgeted metric must lose."""
    return max(
        ((original[m] - lim) / original[m] for m, lim in limits.items() if original[m] > 0),
        default=0.0,
    )


@dataclass
class SearchState:
    """Where a search stands.

    Attributes:
        iteration: iterations done.
        limits: metric -> the limit the search works to.
        user_limits: metric -> the user's limit (differs from ``limits`` once a
            measurement tightened the search's).
        original: the input model's metrics (in the target's legal form).
        current: the current model's metrics.
        accuracy0: the input model's accuracy (None when not measured).
        accuracy: the current model's accuracy.
        schedule: the step schedule.
        warnings: what the user should know (data, schedule, measurements).
        history: one record per iteration: the proposal kept.
        proposals: every proposal fine-tuned and scored.
        rejected: every unit that could not meet an iteration's target, with the reason.
        rounds: the measurement re-checks that sent the search back to work.
        recoveries: the longer fine-tunes tried before the accuracy floor stopped the
            search (after which iteration, accuracy before and after, whether kept).
        cleanup: the exact cleanups run before the search, and their metrics.
        stop: why the loop last ended (None while it runs).
    """

    limits: dict[str, float]
    original: dict[str, float]
    accuracy0: float | None
    schedule: Schedule
    iteration: int = 0
    user_limits: dict[str, float] = field(default_factory=dict)
    current: dict[str, float] = field(default_factory=dict)
    accuracy: float | None = None
    warnings: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    cleanup: dict[str, Any] | None = None
    stop: str | None = None

    @classmethod
    def start(
        cls,
        limits: Mapping[str, float],
        original: Mapping[str, float],
        current: Mapping[str, float],
        accuracy: float | None,
        *,
        initial_reduction: float,
        decay: float,
        max_iterations: int,
        warnings: list[str] = (),
        cleanup: Mapping[str, Any] | None = None,
    ) -> SearchState:
        """The state before the first iteration: the schedule fitted to the budgets."""
        needed = needed_reduction(original, limits)
        sched = Schedule.fit(initial_reduction, decay, max(0.0, needed), max_iterations)
        return cls(
            limits=dict(limits),
            user_limits=dict(limits),
            original=dict(original),
            current=dict(current),
            accuracy0=accuracy,
            accuracy=accuracy,
            schedule=Schedule(sched.r0, sched.decay),
            warnings=[*warnings, *([sched.warning] if sched.warning else [])],
            cleanup=dict(cleanup) if cleanup is not None else None,
        )

    def unmet(self) -> dict[str, float]:
        """Metric -> how far over its limit (``R / L``) for each budget not met yet."""
        return {m: self.current[m] / lim for m, lim in self.limits.items() if self.current[m] > lim}

    def floor(self, max_accuracy_drop: float | None) -> float | None:
        """The lowest accuracy allowed, or None (no floor, or accuracy not measured)."""
        if max_accuracy_drop is None or self.accuracy0 is None:
            return None
        return self.accuracy0 - max_accuracy_drop

    def mark_picked(self, iteration: int, taken: tuple[str, dict] | None) -> None:
        """Mark in :attr:`proposals` only the proposal ``iteration`` takes (``taken``: its
        layer and settings; None: none). Each halving of the step, a retry after a
        recovery and a combination write records of their own, and a halving's best that
        fell below the floor, or the proposals of an iteration the floor stopped, were
        left marked as picked."""
        mine = [r for r in self.proposals if r["iteration"] == iteration]
        for r in mine:
            r["picked"] = False
        same = [r for r in mine if taken and (r["layer"], r["settings"]) == taken]
        if same:
            same[-1]["picked"] = True

    def tighten(self, metric: str, suggested: float) -> float:
        """Lower the search's limit on ``metric`` to 98 % of ``suggested`` (the predicted value
        at which the measurement would have met the user's budget) so the loop can go on;
        the user's limits stay in :attr:`user_limits`. Returns the new limit."""
        new = min(self.limits[metric], suggested) * 0.98
        self.limits[metric] = new
        self.stop = None
        return new

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (the checkpoint's ``state``)."""
        return {
            "iteration": self.iteration,
            "limits": dict(self.limits),
            "user_limits": dict(self.user_limits),
            "original": dict(self.original),
            "current": dict(self.current),
            "accuracy0": self.accuracy0,
            "accuracy": self.accuracy,
            "schedule": {"r0": self.schedule.r0, "decay": self.schedule.decay},
            "warnings": list(self.warnings),
            "history": list(self.history),
            "proposals": list(self.proposals),
            "rejected": list(self.rejected),
            "rounds": list(self.rounds),
            "recoveries": list(self.recoveries),
            "cleanup": self.cleanup,
            "stop": self.stop,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchState:
        """The state saved by :meth:`to_json`, every field checked.

        Raises:
            ValueError: a field is missing, of the wrong kind, or names an unknown metric.
        """
        check_fields(data, _FIELDS, "the state")
        check_fields(data["schedule"], {"r0": _NUMBER, "decay": _NUMBER}, "the state's schedule")
        for key in ("original", "current"):
            check_fields(data[key], dict.fromkeys(METRICS, _NUMBER), f"the state's {key!r}")
        for key in ("limits", "user_limits"):
            check_fields(data[key], dict.fromkeys(data[key], _NUMBER), f"the state's {key!r}")
            unknown = sorted(set(data[key]) - set(METRICS) - set(CHIP_METRICS))
            if unknown:
                raise ValueError(f"the state's {key!r} name unknown metrics: {', '.join(unknown)}")
        recoveries = data.get("recoveries", [])  # absent from checkpoints before it existed
        if not isinstance(recoveries, list) or not all(
            isinstance(x, dict) and isinstance(x.get("after_iteration"), int) for x in recoveries
        ):
            raise ValueError("the state's 'recoveries' is not a list of recovery records")
        for key in ("history", "proposals", "rejected", "rounds"):
            if not all(isinstance(x, dict) for x in data[key]):
                raise ValueError(f"the state's {key!r} holds something other than objects")
        s = data["schedule"]
        return cls(
            limits=dict(data["limits"]),
            user_limits=dict(data["user_limits"]),
            original=dict(data["original"]),
            current=dict(data["current"]),
            accuracy0=data["accuracy0"],
            accuracy=data["accuracy"],
            schedule=Schedule(float(s["r0"]), float(s["decay"])),
            iteration=data["iteration"],
            warnings=list(data["warnings"]),
            history=list(data["history"]),
            proposals=list(data["proposals"]),
            rejected=list(data["rejected"]),
            rounds=list(data["rounds"]),
            recoveries=list(recoveries),
            cleanup=data["cleanup"],
            stop=data["stop"],
        )


_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))
_FIELDS = {
    "iteration": int,
    "limits": dict,
    "user_limits": dict,
    "original": dict,
    "current": dict,
    "accuracy0": _OPTIONAL_NUMBER,
    "accuracy": _OPTIONAL_NUMBER,
    "schedule": dict,
    "warnings": list,
    "history": list,
    "proposals": list,
    "rejected": list,
    "rounds": list,
    "cleanup": (dict, type(None)),
    "stop": (str, type(None)),
}
