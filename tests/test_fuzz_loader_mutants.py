"""Fuzzing ``hwcc.load``: mutated models load, or fail with an HwccError; nothing else.

Each case takes a base model (tests/fuzz_bases.py), applies one to three mutations chosen
by its seed (byte flips, truncations, or protobuf-level changes to dims, types,
initializers, names, opsets, domains, subgraphs, functions and external data:
tests/fuzz_cases.py), writes it to a folder of its own and loads it with
``hwcc.load(path)``; a model that loads is also saved back.

The loads run in one worker process that takes case after case, under a watchdog and a
memory limit, and that reports any file opened outside the case's folder
(tests/fuzz_harness.py). A case that ends in another exception, a hang, a crash of the
worker, running out of memory or such an open fails the test, which prints its seed and
mutations. To reproduce one (the worker runs with ``PYTHONHASHSEED=0``)::

    PYTHONHASHSEED=0 .venv/bin/python tests/fuzz_harness.py --case SEED   # loads it here
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from fuzz_harness import fuzz

FAST_CASES = 300
SLOW_CASES = 20_000
FIRST_SEED = 1_000


def _summary(counts: Counter, n: int, seconds: float) -> str:
    return (
        f"loader fuzz: {n} mutated models in {seconds:.0f} s: {counts['clean']} clean errors, "
        f"{counts['ok']} loaded, {counts['foreign']} foreign exceptions, {counts['hang']} hangs, "
        f"{counts['crash']} worker crashes, {counts['memory']} out of memory, "
        f"{counts['escapes']} opens outside the model's folder"
    )


def _check(tmp_path: Path, seeds: range, report_line) -> None:
    start = time.perf_counter()
    counts, bad = fuzz(tmp_path, seeds)
    line = _summary(counts, len(seeds), time.perf_counter() - start)
    print(line)
    report_line(line)
    assert not bad, (
        f"{len(bad)} bad cases (reproduce: tests/fuzz_harness.py --case SEED):\n"
        + "\n".join(bad[:20])
    )
    assert counts["ok"] + counts["clean"] == len(seeds)


def test_fuzz_loader_sample(tmp_path, report_line):
    _check(tmp_path, range(FIRST_SEED, FIRST_SEED + FAST_CASES), report_line)


@pytest.mark.slow
def test_fuzz_loader_many(tmp_path, report_line):
    _check(tmp_path, range(FIRST_SEED, FIRST_SEED + SLOW_CASES), report_line)
