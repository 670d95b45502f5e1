"""The artifact folder and the search checkpoint, both written so a crash loses nothing.

Artifact ``OUT/``: ``model.onnx``, ``hwcc.json`` (the run's summary), ``report.html`` and
the target's payload. It is written into a temporary folder beside ``OUT`` and renamed
into place; an older artifact at ``OUT`` is swapped out only once the new one is complete.
A folder at ``OUT`` that is not an hwcc artifact is never overwritten.

Checkpoint ``OUT.checkpoint/``: ``graph-<i>-<r>.onnx`` (the search's current graph after
iteration ``i`` and honesty round ``r``) and ``state.json`` (the search state, naming its
graph file and that file's hash). The graph is written first, then the state is replaced
atomically, then every other file is removed: at every instant ``state.json`` names a
complete graph.

One writer at a time: whoever writes ``OUT`` or ``OUT.checkpoint`` holds ``OUT.lock``
(:func:`output_lock`, an exclusive ``flock``), and on taking it clears what a killed
writer left half-done. A disk that is full, read-only or not a folder is an
:class:`~hwcc.errors.HwccError` naming the path, with nothing half-written left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hwcc.errors import HwccError, check_fields
from hwcc.ir import Graph, onnx_io
from hwcc.report import html as report
from hwcc.report.disk import disk_error as _disk_error

__all__ = ["write_artifact", "Checkpoint", "is_artifact", "output_lock"]

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
        raise HwccError(
            f"output {folder} exists and is not a folder", "name a folder for the artifact (-o OUT)"
        )
    if folder.is_dir() and any(folder.iterdir()) and not is_artifact(folder):
        raise HwccError(
            f"output folder {folder} is not empty and holds no hwcc artifact; "
            "it will not be overwritten",
            "name a new or empty folder (-o OUT)",
        )
    return folder


# ---------------------------------------------------------------------- one writer at a time
_held = threading.local()


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``OUT.lock`` beside ``folder``: while it is held no other process writes ``folder``
    or ``folder.checkpoint``.

    A compile holds it from its start to its artifact, so a second compile told to write
    the same folder fails at once instead of mixing its files with the first one's. It is
    re-entrant within a thread (the compile holds it and writing the artifact takes it
    again). Taking it clears what a killed holder left beside ``folder``; the kernel
    releases the lock of a killed process, so a stale lock file never blocks anyone.
    Folders it had to create for the lock file are removed again if they stay empty.

    Raises:
        HwccError: another process holds it, or the lock file cannot be created.
    """
    folder = Path(os.path.abspath(folder))
    held = _held.__dict__.setdefault("folders", set())
    if folder in held:
        yield
        return
    made = _missing_parents(folder)
    path = folder.with_name(folder.name + ".lock")
    fd = _acquire(path, folder)
    held.add(folder)
    try:
        _clear_stale(folder)
        yield
    finally:
        held.discard(folder)
        path.unlink(
            missing_ok=True
        )  # still locked: a process that opened it meanwhile sees it gone and retries
        os.close(fd)
        for d in made:
            with contextlib.suppress(OSError):
                d.rmdir()


def _missing_parents(folder: Path) -> list[Path]:
    """The parents of ``folder`` that do not exist yet, deepest first."""
    out, p = [], folder.parent
    while p != p.parent and not p.exists():
        out.append(p)
        p = p.parent
    return out


def _acquire(path: Path, folder: Path) -> int:
    """A descriptor of ``path`` holding its exclusive flock, this process's pid written in it."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            continue  # a run that had created the parent removed it again in between
        except OSError as e:
            raise _disk_error(e, "the lock file", path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise HwccError(
                f"another hwcc compile is writing {folder} (pid {holder})",
                f"wait for it to end, or give -o another folder ({path} is its lock)",
            ) from None
        if _is_current(fd, path):
            break
        os.close(fd)  # its last holder removed it after we opened it: lock the file now there
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        os.close(fd)
        raise _disk_error(e, "the lock file", path) from None
    return fd


def _holder(fd: int) -> str:
    """The pid the lock's holder wrote, waiting a moment for it: the holder writes it just
    after taking the lock, and a second run can find the lock taken in between."""
    for _ in range(50):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.002)
    return "unknown"


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _clear_stale(folder: Path) -> None:
    """Remove what a killed writer left beside ``folder``: ``.OUT.tmp-*`` (an artifact it was
    writing) and ``.OUT.old-*`` (the artifact it was replacing, put back instead when it was
    killed between its two renames). Called holding the lock: no live writer owns them."""
    for old in _siblings(folder, "old"):
        if not folder.exists() and is_artifact(old):
            os.rename(old, folder)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in _siblings(folder, "tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def _siblings(folder: Path, kind: str) -> list[Path]:
    prefix = f".{folder.name}.{kind}-"
    return sorted(p for p in folder.parent.iterdir() if p.name.startswith(prefix))


# ---------------------------------------------------------------------- artifact
def write_artifact(
    folder: str | os.PathLike, graph: Graph, summary: Mapping[str, Any], target: Any
) -> tuple[Path, dict[str, str]]:
    """Write the artifact to ``folder`` atomically: the model, the target's payload, the
    summary (``hwcc.json``: ``summary`` with the payload's files as ``payload``; ``summary``
    itself is left as it is) and the report.

    Returns:
        The artifact folder, and the payload's files (path -> what it is).

    Raises:
        HwccError: ``folder`` may not be overwritten, another process is writing it, or the
            disk is full or not writable (nothing is left half-written).
    """
    with output_lock(folder):
        folder = check_destination(folder)
        tmp = None
        try:
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
            onnx_io.save(graph, tmp / "model.onnx")
            writer = getattr(target, "write_payload", None)
            payload = dict(writer(graph, tmp)) if writer else {}
            written = {**summary, "payload": payload}
            _write_json(tmp / SUMMARY, written)
            report.write(written, tmp / "report.html")
            _publish_modes(tmp)
            _swap_in(tmp, folder)
        except BaseException as e:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError):
                raise _disk_error(e, "the artifact", folder) from None
            raise
    return folder, payload


def _swap_in(tmp: Path, folder: Path) -> None:
    """Rename the finished ``tmp`` to ``folder``. An artifact already there is moved aside
    first, removed after, and put back if the rename fails (a folder renamed onto a
    non-empty one fails: a writer racing past the lock loses whole, mixing nothing)."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    replacing = folder.exists()
    if replacing:
        os.rename(folder, old)
    try:
        os.rename(tmp, folder)
    except OSError:
        if replacing and not folder.exists():
            os.rename(old, folder)
        raise
    if replacing:
        shutil.rmtree(old, ignore_errors=True)


def _publish_modes(folder: Path) -> None:
    """Temporary files are private (0600/0700); the artifact gets the umask's usual modes."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for p in folder.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _plain(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (set, tuple)):
        return list(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- checkpoint
_SAVED = {"fingerprint": dict, "graph": str, "graph_sha256": str, "state": dict}


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
        """Save ``graph`` and ``state``; a failed save (a full disk) keeps the previous one whole.

        Raises:
            HwccError: the disk is full or not writable.
        """
        name = f"graph-{state['iteration']}-{len(state.get('rounds', []))}.onnx"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            onnx_io.save(graph, self.folder / name)
            _write_json(
                self.folder / "state.json",
                {
                    "fingerprint": self.fingerprint,
                    "graph": name,
                    "graph_sha256": _sha256(self.folder / name),
                    "state": state,
                },
            )
        except OSError as e:
            if self.folder.is_dir():
                self._prune(self._named_graph())
            raise _disk_error(e, "the checkpoint", self.folder) from None
        self._prune(name)

    def _prune(self, graph: str | None) -> None:
        """Remove every file but ``state.json`` and the ``graph`` it names (older graphs, what a
        failed or killed save left), and the folder itself when nothing is left."""
        keep = {"state.json", graph}
        for p in self.folder.iterdir():
            if p.name not in keep:
                p.unlink(missing_ok=True)
        if not any(self.folder.iterdir()):
            self.folder.rmdir()

    def _named_graph(self) -> str | None:
        try:
            return json.loads((self.folder / "state.json").read_text())["graph"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def load(self) -> tuple[Graph, dict[str, Any]]:
        """The saved graph and state.

        Raises:
            HwccError: no checkpoint, an unreadable one (truncated, edited, its graph
                missing or changed), or one of a different run.
        """
        path = self.folder / "state.json"
        if not path.is_file():
            raise HwccError(
                f"--resume: no checkpoint at {self.folder}", "run without --resume to start afresh"
            )
        try:
            saved = json.loads(path.read_text())
            check_fields(saved, _SAVED, "state.json")
            graph_path = self.folder / saved["graph"]
            if graph_path.name != saved["graph"] or not graph_path.is_file():
                raise ValueError(
                    f"state.json names {saved['graph']!r}, which is not a file in the checkpoint"
                )
            if _sha256(graph_path) != saved["graph_sha256"]:
                raise ValueError(
                    f"{saved['graph']} is not the graph that was saved (truncated or changed)"
                )
            graph = onnx_io.load(graph_path)
        except (OSError, ValueError, HwccError) as e:
            raise self.unreadable(getattr(e, "message", str(e))) from None
        theirs = saved["fingerprint"]
        differ = sorted(
            k
            for k in set(theirs) | set(self.fingerprint)
            if theirs.get(k) != self.fingerprint.get(k)
        )
        if differ:
            raise HwccError(
                f"--resume: the checkpoint at {self.folder} is of a different run "
                f"(it differs in: {', '.join(differ)})",
                "rerun with the same model, data, target, budgets and options, "
                f"or remove {self.folder}",
            )
        return graph, saved["state"]

    def unreadable(self, why: str) -> HwccError:
        """The error for a checkpoint that cannot be resumed: ``why``, and what to do."""
        return HwccError(
            f"--resume: the checkpoint at {self.folder} cannot be read: {why}",
            f"remove {self.folder} and run without --resume",
        )

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
