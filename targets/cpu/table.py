"""The CPU lookup table: kernel latencies measured with onnxruntime, cached as JSON.

A key is a kernel spec (:mod:`.specs`: a JSON-ready dict naming a kernel as onnxruntime
executes it) with the eviction of its cold state, as its canonical JSON text
(:func:`~hwcc.targets.cpu.specs.spec_key`). An entry holds two latencies in seconds, measured by
:class:`~hwcc.targets.cpu.measure.Timer`: ``hot_s`` (the kernel's data in L2) and
``cold_s`` (after the spec's ``evict`` bytes of other data were read), each the median
of many runs minus that of an empty model beside them, at the batch's speed, and that
speed: the time of the probe kernel :data:`REFERENCE` (this shared machine switches
between two speeds about 1.8x apart within seconds; the probe, timed after every visit,
says which; the Timer keeps the faster one, waiting for it when the table knows it).
:meth:`KernelTable.lookup` rescales an entry by ``table speed / its batch's speed`` (the
table speed: the fast phase's, see :meth:`KernelTable.speed`), which is 1 when both ran
at the same one.

Channel counts are sampled on a grid: a query whose channel counts (``C``, ``M`` of
convolutions, ``K``, ``M`` of Gemm) are not multiples of ``step`` is answered by
bilinear interpolation between the four measured grid neighbours,
``t(C, M) = Σ wC_i·wM_j·t(Ci, Mj)`` with ``wC_1 = (C - C0) / step``, ``wC_0 = 1 - wC_1``,
and exactly where the configuration itself, or a grid point, was measured. Counts below
``step`` are measured exactly. A Gemm's ``M``, computed in whole panels (``panel``, the
target's ``gemm_column_panel``), takes the next multiple's time: ``t(17) = t(32)``. NCHWc
kernels store padded channel counts (multiples of the block), so they always fall on the
grid: their staircase is measured, not smoothed.

The table grows only when asked to: :meth:`KernelTable.ensure` measures the
configurations it lacks (in batches, interleaved) and saves the file after every batch, so
a killed run loses at most the batch in flight. :meth:`KernelTable.lookup` only reads: a
configuration not measured is a :class:`~hwcc.targets.costs.NotPrepared` error. A save
holds an exclusive lock on ``<file>.lock`` (``flock``) while it reads the file, merges what
other processes saved meanwhile and writes the result atomically (temporary file +
``os.replace``): several processes measuring at once end with every entry any of them
measured. A corrupt or truncated file is set aside as
``<file>.corrupt-<time>`` with a warning and the table is rebuilt. Files live in
``$XDG_CACHE_HOME/hwcc/tables/`` (default ``~/.cache/hwcc/tables/``), one per device
fingerprint (CPU model, core count, onnxruntime version, threads, NCHWc block, cache
sizes, timing protocol): another machine or runtime never reads this one's numbers.
JSON only, never pickle.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.targets.costs import NotPrepared
from hwcc.targets.cpu.specs import spec_key

__all__ = ["KernelTable", "REFERENCE", "spec_key", "tables_dir", "fingerprint_hash", "FORMAT"]

FORMAT = "hwcc-cpu-table/1"
Measure = Callable[[list[dict[str, Any]]], list[tuple[float, float]]]


def tables_dir() -> Path:
    """``$XDG_CACHE_HOME/hwcc/tables`` (default ``~/.cache/hwcc/tables``), not created."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "hwcc" / "tables"


def fingerprint_hash(fp: dict[str, Any]) -> str:
    """16 hex digits identifying a device fingerprint."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


_CONV_OPS = ("Conv", "com.microsoft.FusedConv", "nchwc.Conv")
_GEMM_OPS = ("Gemm", "com.microsoft.FusedGemm")


def grid_axes(spec: dict[str, Any], block: int) -> list[tuple[str, ...]]:
    """The channel fields of ``spec`` sampled on the grid; linked fields move together."""
    op = spec["op"]
    if op in _CONV_OPS:
        if spec["group"] == 1:
            nchw_input = op == "nchwc.Conv" and spec["C"] < block
            return ([] if nchw_input else [("C",)]) + [("M",)]
        if spec["group"] == spec["C"] == spec["M"]:
            return [("C", "M", "group")]
        return []
    if op in _GEMM_OPS:
        return [("K",), ("M",)]
    return []


class KernelTable:
    """Measured kernel latencies for one device, on disk as JSON.

    Args:
        fingerprint: what identifies the device and runtime; the file name hashes it.
        measure: times a batch of specs, returning ``(hot_s, cold_s)`` for each.
        step: channel grid step.
        block: the NCHWc block (decides which conv channels can be interpolated).
        panel: a Gemm's output columns are computed in panels of this many (0: none).
        path: the JSON file (default: under :func:`tables_dir`, named by fingerprint).

    Attributes:
        entries: key -> ``{"hot_s", "cold_s", "speed_s", "at"}``.
        extra: the session overhead (``"session"``) and every batch's speed (``"speeds"``).
        measured: how many specs this object has measured (for reports and tests).
    """

    def __init__(
        self,
        fingerprint: dict[str, Any],
        measure: Measure,
        *,
        step: int = 8,
        block: int = 0,
        panel: int = 0,
        path: Path | None = None,
    ):
        if step < 1:
            raise HwccError(f"channel_step must be at least 1, got {step}")
        self.fingerprint, self.measure_fn = dict(fingerprint), measure
        self.step, self.block, self.panel = step, block, panel
        self.path = path or tables_dir() / f"cpu-{fingerprint_hash(self.fingerprint)}.json"
        self.entries: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, Any] = {}
        self.measured = 0
        self._speed: tuple[tuple, float | None] = ((), None)  # (what it was computed from, speed)
        self._read()

    # ------------------------------------------------------------ file
    def _parse(self) -> dict[str, Any]:
        """The file's document ({} when there is none).

        Raises:
            _Corrupt: it is not a whole table (truncated, not JSON, fields of the wrong kind).
            HwccError: it cannot be read, or is the table of another device or format.
        """
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise HwccError(
                f"lookup table {self.path} cannot be read: {e.strerror}",
                "check its permissions, or point XDG_CACHE_HOME at a folder of your own",
            ) from None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise _Corrupt(f"not JSON: {e}") from None
        if not isinstance(data, dict):
            raise _Corrupt("not a JSON object")
        if data.get("format") != FORMAT or data.get("fingerprint") != self.fingerprint:
            raise HwccError(
                f"lookup table {self.path} belongs to another device or format",
                "delete it; `hwcc profile --target cpu` rebuilds it",
            )
        entries, extra = data.get("entries", {}), data.get("extra", {})
        if (
            not isinstance(extra, dict)
            or not isinstance(entries, dict)
            or not all(
                isinstance(e, dict)
                and isinstance(e.get("hot_s"), (int, float))
                and isinstance(e.get("cold_s"), (int, float))
                for e in entries.values()
            )
        ):
            raise _Corrupt("its entries or extras are not what a table holds")
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exclusive lock of ``<file>.lock``; the kernel drops it if the process dies."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _read_locked(self) -> dict[str, Any]:
        """The file's document, a corrupt one set aside (with a warning) and read as empty.
        Called holding the lock, so no other process sets it aside or replaces it meanwhile."""
        try:
            return self._parse()
        except _Corrupt as e:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            os.replace(self.path, aside)
            warnings.warn(
                f"lookup table {self.path} is corrupt ({e}); set aside as {aside.name}, "
                "the table is rebuilt by measuring again",
                stacklevel=2,
            )
            return {}

    def _read(self) -> None:
        try:
            data = self._parse()
        except _Corrupt:
            with self._locked():
                data = self._read_locked()
        self.entries.update(data.get("entries", {}))
        self.extra.update(data.get("extra", {}))

    def save(self) -> None:
        """Merge with the file on disk and write it atomically, holding the table's lock: of
        several processes saving at once, each merges what the others saved before it.

        Raises:
            HwccError: the file cannot be written (a full or read-only disk).
        """
        try:
            with self._locked():
                on_disk = self._read_locked()
                self.entries = {**on_disk.get("entries", {}), **self.entries}
                self.extra = {**on_disk.get("extra", {}), **self.extra}
                self._write(
                    {
                        "format": FORMAT,
                        "fingerprint": self.fingerprint,
                        "extra": self.extra,
                        "entries": self.entries,
                    }
                )
        except OSError as e:
            raise HwccError(
                f"cannot save lookup table {self.path}: {e.strerror}",
                "free space on that disk, or point XDG_CACHE_HOME at a writable folder",
            ) from None

    def _write(self, doc: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------ lookup
    def corners(self, spec: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
        """The measured specs that answer ``spec`` and their interpolation weights."""
        if spec_key(spec) in self.entries:
            return [(spec, 1.0)]
        per_axis = []
        for fields in grid_axes(spec, self.block):
            v = spec[fields[0]]
            if self.panel and fields == ("M",) and spec["op"] in _GEMM_OPS:
                per_axis.append([(fields, -(-v // self.panel) * self.panel, 1.0)])
            elif v < self.step or v % self.step == 0:
                per_axis.append([(fields, v, 1.0)])
            else:
                lo = v // self.step * self.step
                w = (v - lo) / self.step
                per_axis.append([(fields, lo, 1.0 - w), (fields, lo + self.step, w)])
        out = []
        for combo in itertools.product(*per_axis):
            corner, weight = dict(spec), 1.0
            for fields, v, w in combo:
                corner.update({f: v for f in fields})
                weight *= w
            out.append((corner, weight))
        return out

    def missing(self, specs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The distinct specs that must be measured to answer ``specs``."""
        need: dict[str, dict[str, Any]] = {}
        for spec in specs:
            for corner, _ in self.corners(spec):
                key = spec_key(corner)
                if key not in self.entries:
                    need.setdefault(key, corner)
        return list(need.values())

    def ensure(
        self,
        specs: Sequence[dict[str, Any]],
        *,
        batch: int = 24,
        progress: Callable[[int, str], None] | None = None,
    ) -> int:
        """Measure what ``specs`` need and is missing, saving after each batch.

        The measuring function may report the machine's speed during the batch in its
        ``last_speed`` attribute (the time of :data:`REFERENCE`); each entry keeps it, and
        :meth:`lookup` rescales the entry by ``table speed / its batch's speed``.

        Returns:
            How many specs were measured.
        """
        todo = self.missing(specs)
        for i in range(0, len(todo), batch):
            chunk = todo[i : i + batch]
            if hasattr(self.measure_fn, "target_speed"):  # measure at the table's speed
                self.measure_fn.target_speed = self.speed()
            results = self.measure_fn(chunk)
            speed = getattr(self.measure_fn, "last_speed", None)
            if speed:
                self.extra.setdefault("speeds", []).append(speed)
            fastest = getattr(self.measure_fn, "last_fastest", None)
            if fastest:
                self.extra.setdefault("fastest", []).append(fastest)
            now = time.strftime("%Y-%m-%dT%H:%M:%S")
            for spec, (hot, cold) in zip(chunk, results):
                self.entries[spec_key(spec)] = {
                    "hot_s": float(hot),
                    "cold_s": float(cold),
                    "speed_s": speed,
                    "at": now,
                }
            self.measured += len(chunk)
            self.save()
            if progress:
                progress(len(chunk), chunk[-1]["op"])
        return len(todo)

    def speed(self) -> float | None:
        """The speed every entry is given at: the median probe time of the fast phase, or None.

        This VM shares its cores with neighbours: it runs at its own speed when they are
        idle and up to about 1.8x slower, by a varying amount, when they are not. Only
        the fast phase is one well-defined speed (timed twice, a model's latency agrees
        within 5 % there, against 40 % for medians over both phases), so entries are given
        at it: the batches whose probe is within 1.4x of the fastest probe seen, their
        median (one batch timed in a lucky moment must not rescale the table). Until a
        batch was timed at it (a table begun while the neighbours were busy may have seen
        the fast phase only in a few visits), the median of those fastest visits: the
        next batches then wait for that speed (:attr:`.cpu_measure.Timer.target_speed`)."""
        speeds, fastest = self.extra.get("speeds") or [], self.extra.get("fastest") or []
        # every lookup asks (the search prices thousands of graphs): recompute only when a
        # batch was added (the lists only grow, or are replaced by a merged file's)
        key = (
            len(speeds),
            speeds[-1] if speeds else None,
            len(fastest),
            fastest[-1] if fastest else None,
        )
        if self._speed[0] != key:
            floor = min(speeds + fastest) if speeds else None
            fast = floor and (
                [v for v in speeds if v < 1.4 * floor] or [v for v in fastest if v < 1.4 * floor]
            )
            self._speed = (key, float(np.median(fast)) if fast else None)
        return self._speed[1]

    def lookup(self, spec: dict[str, Any]) -> tuple[float, float]:
        """``(hot_s, cold_s)`` of ``spec`` at the table's speed; reads, never measures.

        Raises:
            NotPrepared: ``spec`` or a grid neighbour it is interpolated from was not
                measured (:meth:`ensure` measures them).
        """
        if self.missing([spec]):
            raise NotPrepared(
                f"lookup table {self.path} has no measurement of kernel "
                f"{spec.get('op')!r} (or of a grid neighbour it is read from)",
                "measure it first: KernelTable.ensure, the target's prepare(), or "
                "`hwcc profile --target cpu --model MODEL`",
            )
        typical = self.speed()
        hot = cold = 0.0
        for corner, w in self.corners(spec):
            e = self.entries[spec_key(corner)]
            scale = typical / e["speed_s"] if typical and e.get("speed_s") else 1.0
            hot, cold = hot + w * e["hot_s"] * scale, cold + w * e["cold_s"] * scale
        return hot, cold


class _Corrupt(Exception):
    """A table file that is not a whole table: it is set aside and rebuilt."""


# The speed probe: a fixed, compute-bound kernel (a plain 3x3 conv, 32 -> 32 channels at
# 16x16, 2.4 M MACs) timed after every visit of a kernel or a model.
REFERENCE = {
    "op": "Conv",
    "N": 1,
    "C": 32,
    "M": 32,
    "group": 1,
    "x": [16, 16],
    "k": [3, 3],
    "y": [16, 16],
    "strides": [1, 1],
    "pads": [1, 1, 1, 1],
    "dilations": [1, 1],
    "bias": True,
    "act": "",
    "act_params": [],
    "sum": False,
}
