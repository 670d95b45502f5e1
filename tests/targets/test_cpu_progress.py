"""The progress bar that ``hwcc profile --target cpu`` draws while it measures: quiet off a
terminal; on one, redrawn in place and never wider than the terminal.
"""

from __future__ import annotations

import io

import pytest

from hwcc.progress import Progress, format_duration


# ---------------------------------------------------------------------- the progress bar
class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_quiet_off_terminal():
    out = io.StringIO()
    with Progress(3, "work", stream=out) as bar:
        bar.update(note="a")
    assert out.getvalue() == ""


def test_progress_draws_on_terminal():
    out = _Tty()
    with Progress(4, "profiling", stream=out, min_interval=0) as bar:
        bar.update(2, note="Conv")
        assert "2/4" in bar.line() and "ETA" in bar.line() and "Conv" in bar.line()
        bar.update(2)
    text = out.getvalue()
    assert text.startswith("\r") and "4/4" in text and text.endswith("\n")
    assert (
        format_duration(42) == "42s"
        and format_duration(185) == "3m05s"
        and format_duration(-1) == "?"
    )


@pytest.mark.parametrize("columns", [20, 40, 80, 200])
def test_progress_fits_the_terminal_and_redraws_in_place(columns):
    """A line as wide as the terminal wraps on most terminals and leaves a stale line
    behind at the next carriage return: every drawn line is at most columns - 1 wide, and
    each redraw erases to the end of the line instead of padding with spaces."""
    out = _Tty()
    with Progress(
        40, "profiling lenet5", unit="kernels", stream=out, min_interval=0, columns=columns
    ) as bar:
        for i in range(40):
            bar.update(note=f"Conv_{i} " + "x" * 150)
        bar.log("a line of its own")
    draws = out.getvalue().split("\r")[1:]
    assert draws and all(len(d.replace("\x1b[K", "").rstrip("\n")) <= columns - 1 for d in draws)
    assert all(d.endswith("\x1b[K") or d.endswith("\n") for d in draws)
    assert out.getvalue().count("a line of its own") == 1
    if columns >= 80:
        assert "40/40 kernels" in out.getvalue() and "[" in out.getvalue()
