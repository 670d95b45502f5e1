"""The artifact folder and the search checkpoint, both written so a crash loses nothing.

Artifact ``OUT/``: ``model.onnx``, ``hwcc.json`` (the run's summary), ``report.html`` and
the target's payload. It is written into a temporary folder beside ``OUT`` and renamed
into place; an older artifact at ``OUT`` is swapped out only once the new one is complete.
A folder at ``OUT`` that is not an hwcc artifact is never overwritten.

Checkpoint ``OUT.checkpoint/``: ``graph-<i>.onnx`` (the search's current graph after
iteration ``i``) and ``state.json`` (the search state, naming its graph file). The graph is
written first, then the state is replaced atomically, then older graphs are removed: at
every instant ``state.json`` names a complete graph.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hwcc import onnx_io
from hwcc.errors import HwccError
from hwcc.ir import Graph

__all__ = ["write_artifact", "Checkpoint", "is_artifact"]

SUMMARY = "hwcc.json"


def is_artifact(folder: Path) -> bool:
    return (folder / SUMMARY).is_file() and (folder / "model.onnx").is_file()


def check_destination(folder: str | os.PathLike) -> Path:
    """``folder`` as a Path, after checking an artifact may be written there.

    Raises:
        HwccError: it is a file, or a non-empty folder that is not an hwcc artifact.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HwccError(f"output {folder} exists and is not a folder", "name a folder for the artifact (-o OUT)")
    if folder.is_dir() and any(folder.iterdir()) and not is_artifact(folder):
        raise HwccError(f"output folder {folder} is not empty and holds no hwcc artifact; it will not be overwritten",
                        "name a new or empty folder (-o OUT)")
    return folder


def write_artifact(folder: str | os.PathLike, graph: Graph, summary: dict[str, Any], target: Any) -> Path:
    """Write the artifact to ``folder`` atomically; ``summary["payload"]`` gets the payload's files.

    Returns:
        The artifact folder.
    """
    from hwcc import report

    folder = check_destination(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        onnx_io.save(graph, tmp / "model.onnx")
        writer = getattr(target, "write_payload", None)
        summary["payload"] = dict(writer(graph, tmp)) if writer else {}
        _write_json(tmp / SUMMARY, summary)
        report.write(summary, tmp / "report.html")
        _publish_modes(tmp)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{os.getpid()}"
            os.rename(folder, old)
        os.rename(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _publish_modes(folder: Path) -> None:
    """Temporary files are private (0600/0700); the artifact gets the usual modes under the umask."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for p in folder.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    os.replace(tmp, path)


def _plain(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (set, tuple)):
        return list(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


class Checkpoint:
    """The search's state after each iteration, in ``folder``.

    Args:
        folder: the checkpoint folder (created on first save).
        fingerprint: what identifies the run (input and data hashes, target, budgets,
            options); a checkpoint of a different run is refused.
    """

    def __init__(self, folder: str | os.PathLike, fingerprint: dict[str, Any]):
        self.folder = Path(folder)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=_plain))

    @property
    def exists(self) -> bool:
        return (self.folder / "state.json").is_file()

    def save(self, graph: Graph, state: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"graph-{state['iteration']}-{len(state.get('rounds', []))}.onnx"
        part = self.folder / f".{name}.tmp"
        onnx_io.save(graph, part)
        os.replace(part, self.folder / name)
        _write_json(self.folder / "state.json", {"fingerprint": self.fingerprint, "graph": name, "state": state})
        for old in self.folder.glob("graph-*.onnx"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def load(self) -> tuple[Graph, dict[str, Any]]:
        """The saved graph and state.

        Raises:
            HwccError: no checkpoint, an unreadable one, or one of a different run.
        """
        path = self.folder / "state.json"
        if not path.is_file():
            raise HwccError(f"--resume: no checkpoint at {self.folder}", "run without --resume to start afresh")
        try:
            saved = json.loads(path.read_text())
            graph = onnx_io.load(self.folder / saved["graph"])
        except (OSError, ValueError, KeyError, HwccError) as e:
            raise HwccError(f"--resume: the checkpoint at {self.folder} cannot be read: {e}",
                            f"remove {self.folder} and run without --resume") from None
        theirs = saved.get("fingerprint", {})
        differ = sorted(k for k in set(theirs) | set(self.fingerprint) if theirs.get(k) != self.fingerprint.get(k))
        if differ:
            raise HwccError(f"--resume: the checkpoint at {self.folder} is of a different run "
                            f"(it differs in: {', '.join(differ)})",
                            f"rerun with the same model, data, target, budgets and options, or remove {self.folder}")
        return graph, saved["state"]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
