"""Shared fixtures. Tests that report a measured figure (for example how many of the
ONNX node tests round-trip) add a line with ``report_line``; the lines are printed in
the summary at the end of the run, after the assertions have been checked."""

from __future__ import annotations

import os

# BLAS with one thread per process: on a 2-core machine OpenBLAS's own threads fight the
# test's and make SVDs 6-20x slower. Only effective if numpy is not imported yet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

# The helper modules beside the tests that check with ``assert``: their asserts are rewritten
# like the tests' own, so a failure shows the values compared. Only effective before they
# are imported, which the tests do after this file.
pytest.register_assert_rewrite("channel_checks", "durability_runs", "onnx_round_trip")

_REPORT: list[str] = []


@pytest.fixture
def report_line():
    return _REPORT.append


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("hwcc measurements")
        for line in _REPORT:
            terminalreporter.write_line(line)


# ---------------------------------------------------------------------- the pass registry
@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so that test passes do not leak into others
    (tests/test_pass_infra_*.py)."""
    from hwcc.ir import transform as pass_infra

    reg = dict(pass_infra._discover())
    monkeypatch.setattr(pass_infra, "_REGISTRY", reg)
    return reg


# ---------------------------------------------------------------------- durability
@pytest.fixture(scope="session")
def quick_ref(tmp_path_factory):
    """An uninterrupted QUICK run (tests/durability_runs.py), the result that the killed,
    interrupted and out-of-disk runs of tests/test_durability_*.py must end with. Nothing
    writes to it, so the three files share one run."""
    from durability_runs import QUICK

    from hwcc.cli.commands import main

    out = tmp_path_factory.mktemp("ref") / "ref"
    assert main(["compile", *QUICK, "-o", str(out)]) == 0
    return out


# ---------------------------------------------------------------------- finetune
@pytest.fixture(scope="module")
def one_thread():
    """Timings and speed on a shared machine: torch's own threads fight the other test
    processes for the cores (a small convolution runs several times slower on 2 threads
    than on 1 there), so the finetune tests (tests/test_finetune_*.py, each with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``) pin torch to one thread for the
    whole file and restore it after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    """The digits train and test splits, each as (images, labels)."""
    from hwcc.models.digits import load_split

    return load_split("train"), load_split("test")


@pytest.fixture(scope="module")
def lenet5():
    """The zoo's LeNet-5 on 8x8 digits, for the search's tests."""
    import hwcc

    return hwcc.load("zoo:lenet5-digits")


@pytest.fixture(scope="module")
def eyeriss():
    from hwcc.targets.base import load_target

    return load_target("eyeriss")
