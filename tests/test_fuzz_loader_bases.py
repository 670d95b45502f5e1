"""The loader fuzzer's base models (tests/fuzz_bases.py) load unmutated, so that the
mutations are what the fuzzer (test_fuzz_loader_mutants.py) tests."""

from __future__ import annotations

from fuzz_bases import base_models
from fuzz_cases import Case, write_case

import hwcc


def test_every_base_model_loads(tmp_path):
    """The unmutated bases load, so the mutations are what the fuzzer tests."""
    for base in base_models():
        case = Case(0, base.name, base.model, base.data, {"allow_dynamic": True})
        hwcc.load(write_case(case, tmp_path / base.name), allow_dynamic=True)
