"""Writing files so that a crash leaves the old file or the new one, never half of one
(:func:`write_text`), and disk errors said so that the user can act on them: a full
disk, a read-only or forbidden folder, a file where a folder should be (the artifact,
its checkpoint, its lock)."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from hwcc.errors import HwccError

__all__ = ["disk_error", "write_text"]

_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)  # EEXIST: mkdir of a path that is a file


def disk_error(e: OSError, what: str, path: Path) -> BaseException:
    """``e`` as an HwccError naming ``path`` when it is the disk's fault (full, read-only, a
    file where a folder should be), which the user can fix; ``e`` itself otherwise."""
    if e.errno in _FULL:
        return HwccError(
            f"cannot write {what} {path}: the disk is full ({e.strerror})",
            "free some space there, or give -o a folder on another disk, and rerun "
            "(with --resume if a checkpoint was saved)",
        )
    if e.errno in _NOT_WRITABLE:
        return HwccError(
            f"cannot write {what} {path}: {e.strerror}", "give -o a folder you can write to"
        )
    if e.errno in _NOT_A_FOLDER:
        return HwccError(
            f"cannot write {what} {path}: a part of that path is a file, not a folder",
            "give -o a path whose parent folders are folders",
        )
    return e


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, synced and
    renamed over it: a reader sees the old contents or the new, whole."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
