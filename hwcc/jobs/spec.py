"""The job file: which models to tune for which targets, devices and budgets, read and checked.

A job file is TOML. Every table is optional except that there must be at least one job::

    [defaults]                         # every job, unless the job says otherwise
    data = "zoo:digits"
    max_accuracy_drop = "5%"           # or 0.05, or "none"
    seed = 0
    [defaults.search]                  # any SearchConfig field (hwcc.search.config)
    max_iterations = 4

    [devices]                          # the device a measured target's jobs run on
    cpu = "xeon-8380"                  # (a Ray resource "hwcc-device:xeon-8380")

    [matrix]                           # every model x every target x every budget
    models = ["zoo:lenet300-digits", "zoo:lenet5-digits"]
    targets = ["cpu", "eie", "eyeriss"]
    budgets = ["50%", ["2mJ", "5ms"]]  # a list inside the list: budgets that must all hold

    [[override]]                       # matrix jobs that match every key given here
    model = "zoo:lenet5-digits"
    target = "cpu"
    device = "epyc-9654"
    passes = ["prune_channels"]

    [[job]]                            # a single job, beside the matrix
    id = "lenet5-tpu"
    model = "zoo:lenet5-digits"
    target = "tpu"
    budget = "30%"

Everything is checked before anything runs, and the first problem found is one
:class:`~hwcc.errors.HwccError` naming the file, the line and the field (TOML readers do
not keep positions, so :class:`_Lines` finds them in the text). Paths in the file (models,
data) are relative to the file's folder, as a user reading the file would expect.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwcc.errors import HwccError
from hwcc.search.config import SearchConfig

__all__ = ["Job", "JobSpec", "load_spec", "parse_spec", "DEVICE_PREFIX"]

DEVICE_PREFIX = "hwcc-device:"
# Keys a job (or the defaults, or an override) may set, beside model/target/budget.
_SETTINGS = ("data", "holdout", "metric", "seed", "max_accuracy_drop", "passes", "search", "device")
_SELECTORS = ("model", "target", "budget")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@dataclass(frozen=True)
class Job:
    """One compile of the results folder: what ``hwcc.compile`` is called with.

    Attributes:
        id: the folder under RESULTS (unique in the file).
        model: a path or ``zoo:NAME``.
        target: a target name or ``.toml`` path.
        budgets: every budget that must hold, as written.
        device: the device a measured target runs on (a Ray resource
            ``hwcc-device:<device>``); None for modelled targets.
        data, holdout, metric: as for :func:`hwcc.compile`.
        options: :class:`~hwcc.search.config.SearchConfig` fields (seed, passes,
            max_accuracy_drop and the ``search`` table, merged).
    """

    id: str
    model: str
    target: str
    budgets: tuple[str, ...]
    device: str | None = None
    data: str | None = None
    holdout: str | None = None
    metric: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def resource(self) -> str | None:
        """The Ray resource this job holds while it runs, or None (any free CPU will do)."""
        return DEVICE_PREFIX + self.device if self.device else None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"budgets": list(self.budgets)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Job:
        return cls(**{**d, "budgets": tuple(d["budgets"])})


@dataclass(frozen=True)
class JobSpec:
    """Every job of a job file, in the file's order (matrix first, then single jobs)."""

    jobs: tuple[Job, ...]
    source: str = "<jobs>"

    def __len__(self) -> int:
        return len(self.jobs)


def load_spec(path: str | Path) -> JobSpec:
    """Read and check the job file at ``path``.

    Raises:
        HwccError: the file is missing or unreadable, is not TOML, or a field is wrong
            (the message names the line and the field).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HwccError(f"cannot read the job file {p}: {e}", "give the path of a TOML file")
    return parse_spec(text, source=str(p), base=p.parent)


def parse_spec(text: str, source: str = "<jobs>", base: Path | None = None) -> JobSpec:
    """The jobs of a job file's ``text``; ``base`` is the folder relative paths start from."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        at = f"{source}:{m.group(1)}" if m else source
        what = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise HwccError(f"{at}: not valid TOML: {what}", "fix the line the message names")
    return _Reader(doc, _Lines(text, source), base or Path.cwd()).read()


class _Lines:
    """Where a key is in the text: the line of ``key =`` inside a table's section, found by
    scanning headers (``[name]``, ``[[name]]``, counted per array of tables)."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.lines = text.splitlines()

    def of(self, table: str, index: int | None, key: str | None) -> int | None:
        counts: dict[str, int] = {}
        inside, header = False, None
        for n, raw in enumerate(self.lines, 1):
            line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith('"') else raw
            m = re.match(r"^\[\[\s*([\w.-]+)\s*\]\]$", line) or re.match(
                r"^\[\s*([\w.-]+)\s*\]$", line
            )
            if m:
                name = m.group(1)
                if line.startswith("[["):
                    counts[name] = counts.get(name, -1) + 1
                top = name.split(".")[0]
                inside = top == table and (index is None or counts.get(table) == index)
                header = n if inside and name == table else header
                continue
            last = (key or "").rsplit(".", 1)[-1]  # search.lr is written lr = under [*.search]
            if inside and key and re.match(rf"^{re.escape(last)}\s*=", line):
                return n
        return header

    def error(
        self,
        where: str,
        table: str,
        index: int | None,
        key: str | None,
        what: str,
        hint: str | None = None,
    ) -> HwccError:
        n = self.of(table, index, key)
        at = f"{self.source}:{n}" if n else self.source
        name = f"{where}.{key}" if key else where
        return HwccError(f"{at}: {name}: {what}", hint)


class _Reader:
    """Turns the parsed document into jobs, checking each value where it was written."""

    def __init__(self, doc: dict[str, Any], lines: _Lines, base: Path):
        self.doc, self.lines, self.base = doc, lines, base

    def fail(
        self, table: str, index: int | None, key: str | None, what: str, hint: str | None = None
    ) -> HwccError:
        where = table if index is None else f"{table}[{index + 1}]"
        return self.lines.error(where, table, index, key, what, hint)

    def read(self) -> JobSpec:
        known = {"defaults", "devices", "matrix", "override", "job"}
        for key in self.doc:
            if key not in known:
                raise self.fail(
                    key,
                    None,
                    None,
                    "unknown table or key",
                    f"a job file has: {', '.join(sorted(known))}",
                )
        defaults = self._settings(self._table("defaults"), "defaults", None)
        devices = self._devices()
        jobs = self._matrix(defaults, devices) + self._singles(defaults, devices)
        if not jobs:
            raise HwccError(f"{self.lines.source}: no jobs", "add a [matrix] or a [[job]] table")
        seen: dict[str, int] = {}
        for i, job in enumerate(jobs):
            if job.id in seen:
                raise HwccError(
                    f"{self.lines.source}: two jobs have the id {job.id!r}",
                    'give one of them an id of its own (id = "..." in its [[job]])',
                )
            seen[job.id] = i
        return JobSpec(tuple(jobs), self.lines.source)

    # -- tables ----------------------------------------------------------------------
    def _table(self, name: str) -> dict[str, Any]:
        t = self.doc.get(name, {})
        if not isinstance(t, dict):
            raise self.fail(name, None, None, "must be a table", f"write it as [{name}]")
        return t

    def _array(self, name: str) -> list[dict[str, Any]]:
        t = self.doc.get(name, [])
        if not isinstance(t, list) or not all(isinstance(x, dict) for x in t):
            raise self.fail(
                name, None, None, "must be an array of tables", f"write each as [[{name}]]"
            )
        return t

    def _devices(self) -> dict[str, str]:
        from hwcc.targets.base import load_target

        out = {}
        for target, device in self._table("devices").items():
            if not isinstance(device, str) or not _ID.match(device):
                raise self.fail(
                    "devices",
                    None,
                    target,
                    f"{device!r} is not a device name",
                    "letters, digits, '.', '-' and '_', e.g. cpu = \"xeon-8380\"",
                )
            if not _measured(load_target(target)):
                raise self.fail(
                    "devices",
                    None,
                    target,
                    f"target {target} is modelled: it runs on no device",
                    "name devices for measured targets only (cpu)",
                )
            out[target] = device
        return out

    def _matrix(self, defaults: dict[str, Any], devices: dict[str, str]) -> list[Job]:
        m = self._table("matrix")
        if not m:
            if self.doc.get("override"):
                raise self.fail("override", 0, None, "overrides need a [matrix] to apply to")
            return []
        for key in m:
            if key not in ("models", "targets", "budgets"):
                raise self.fail(
                    "matrix", None, key, "unknown key", "a matrix has models, targets and budgets"
                )
        lists = {}
        for key in ("models", "targets", "budgets"):
            v = m.get(key)
            if not isinstance(v, list) or not v:
                raise self.fail(
                    "matrix",
                    None,
                    key if key in m else None,
                    f"needs {key}, a non-empty list"
                    if key not in m
                    else "must be a non-empty list",
                )
            lists[key] = v
        models = [self._model(x, "matrix", None, "models") for x in lists["models"]]
        targets = [self._target(x, "matrix", None, "targets") for x in lists["targets"]]
        budgets = [self._budgets(x, "matrix", None, "budgets") for x in lists["budgets"]]
        overrides = [(i, self._override(o, i)) for i, o in enumerate(self._array("override"))]
        used = set()
        jobs = []
        for model in models:
            for target in targets:
                for budget in budgets:
                    settings = dict(defaults)
                    for i, (select, changes) in overrides:
                        if _matches(select, model, target, budget):
                            settings = _merge(settings, changes)
                            used.add(i)
                    jobs.append(
                        self._job(None, model, target, budget, settings, devices, "matrix", None)
                    )
        for i, _ in overrides:
            if i not in used:
                raise self.fail(
                    "override",
                    i,
                    None,
                    "matches no job of the matrix",
                    "its model, target and budget must be written as in [matrix]",
                )
        return jobs

    def _override(self, o: dict[str, Any], i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        select = {}
        for key in _SELECTORS:
            if key in o:
                v = o[key]
                select[key] = (
                    self._budgets(v, "override", i, key)
                    if key == "budget"
                    else v
                    if isinstance(v, str)
                    else None
                )
                if select[key] is None:
                    raise self.fail("override", i, key, "must be a string")
        rest = {k: v for k, v in o.items() if k not in _SELECTORS}
        return select, self._settings(rest, "override", i)

    def _singles(self, defaults: dict[str, Any], devices: dict[str, str]) -> list[Job]:
        jobs = []
        for i, j in enumerate(self._array("job")):
            for key in ("model", "target", "budget"):
                if key not in j:
                    raise self.fail("job", i, None, f"needs {key}")
            model = self._model(j["model"], "job", i, "model")
            target = self._target(j["target"], "job", i, "target")
            budget = self._budgets(j["budget"], "job", i, "budget")
            jid = j.get("id")
            if jid is not None and (not isinstance(jid, str) or not _ID.match(jid)):
                raise self.fail(
                    "job",
                    i,
                    "id",
                    f"{jid!r} is not a usable folder name",
                    "letters, digits, '.', '-', '_' and '@', at most 128",
                )
            rest = {k: v for k, v in j.items() if k not in ("id", *_SELECTORS)}
            settings = _merge(defaults, self._settings(rest, "job", i))
            jobs.append(self._job(jid, model, target, budget, settings, devices, "job", i))
        return jobs

    # -- values ----------------------------------------------------------------------
    def _job(
        self,
        jid: str | None,
        model: str,
        target: str,
        budgets: tuple[str, ...],
        settings: dict[str, Any],
        devices: dict[str, str],
        table: str,
        index: int | None,
    ) -> Job:
        from hwcc.targets.base import load_target

        tgt = load_target(self._resolved_path(target) if target.endswith(".toml") else target)
        default = devices.get(target) or (Path(target).stem if _measured(tgt) else None)
        device = settings.pop("device", None) or default
        if not _measured(tgt) and table != "job":
            device = None  # a device in the defaults or an override is for measured targets
        if device and not _measured(tgt):
            raise self.fail(
                table,
                index,
                "device",
                f"target {target} is modelled, not measured: it runs on no device",
                "give devices only to measured targets (cpu)",
            )
        options = dict(settings.pop("search", {}))
        for key in ("seed", "max_accuracy_drop", "passes"):
            if key in settings:
                options[key] = settings.pop(key)
        model_path = model if model.startswith("zoo:") else self._resolved_path(model)
        data = {k: settings.get(k) for k in ("data", "holdout")}  # resolved in _settings
        jid = jid or _default_id(model, target, device if device != default else None, budgets)
        return Job(
            jid,
            model_path,
            target if not target.endswith(".toml") else self._resolved_path(target),
            budgets,
            device,
            data["data"],
            data["holdout"],
            settings.get("metric"),
            options,
        )

    def _settings(self, t: dict[str, Any], table: str, index: int | None) -> dict[str, Any]:
        from hwcc.cli.compile_view import parse_accuracy_drop, parse_passes
        from hwcc.data.metrics import METRICS

        out: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(SearchConfig)}
        for key, v in t.items():
            if key not in _SETTINGS:
                raise self.fail(
                    table,
                    index,
                    key,
                    "unknown key",
                    f"a job may set: model, target, budget, {', '.join(_SETTINGS)}",
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
            if key == "device" and not _ID.match(v):
                raise self.fail(table, index, key, f"{v!r} is not a device name")
            if key == "seed" and (
                not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**32
            ):
                raise self.fail(table, index, key, "must be a whole number from 0 to 2**32-1")
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
        from hwcc.targets.base import load_target

        if not isinstance(v, str) or not v:
            raise self.fail(table, index, key, f"{v!r} is not a target name")
        try:
            load_target(self._resolved_path(v) if v.endswith(".toml") else v)
        except HwccError as e:
            raise self.fail(table, index, key, e.message, e.hint) from None
        return v

    def _budgets(self, v: Any, table: str, index: int | None, key: str) -> tuple[str, ...]:
        from hwcc.search.budget import parse_budget

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
    r: _Reader, table: str, index: int | None, key: str, name: str, value: Any, default: Any
) -> None:
    """A search option must have its default's type (ints are fine where floats are)."""
    kinds = (type(default),) if default is not None else (int, float, str)
    if isinstance(default, float):
        kinds = (int, float)
    if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, kinds):
        raise r.fail(
            table, index, key, f"{name} = {value!r}: must be like its default ({default!r})"
        )


def _measured(target: Any) -> bool:
    """Whether a job for ``target`` must run on its device: a measured target."""
    return target.provenance == "measured"


def _matches(select: Mapping[str, Any], model: str, target: str, budget: tuple[str, ...]) -> bool:
    return (
        select.get("model", model) == model
        and select.get("target", target) == target
        and tuple(select.get("budget", budget)) == budget
    )


def _merge(base: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in more.items():
        out[k] = {**out.get(k, {}), **v} if k == "search" else v
    return out


def _default_id(model: str, target: str, device: str | None, budgets: tuple[str, ...]) -> str:
    """``lenet300-digits.cpu.50pct``: model, target (``@device`` when not the default), budgets."""
    stem = model[4:] if model.startswith("zoo:") else Path(model).stem
    tgt = Path(target).stem + (f"@{device}" if device else "")
    budget = "+".join(budgets).replace("%", "pct").replace(":", "-")
    return re.sub(r"[^A-Za-z0-9._@+-]", "-", f"{stem}.{tgt}.{budget}")
