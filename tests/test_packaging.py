"""``pip install .`` into a fresh virtual environment, run from outside the checkout,
gives a working ``hwcc`` command and the ``hwcc.passes``, ``hwcc.targets`` and
``hwcc.models`` packages with their data files.

The new environment has no packages of its own but the wheel (installed with
``--no-deps``, so torch is not downloaded again). It finds the dependencies in the
site-packages of the interpreter running the tests, through a ``.pth`` file, and only
there: the system interpreter's site-packages stay out of it (``--system-site-packages``
would show the *system* Python's packages, which on a fresh machine lack onnx and torch,
not the test environment's). A ``.pth`` line adds a folder to ``sys.path`` without
running the ``.pth`` files inside it, so the checkout's editable install of hwcc stays
invisible and ``import hwcc`` finds the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A wheel built and installed into a new environment, then run: 10 s in all.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    wheels = tmp / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        cwd=tmp,
    )
    env_dir = tmp / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    _see_our_dependencies(py)
    wheel = next(wheels.glob("hwcc-*.whl"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        cwd=tmp,
    )
    return env_dir, tmp


def _see_our_dependencies(py: Path) -> None:
    """Put this interpreter's site-packages on the new environment's path, after its own."""
    theirs = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    (Path(theirs) / "hwcc-test-deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))


def run_outside(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(cwd / "cache")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_ships_every_package_and_the_console_script(installed):
    env_dir, tmp = installed
    py = str(env_dir / "bin" / "python")
    code = (
        "import hwcc, hwcc.passes, hwcc.targets, hwcc.models, pathlib;"
        "p = pathlib.Path(hwcc.__file__).resolve();"
        f"assert p.is_relative_to({str(env_dir.resolve())!r}), p;"
        "d = pathlib.Path(hwcc.models.__file__).parent / 'data';"
        "print(sorted(x.name for x in d.iterdir()))"
    )
    r = run_outside(env_dir, tmp, py, "-c", code)
    assert r.returncode == 0, r.stderr
    assert "digits.npz" in r.stdout and "lenet5-digits.onnx" in r.stdout
    r = run_outside(env_dir, tmp, str(env_dir / "bin" / "hwcc"), "--help")
    assert r.returncode == 0, r.stderr
    for command in ("compile", "inspect", "apply", "targets", "profile", "zoo"):
        assert command in r.stdout


def test_installed_command_runs_on_a_bundled_model(installed):
    env_dir, tmp = installed
    r = run_outside(env_dir, tmp, str(env_dir / "bin" / "hwcc"), "inspect", "zoo:lenet5-digits")
    assert r.returncode == 0, r.stderr
    assert "TOTAL" in r.stdout.upper()
