"""Runs and checks for the durability tests (tests/test_durability_*.py): the QUICK
compile, as CLI arguments and as API arguments, and what a killed or interrupted run left:
its checkpoint's state, whether its output folder is absent or complete, what of it is
left beside the folder, and whether it ended with a reference run's result exactly. The
uninterrupted QUICK run itself is the ``quick_ref`` fixture in tests/conftest.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import hwcc
from hwcc.report.artifact import is_artifact

QUICK = [
    "zoo:lenet300-digits",
    "--target",
    "eie",
    "--budget",
    "50%",
    "--data",
    "zoo:digits",
    "--seed",
    "5",
    "--max-iterations",
    "3",
    "--short-term-steps",
    "8",
    "--long-term-steps",
    "8",
    "--no-one-shot",  # NetAdapt's single-unit iterations: several checkpoints to kill between
]
QUICK_API = {
    "model": "zoo:lenet300-digits",
    "target": "eie",
    "budget": "50%",
    "data": "zoo:digits",
    "seed": 5,
    "max_iterations": 3,
    "short_term_steps": 8,
    "long_term_steps": 8,
    "one_shot": False,
}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summary(folder: Path) -> dict:
    return json.loads((folder / "hwcc.json").read_text())


def state(out: Path) -> dict | None:
    path = Path(f"{out}.checkpoint") / "state.json"
    return json.loads(path.read_text()) if path.is_file() else None


def outcome(out: Path) -> str:
    """``absent`` or ``complete``; anything else fails."""
    if not out.exists():
        return "absent"
    assert is_artifact(out), f"{out} is half-written: {sorted(p.name for p in out.iterdir())}"
    summary(out)
    hwcc.load(out / "model.onnx")
    return "complete"


def leftovers(out: Path) -> list[str]:
    """Whatever of this run is beside ``out`` other than ``out`` itself."""
    return sorted(
        p.name
        for p in out.parent.iterdir()
        if p.name != out.name
        and (p.name.startswith(out.name + ".") or p.name.startswith(f".{out.name}."))
    )


def assert_same_as(out: Path, ref: Path) -> None:
    """``out`` is complete, nothing of its run is left beside it, and it is ``ref``'s result
    exactly."""
    assert outcome(out) == "complete" and leftovers(out) == []
    a, b = summary(out), summary(ref)
    assert a["final"] == b["final"] and a["history"] == b["history"]
    assert sha(out / "model.onnx") == sha(ref / "model.onnx")
