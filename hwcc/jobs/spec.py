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
from hwcc.jobs.spec_values import ID, Values, default_id, matches, merge
from hwcc.targets.base import load_target

__all__ = ["Job", "JobSpec", "load_spec", "parse_spec", "DEVICE_PREFIX"]

DEVICE_PREFIX = "hwcc-device:"
_SELECTORS = ("model", "target", "budget")


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


class _Reader(Values):
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
        out = {}
        for target, device in self._table("devices").items():
            if not isinstance(device, str) or not ID.match(device):
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
                        if matches(select, model, target, budget):
                            settings = merge(settings, changes)
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
            if jid is not None and (not isinstance(jid, str) or not ID.match(jid)):
                raise self.fail(
                    "job",
                    i,
                    "id",
                    f"{jid!r} is not a usable folder name",
                    "letters, digits, '.', '-', '_' and '@', at most 128",
                )
            rest = {k: v for k, v in j.items() if k not in ("id", *_SELECTORS)}
            settings = merge(defaults, self._settings(rest, "job", i))
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
        jid = jid or default_id(model, target, device if device != default else None, budgets)
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


def _measured(target: Any) -> bool:
    """Whether a job for ``target`` must run on its device: a measured target."""
    return target.provenance == "measured"
