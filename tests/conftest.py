"""Shared fixtures. Tests that report a measured figure (for example how many of the
ONNX node tests round-trip) add a line with ``report_line``; the lines are printed in
the summary at the end of the run, after the assertions have been checked."""

from __future__ import annotations

import pytest

_REPORT: list[str] = []


@pytest.fixture
def report_line():
    return _REPORT.append


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("hwcc measurements")
        for line in _REPORT:
            terminalreporter.write_line(line)
