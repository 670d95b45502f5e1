"""``pip install .`` into a fresh virtual environment, run from outside the checkout,
gives a working ``hwcc`` command and the ``hwcc.passes``, ``hwcc.targets`` and
``hwcc.models`` packages with their data files.

The environment sees the already-installed dependencies (``--system-site-packages``)
and the wheel is installed with ``--no-deps``, so the test checks what *our* package
ships without downloading torch again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True, cwd=tmp,
    )
    env_dir = tmp / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    wheel = next(wheels.glob("hwcc-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
                   check=True, cwd=tmp)
    return env_dir, tmp


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
        "assert 'site-packages' in str(p), p;"
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
