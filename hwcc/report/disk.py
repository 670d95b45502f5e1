"""Disk errors said so that the user can act on them: a full disk, a read-only or
forbidden folder, a file where a folder should be (the artifact, its checkpoint, its
lock)."""

from __future__ import annotations

import errno
from pathlib import Path

from hwcc.errors import HwccError

__all__ = ["disk_error"]

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
