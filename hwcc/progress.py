"""A small progress bar for long jobs (building lookup tables, exporting models).

::

    with Progress(total=len(items), label="profiling") as bar:
        for item in items:
            work(item)
            bar.update(note=item.name)

It draws one line on standard error, rewritten in place: the label, a bar, ``done/total``,
the rate, the time left, and the note of the last step. It draws only when the stream is
a terminal; otherwise (a log file, a pipe, a test) it writes nothing, so logs are not
filled with carriage returns. Redraws are limited to ``min_interval`` seconds apart; the
final state is always drawn on exit.

No dependency beyond the standard library.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

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
        stream: where to draw (default: ``sys.stderr``).
        enabled: force drawing on or off; default: on when ``stream`` is a terminal.
        width: characters of the bar itself.
        min_interval: seconds between redraws.
        note_width: characters of the note shown (longer notes are cut).

    Attributes:
        done: steps completed so far.
    """

    def __init__(self, total: int, label: str = "", *, stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 24, min_interval: float = 0.1, note_width: int = 40):
        self.total, self.label, self.width, self.min_interval = int(total), label, width, min_interval
        self.note_width = note_width
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled if enabled is not None else bool(isatty and isatty())
        self.done = 0
        self.note = ""
        self._start = time.monotonic()
        self._drawn = 0.0
        self._width_used = 0

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        self._draw(force=True)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, note: str = "") -> None:
        """Record ``n`` more steps done; ``note`` says what the last one was."""
        self.done += n
        if note:
            self.note = note
        self._draw()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def line(self) -> str:
        """The text of the bar as it would be drawn now."""
        elapsed = time.monotonic() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [self.label] if self.label else []
        if self.total > 0:
            frac = min(1.0, self.done / self.total)
            filled = int(round(frac * self.width))
            parts.append("[" + "#" * filled + "-" * (self.width - filled) + "]")
            parts.append(f"{self.done}/{self.total}")
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            parts.append(f"{rate:.1f}/s" + (f" ETA {format_duration(left)}" if self.done < self.total else
                                             f" in {format_duration(elapsed)}"))
        else:
            parts.append(f"{self.done} done, {rate:.1f}/s, {format_duration(elapsed)}")
        if self.note:
            w = self.note_width
            parts.append(self.note if len(self.note) <= w else self.note[:w - 1] + "…")
        return "  ".join(parts)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < self.min_interval:
            return
        self._drawn = now
        text = self.line()
        pad = max(0, self._width_used - len(text))
        self._width_used = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
