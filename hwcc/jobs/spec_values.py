"""The values of a job file, each checked where it is written.

Settings, models, targets, budgets and data paths: :class:`Values`, which the job file's
reader (:mod:`hwcc.jobs.spec`) reads with.

Each check raises the reader's error for its table and key, so the message names the line
and the field; a value is returned as the compile takes it (paths resolved against the job
file's folder, passes resolved through the pass registry, ``5%`` as 0.05).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwcc.data.metrics import METRICS
from hwcc.errors import HwccError
from hwcc.search.budget import parse_budget
from hwcc.search.config import SearchConfig
from hwcc.targets.base import load_target

__all__ = ["Values", "SETTINGS", "ID", "matches", "merge", "default_id"]

# Keys a job (or the defaults, or an override) may set, beside model/target/budget.
SETTINGS = ("data", "holdout", "metric", "seed", "max_accuracy_drop", "passes", "search", "device")
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


class Values:
    """The value checks of the job file's reader; ``fail(table, index, key, what, hint)``
    and ``base`` (the job file's folder) come from the reader."""

    base: Path

    def fail(
        self, table: str, index: int | None, key: str | None, what: str, hint: str | None = None
    ) -> HwccError:
        raise NotImplementedError

    def _settings(self, t: dict[str, Any], table: str, index: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(SearchConfig)}
        for key, v in t.items():
            if key not in SETTINGS:
                raise self.fail(
                    table,
                    index,
                    key,
                    "unknown key",
                    f"a job may set: model, target, budget, {', '.join(SETTINGS)}",
                )
            if key in ("data", "holdout", "device", "metric") and not isinstance(v, str):
                raise self.fail(table, index, key, "must be a string")
            if key in ("data", "holdout"):
                v = self._data(v, table, index, key)
            if key == "metric" and v not in ("auto", *METRICS):
                raise self.fail(
                    table,
                    index,
                    key,
                    f"unknown metric {v!r}",
                    f"one of: auto, {', '.join(METRICS)}",
                )
            if key == "device" and not ID.match(v):
                raise self.fail(table, index, key, f"{v!r} is not a device name")
            if key == "seed" and (
                not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**32
            ):
                raise self.fail(table, index, key, "must be a whole number from 0 to 2**32-1")
            # the command line's own readers, so a job file and a flag mean the same; imported
            # here because hwcc.cli imports this package
            from hwcc.cli.compile_view import parse_accuracy_drop, parse_passes

            try:
                if key == "max_accuracy_drop":
                    v = parse_accuracy_drop(str(v))
                if key == "passes":
                    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                        raise self.fail(table, index, key, "must be a list of pass names")
                    v = parse_passes(",".join(v))
            except HwccError as e:
                raise self.fail(table, index, key, e.message.removeprefix("--passes: "), e.hint)
            if key == "search":
                if not isinstance(v, dict):
                    raise self.fail(table, index, key, "must be a table")
                for name, value in v.items():
                    if name not in fields or name in ("seed", "passes", "max_accuracy_drop"):
                        raise self.fail(
                            table,
                            index,
                            f"search.{name}",
                            "unknown search option",
                            "seed, passes and max_accuracy_drop are keys of the job; "
                            f"search options: {', '.join(sorted(fields))}",
                        )
                    _check_option(
                        self,
                        table,
                        index,
                        f"search.{name}",
                        name,
                        value,
                        getattr(SearchConfig(), name),
                    )
                v = {**out.get("search", {}), **v}
            out[key] = v
        return out

    def _model(self, v: Any, table: str, index: int | None, key: str) -> str:
        if not isinstance(v, str) or not v:
            raise self.fail(table, index, key, f"{v!r} is not a model (a path or zoo:NAME)")
        if v.startswith("zoo:"):
            from hwcc.models.registry import all_specs  # imports torch: only for zoo models

            if v[4:] not in {spec.name for spec in all_specs()}:
                raise self.fail(table, index, key, f"no bundled model {v!r}", "see 'hwcc zoo list'")
        elif not Path(self._resolved_path(v)).is_file():
            raise self.fail(
                table,
                index,
                key,
                f"model file not found: {v}",
                "paths are relative to the job file's folder",
            )
        return v

    def _target(self, v: Any, table: str, index: int | None, key: str) -> str:
        if not isinstance(v, str) or not v:
            raise self.fail(table, index, key, f"{v!r} is not a target name")
        try:
            load_target(self._resolved_path(v) if v.endswith(".toml") else v)
        except HwccError as e:
            raise self.fail(table, index, key, e.message, e.hint) from None
        return v

    def _budgets(self, v: Any, table: str, index: int | None, key: str) -> tuple[str, ...]:
        given = [v] if isinstance(v, str) else v
        if not isinstance(given, list) or not given or not all(isinstance(b, str) for b in given):
            raise self.fail(
                table,
                index,
                key,
                f"{v!r} is not a budget",
                'a budget is a string such as "5ms", or a list of them',
            )
        for b in given:
            try:
                parse_budget(b)
            except HwccError as e:
                raise self.fail(table, index, key, e.message, e.hint) from None
        return tuple(given)

    def _data(self, v: str | None, table: str, index: int | None, key: str) -> str | None:
        if v is None or v.startswith("zoo:"):
            return v
        path = self._resolved_path(v)
        if not Path(path).is_file():
            raise self.fail(
                table,
                index,
                key,
                f"data file not found: {v}",
                "paths are relative to the job file's folder",
            )
        return path

    def _resolved_path(self, v: str) -> str:
        p = Path(v).expanduser()
        return str(p if p.is_absolute() else (self.base / p).resolve())


def _check_option(
    r: Values, table: str, index: int | None, key: str, name: str, value: Any, default: Any
) -> None:
    """A search option must have its default's type (ints are fine where floats are)."""
    kinds = (type(default),) if default is not None else (int, float, str)
    if isinstance(default, float):
        kinds = (int, float)
    if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, kinds):
        raise r.fail(
            table, index, key, f"{name} = {value!r}: must be like its default ({default!r})"
        )


def matches(select: Mapping[str, Any], model: str, target: str, budget: tuple[str, ...]) -> bool:
    return (
        select.get("model", model) == model
        and select.get("target", target) == target
        and tuple(select.get("budget", budget)) == budget
    )


def merge(base: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in more.items():
        out[k] = {**out.get(k, {}), **v} if k == "search" else v
    return out


def default_id(model: str, target: str, device: str | None, budgets: tuple[str, ...]) -> str:
    """``lenet300-digits.cpu.50pct``: model, target (``@device`` when not the default), budgets."""
    stem = model[4:] if model.startswith("zoo:") else Path(model).stem
    tgt = Path(target).stem + (f"@{device}" if device else "")
    budget = "+".join(budgets).replace("%", "pct").replace(":", "-")
    return re.sub(r"[^A-Za-z0-9._@+-]", "-", f"{stem}.{tgt}.{budget}")
