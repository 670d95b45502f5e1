"""The torch executor's coverage of ONNX's node tests (hwcc.train.coverage): the
classification of a case, and a floor under the share of the suite it reproduces."""

from __future__ import annotations

import numpy as np
import pytest

from hwcc.train import coverage
from hwcc.train.ops import OPS

# Measured on 2026-12-06 at commit 71e6fe5: 1469 of the 1526 cases onnxruntime runs (96.3%,
# onnx 1.23.2, onnxruntime's CPU provider; 940, 61.6%, at fbdbf39 and 477, 31.3%, at 6dbc051
# the same morning). What is left: strings, sequences and optionals (not runnable), the
# ai.onnx.ml ops, and last-bit float16/float32 differences. A regression floor, the share
# rounded down to the percent: raise it as ops are added, never lower it to let a change pass.
FLOOR = 0.96

# Collecting even one case makes onnx generate every case of its suite with its reference
# implementation: 9 s.
pytestmark = pytest.mark.slow


def _one(name: str) -> coverage.CaseResult:
    (case,) = coverage._cases([name])
    result = coverage.classify(case)
    assert result is not None, f"onnxruntime does not run {name}"
    return result


@pytest.mark.parametrize("name, op", [("test_add", "Add"), ("test_relu", "Relu")])
def test_a_supported_op_is_reproduced(name, op):
    assert _one(name) == coverage.CaseResult(name, op, coverage.REPRODUCED, "")


def test_an_op_the_executor_lacks_is_refused_with_the_builders_message():
    assert "Binarizer" not in OPS, "pick another op the executor lacks"
    result = _one("test_ai_onnx_ml_binarizer")
    assert (result.op, result.status) == ("Binarizer", coverage.REFUSED)
    assert result.reason == "no builder for Binarizer"


def test_a_sequence_input_is_not_runnable_by_the_executor():
    result = _one("test_sequence_insert_at_back")
    assert result.status == coverage.NOT_RUNNABLE
    assert result.reason.startswith("not runnable by the executor: sequence input")


def test_a_numeric_mismatch_names_the_output_and_the_error():
    assert coverage._compare([[1.0, 2.0]], [[1.0, 2.1]], 1e-3, 1e-7) == (
        "output 0: 1 of 2 values off, max |err| 0.1"
    )
    assert "dtype float32, expected float64" in coverage._compare(
        [np.zeros(2)], [np.zeros(2, "float32")], 1e-3, 1e-7
    )


def test_the_summary_groups_by_op_with_the_first_reason():
    cov = coverage.Coverage(
        [
            coverage.CaseResult("a", "Add", coverage.REPRODUCED),
            coverage.CaseResult("b", "Det", coverage.REFUSED, "build: no Det"),
            coverage.CaseResult("c", "Det", coverage.MISMATCH, "later"),
        ],
        total=4,
    )
    assert cov.share == pytest.approx(1 / 3)
    assert cov.by_op() == {"Add": (1, 1, ""), "Det": (2, 0, "refused: build: no Det")}
    table = coverage.summary(cov)
    assert table.splitlines()[0] == cov.line()
    assert table.index("Det") < table.index("Add")  # the most failing first


@pytest.mark.slow
def test_the_executor_reproduces_at_least_the_floor_of_the_node_tests(report_line):
    cov = coverage.measure()
    report_line(cov.line())
    assert cov.runnable > 1000
    assert cov.share >= FLOOR, coverage.summary(cov)
