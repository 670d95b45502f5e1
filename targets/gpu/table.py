"""The measured GPU layer table: its JSON file, where it lives, and how a layer is keyed.

:mod:`hwcc.targets.gpu.profile` builds a table on the device; the ``gpu`` target reads the
present device's. Tables are plain JSON under ``$XDG_CACHE_HOME/hwcc/gpu/`` (default
``~/.cache``), one file per fingerprint, written atomically, never pickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir.workload import Layer

__all__ = ["FORMAT", "MeasuredTable", "layer_key", "load_table", "save_table", "table_path"]

FORMAT = "hwcc-gpu-table/1"


def layer_key(layer: Layer) -> str:
    """What identifies a layer's cost: op, shapes, dims, bit widths and flags (not its name)."""
    x = layer
    fields = [
        x.domain,
        x.op_type,
        x.in_shape,
        x.out_shape,
        x.N,
        x.C,
        x.H,
        x.W,
        x.M,
        x.R,
        x.S,
        x.P,
        x.Q,
        x.stride,
        x.dilation,
        x.pads,
        x.groups,
        x.batch,
        x.seq_len,
        x.directions,
        x.params,
        x.weight_bits,
        x.act_bits,
        x.flags,
    ]
    return json.dumps(fields, separators=(",", ":"), default=str)


@dataclasses.dataclass
class MeasuredTable:
    """Median one-node session times on one device.

    Attributes:
        fingerprint: the device it was measured on (:func:`.profile.gpu_fingerprint`).
        entries: layer key -> median seconds of one session run of the one-node model.
        run_overhead_s: median seconds of a one-element Identity run (subtracted).
        skipped: layer key -> why it could not be timed.
        path: the file it was read from or written to.
        meta: onnxruntime version, date, warm-up and repeat counts.
    """

    fingerprint: str
    entries: dict[str, float]
    run_overhead_s: float = 0.0
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    path: Path | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def latency_s(self, layer: Layer) -> float | None:
        """The layer's measured kernel time beyond a trivial run, or None if not measured."""
        t = self.entries.get(layer_key(layer))
        return None if t is None else max(t - self.run_overhead_s, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "run_overhead_s": self.run_overhead_s,
            **self.meta,
            "entries": self.entries,
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: Path | None = None) -> MeasuredTable:
        if data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
            raise HwccError(
                f"{path or 'table'} is not a {FORMAT} table",
                "rebuild it with hwcc.targets.gpu.profile.build_table on the device",
            )
        meta = {
            k: v
            for k, v in data.items()
            if k not in ("format", "fingerprint", "run_overhead_s", "entries", "skipped")
        }
        return cls(
            str(data["fingerprint"]),
            {k: float(v) for k, v in data["entries"].items()},
            float(data.get("run_overhead_s", 0.0)),
            dict(data.get("skipped", {})),
            path,
            meta,
        )


def table_path(fingerprint: str) -> Path:
    """Where the table of ``fingerprint`` lives."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hwcc" / "gpu"
    return root / (hashlib.sha256(fingerprint.encode()).hexdigest()[:16] + ".json")


def load_table(fingerprint: str, path: str | os.PathLike | None = None) -> MeasuredTable | None:
    """The table measured on ``fingerprint``'s device, or None if there is none.

    Raises:
        HwccError: the file is not a table, or was measured on another device.
    """
    p = Path(path) if path is not None else table_path(fingerprint)
    if not p.is_file():
        return None
    try:
        table = MeasuredTable.from_json(json.loads(p.read_text()), p)
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise HwccError(f"{p} is not a valid GPU table: {e}", "delete it and rebuild it") from None
    if table.fingerprint != fingerprint:
        raise HwccError(
            f"{p} was measured on {table.fingerprint!r}, not on {fingerprint!r}",
            "rebuild the table on this device",
        )
    return table


def save_table(table: MeasuredTable, path: str | os.PathLike | None = None) -> Path:
    """Write ``table`` as JSON, atomically; returns the path."""
    p = Path(path) if path is not None else table_path(table.fingerprint)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(table.to_json(), f, indent=1, sort_keys=True)
    os.replace(tmp, p)
    table.path = p
    return p
