"""A small progress bar for long jobs (building lookup tables, exporting models).

::

    with Progress(total=len(items), label="profiling") as bar:
        for item in items:
            work(item)
            bar.update(note=item.name)

It draws one line on standard error, rewritten in place: the label, a bar, ``done/total``
and what is counted (``3/12 iterations``), the rate, the time left, and the note of the
last step. The line never wraps: it is cut to the terminal's width, note first, then the
bar, and each redraw returns to the line's start and erases to its end, so nothing stale
is left behind. ``log(text)`` prints a line of its own above the bar. It draws only when
the stream is a terminal; otherwise (a log file, a pipe, a test) it writes nothing, so
logs are not filled with carriage returns. Redraws are limited to ``min_interval``
seconds apart; the final state is always drawn on exit.

No dependency beyond the standard library.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """Short human duration: ``42s``, ``3m05s``, ``1h02m``; ``?`` when unknown."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """A progress bar on a terminal; silent elsewhere.

    Args:
        total: the number of steps expected (0 or less: unknown, no bar or ETA).
        label: what is being done, shown first.
        unit: what a step is (``"iterations"``, ``"kernels"``), shown after the count.
        stream: where to draw (default: ``sys.stderr``).
        enabled: force drawing on or off; default: on when ``stream`` is a terminal.
        width: characters of the bar itself, at most (less on a narrow terminal).
        min_interval: seconds between redraws.
        columns: the terminal's width; default: asked of the stream's terminal, else
            ``$COLUMNS``, else 80.

    Attributes:
        done: steps completed so far.
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        unit: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        width: int = 24,
        min_interval: float = 0.1,
        columns: int | None = None,
    ):
        self.total, self.label, self.unit, self.width, self.min_interval = (
            int(total),
            label,
            unit,
            width,
            min_interval,
        )
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled if enabled is not None else bool(isatty and isatty())
        self._columns = columns
        self.done = 0
        self.note = ""
        self._start = time.monotonic()
        self._drawn = 0.0

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        self._draw(force=True)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def columns(self) -> int:
        """The terminal's width now (it may be resized while the bar runs)."""
        if self._columns:
            return self._columns
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return shutil.get_terminal_size((80, 24)).columns

    def update(self, n: int = 1, note: str = "") -> None:
        """Record ``n`` more steps done; ``note`` says what the last one was."""
        self.done += n
        if note:
            self.note = note
        self._draw()

    def log(self, text: str) -> None:
        """Print ``text`` as a line of its own above the bar (which is drawn again below it)."""
        if not self.enabled:
            return
        self.stream.write("\r\x1b[K" + text + "\n")
        self._draw(force=True)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def line(self, columns: int | None = None) -> str:
        """The text of the bar as it would be drawn now, at most ``columns - 1`` characters."""
        fit = (columns or self.columns) - 1
        elapsed = time.monotonic() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        head = [self.label] if self.label else []
        unit = f" {self.unit}" if self.unit else ""
        if self.total > 0:
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            tail = [
                f"{self.done}/{self.total}{unit}",
                f"{rate:.2g}/s"
                + (
                    f" ETA {format_duration(left)}"
                    if self.done < self.total
                    else f" in {format_duration(elapsed)}"
                ),
            ]
        else:
            tail = [f"{self.done}{unit} done, {rate:.2g}/s, {format_duration(elapsed)}"]
        bar_width = min(self.width, fit - len("  ".join(head + tail)) - 4) if self.total > 0 else 0
        if bar_width >= 5:
            filled = int(round(min(1.0, self.done / self.total) * bar_width))
            head.append("[" + "#" * filled + "-" * (bar_width - filled) + "]")
        text = "  ".join(head + tail)
        room = fit - len(text) - 2
        if self.note and room >= 8:
            note = self.note if len(self.note) <= room else self.note[: room - 1] + "…"
            text += "  " + note
        return text[:fit]

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < self.min_interval:
            return
        self._drawn = now
        self.stream.write("\r" + self.line() + "\x1b[K")
        self.stream.flush()


class PhaseClock:
    """Seconds spent in each named phase of a run, summed over every call.

    ``clock.timed("pricing", price)`` returns ``price`` wrapped so that each call adds its
    wall time to ``clock.seconds["pricing"]``: where a compile's time goes, in its
    ``hwcc.json`` (``timing.phases_s``).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def timed(self, phase: str, fn: Callable[..., T]) -> Callable[..., T]:
        def run(*args: Any, **kwargs: Any) -> T:
            start = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.monotonic() - start

        return run
