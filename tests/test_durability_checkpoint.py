"""A damaged checkpoint is an HwccError saying where and what to do: truncated, empty or
edited state, a missing, outside or truncated graph file, each refused by ``--resume``
with nothing written; the CLI reports it without a traceback; and resuming a finished run
says it is complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from durability_runs import QUICK, QUICK_API
from durability_runs import leftovers as _leftovers

import hwcc
from hwcc.cli.commands import main
from hwcc.errors import HwccError


# ---------------------------------------------------------------------- damaged checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The checkpoint a QUICK run interrupted after its first iteration left."""
    out = tmp_path_factory.mktemp("ckpt") / "art"

    def stop(kind, info):
        if kind == "picked":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hwcc.compile(**QUICK_API, output=out, progress=stop)
    return Path(f"{out}.checkpoint")


def _edit(key: str, value=None, delete: bool = False):
    """An edit of state.json: ``key`` is a path such as ``state.limits``."""

    def edit(folder: Path) -> None:
        doc = json.loads((folder / "state.json").read_text())
        *parents, last = key.split(".")
        obj = doc
        for p in parents:
            obj = obj[p]
        if delete:
            del obj[last]
        else:
            obj[last] = value
        (folder / "state.json").write_text(json.dumps(doc))

    return edit


def _truncate(name: str):
    def edit(folder: Path) -> None:
        path = folder / name if name == "state.json" else next(folder.glob("graph-*.onnx"))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return edit


def _write(text: str):
    return lambda folder: (folder / "state.json").write_text(text)


def _remove_graph(folder: Path) -> None:
    next(folder.glob("graph-*.onnx")).unlink()


@pytest.mark.parametrize(
    "damage, why",
    [
        pytest.param(
            _truncate("state.json"),
            "cannot be read: (Unterminated|Expecting)",
            id="truncated state",
        ),
        pytest.param(_write(""), "cannot be read: Expecting value", id="empty state"),
        pytest.param(_write("[1, 2]"), "state.json is an array, not an object", id="a list"),
        pytest.param(
            _edit("graph_sha256", delete=True),
            "state.json has no 'graph_sha256'",
            id="no graph hash",
        ),
        pytest.param(
            _edit("state", "resume me"),
            "state.json: 'state' is a string, not an object",
            id="state a string",
        ),
        pytest.param(
            _edit("state.iteration", delete=True), "the state has no 'iteration'", id="no iteration"
        ),
        pytest.param(
            _edit("state.iteration", "2"),
            "the state: 'iteration' is a string, not a number",
            id="iteration a string",
        ),
        pytest.param(
            _edit("state.iteration", True),
            "the state: 'iteration' is a boolean, not a number",
            id="iteration a boolean",
        ),
        pytest.param(
            _edit("state.limits", [1]),
            "the state: 'limits' is an array, not an object",
            id="limits a list",
        ),
        pytest.param(
            _edit("state.current.energy_j", delete=True),
            "the state's 'current' has no 'energy_j'",
            id="a metric missing",
        ),
        pytest.param(
            _edit("state.limits.speed", 1.0), "'limits' name unknown metrics", id="an unknown limit"
        ),
        pytest.param(
            _edit("state.schedule.r0", None),
            "the state's schedule: 'r0' is null, not a number",
            id="schedule null",
        ),
        pytest.param(
            _edit("state.history", [3]),
            "'history' holds something other than objects",
            id="history of numbers",
        ),
        pytest.param(
            _edit("graph", "../art.onnx"),
            "names '../art.onnx', which is not a file in the checkpoint",
            id="graph outside",
        ),
        pytest.param(
            _remove_graph,
            "names 'graph-1-0.onnx', which is not a file in the checkpoint",
            id="graph missing",
        ),
        pytest.param(
            _truncate("graph"),
            "graph-1-0.onnx is not the graph that was saved \\(truncated or changed\\)",
            id="graph truncated",
        ),
    ],
)
def test_a_damaged_checkpoint_is_a_clear_error(checkpoint, tmp_path, damage, why):
    out = tmp_path / "art"
    shutil.copytree(checkpoint, f"{out}.checkpoint")
    damage(Path(f"{out}.checkpoint"))
    with pytest.raises(HwccError, match=why) as e:
        hwcc.compile(**QUICK_API, output=out, resume=True)
    assert f"checkpoint at {out}.checkpoint" in e.value.message and "remove" in e.value.hint
    assert not out.exists() and _leftovers(out) == [f"{out.name}.checkpoint"]


def test_the_cli_reports_a_damaged_checkpoint_without_a_traceback(checkpoint, tmp_path, capsys):
    out = tmp_path / "art"
    shutil.copytree(checkpoint, f"{out}.checkpoint")
    _write("[]")(Path(f"{out}.checkpoint"))
    assert main(["compile", *QUICK, "-o", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "state.json is an array" in err and "hint: remove" in err and "Traceback" not in err


def test_resuming_a_finished_run_says_it_is_complete(quick_ref):
    with pytest.raises(HwccError, match="already complete"):
        hwcc.compile(**QUICK_API, output=quick_ref, resume=True)
