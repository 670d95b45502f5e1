"""A small SVG plotting helper for the HTML report.

Charts are strings of inline SVG with presentation attributes only (no CSS, no script,
no external reference), so each one is also a well-formed XML document. Every data point
is a ``<circle>`` carrying a ``<title>`` tooltip; legends and axes use other elements, so
the circles in a chart are exactly its data points.

Axes run over "nice" round ticks (1, 2 or 5 times a power of ten) that cover the data,
and tick labels share one SI prefix per axis so they read ``0, 50 us, 100 us``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

Formatter = Callable[[Sequence[float]], list[str]]

BLUE, ORANGE, GREEN, RED, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#8c8c8c"

_PREFIXES = [
    (1e9, "G"),
    (1e6, "M"),
    (1e3, "k"),
    (1.0, ""),
    (1e-3, "m"),
    (1e-6, "u"),
    (1e-9, "n"),
    (1e-12, "p"),
]
_TOP, _BOTTOM, _LEFT, _RIGHT = 52, 44, 74, 40


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """Round tick values that cover ``[lo, hi]``.

    The step is 1, 2 or 5 times a power of ten, chosen so about ``n`` ticks cover the
    range; the first tick is at or below ``lo`` and the last at or above ``hi``. A range of
    one value is widened by one unit of its leading digit (``5`` -> ``4 .. 6``; ``0`` ->
    ``0 .. 1``) so a chart of equal values still has an axis.

    Args:
        lo: smallest value to cover.
        hi: largest value to cover (swapped with ``lo`` when smaller).
        n: about how many ticks.
        integer: steps of at least 1, for counts such as iterations.

    Returns:
        The ticks, ascending, at least two of them.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    lo, hi = min(lo, hi), max(lo, hi)
    if lo == hi:
        if lo == 0:
            hi = 1.0
        else:
            unit = 10.0 ** math.floor(math.log10(abs(lo)))
            lo, hi = lo - unit, hi + unit
    step = _nice_step((hi - lo) / max(n - 1, 1))
    if integer:
        step = max(step, 1.0)
    # the tolerance keeps 0.30000000000000004 / 0.1 from adding a tick past the data
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [float(f"{k * step:.12g}") for k in range(first, max(last, first + 1) + 1)]


def _nice_step(raw: float) -> float:
    exp = math.floor(math.log10(raw))
    frac = raw / 10.0**exp
    nice = 1.0 if frac < 1.5 else 2.0 if frac < 3 else 5.0 if frac < 7 else 10.0
    return nice * 10.0**exp


def si_labels(ticks: Sequence[float], unit: str) -> list[str]:
    """Tick labels sharing one SI prefix, picked from the largest tick: ``100 us``.

    Args:
        ticks: the tick values in base units (seconds, joules, bytes).
        unit: the base unit's symbol (``s``, ``J``, ``B``).
    """
    top = max((abs(t) for t in ticks), default=0.0)
    scale, prefix = next(((s, p) for s, p in _PREFIXES if top >= s), _PREFIXES[-1])
    if unit == "B" and prefix == "k":
        prefix = "K"  # as hwcc.search.budget writes sizes
    return ["0" if t == 0 else f"{t / scale:.4g} {prefix}{unit}" for t in ticks]


def percent_labels(ticks: Sequence[float]) -> list[str]:
    """Tick labels for fractions, as percentages: ``0.95`` -> ``95%``."""
    return [f"{t * 100:.4g}%" for t in ticks]


def count_labels(ticks: Sequence[float]) -> list[str]:
    """Tick labels for plain numbers: ``3``, ``0.5``."""
    return [f"{t:.6g}" for t in ticks]


def _map(v: float, lo: float, hi: float, a: float, b: float) -> float:
    if hi == lo:
        return (a + b) / 2
    return a + (v - lo) / (hi - lo) * (b - a)


def _text(x: float, y: float, s: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(s)}</text>'


def _open(title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        _text(width / 2, 18, title, "middle", ' font-size="13" font-weight="bold"'),
    ]


def _legend(entries: Sequence[tuple[str, str, bool]], y: float) -> list[str]:
    out, x = [], float(_LEFT)
    for label, color, dashed in entries:
        if dashed:
            out.append(
                f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 14:.1f}" y2="{y - 4:.1f}" '
                f'stroke="{color}" stroke-width="2" stroke-dasharray="4 3"/>'
            )
        else:
            out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="10" fill="{color}"/>')
        out.append(_text(x + 18, y, label))
        x += 30 + 6.5 * len(label)
    return out


class Chart:
    """An x-y chart: lines, points with tooltips, and reference lines.

    Args:
        title: shown above the plot and as the SVG's ``<title>``.
        xlabel: the x axis' name.
        ylabel: the y axis' name.
        xfmt: tick labels for the x axis, given the tick values.
        yfmt: tick labels for the y axis.
        xint: x ticks at whole numbers (iterations).
        width: in pixels.
        height: in pixels.
    """

    def __init__(
        self,
        title: str,
        xlabel: str,
        ylabel: str,
        xfmt: Formatter = count_labels,
        yfmt: Formatter = count_labels,
        *,
        xint: bool = False,
        width: int = 620,
        height: int = 360,
    ):
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xfmt, self.yfmt, self.xint = xfmt, yfmt, xint
        self.width, self.height = width, height
        self._lines: list[tuple[list[float], list[float], str, bool]] = []
        self._points: list[tuple[list[float], list[float], str, list[str], list[str], float]] = []
        self._refs: list[tuple[str, float, str, str]] = []
        self._legend: list[tuple[str, str, bool]] = []

    def line(
        self,
        xs: Sequence[float],
        ys: Sequence[float],
        color: str,
        label: str | None = None,
        dashed: bool = False,
    ) -> None:
        """A polyline through ``(xs[i], ys[i])``."""
        self._lines.append((list(xs), list(ys), color, dashed))
        if label:
            self._legend.append((label, color, dashed))

    def points(
        self,
        xs: Sequence[float],
        ys: Sequence[float],
        color: str,
        tips: Sequence[str],
        labels: Sequence[str] | None = None,
        label: str | None = None,
        r: float = 4.0,
    ) -> None:
        """One circle per point, with ``tips[i]`` as its tooltip and ``labels[i]`` beside it."""
        self._points.append((list(xs), list(ys), color, list(tips), list(labels or []), r))
        if label:
            self._legend.append((label, color, False))

    def vline(self, x: float, color: str, text: str) -> None:
        """A dashed vertical reference line (a budget limit), labelled at its top."""
        self._refs.append(("v", x, color, text))

    def hline(self, y: float, color: str, text: str) -> None:
        """A dashed horizontal reference line, labelled at its right end."""
        self._refs.append(("h", y, color, text))

    def render(self) -> str:
        """The chart as an ``<svg>`` element."""
        xs = [x for s in self._lines + self._points for x in s[0]]
        ys = [y for s in self._lines + self._points for y in s[1]]
        xs += [v for kind, v, _, _ in self._refs if kind == "v"]
        ys += [v for kind, v, _, _ in self._refs if kind == "h"]
        xt = nice_ticks(min(xs, default=0.0), max(xs, default=1.0), integer=self.xint)
        yt = nice_ticks(min(ys, default=0.0), max(ys, default=1.0))
        x0, x1, y0, y1 = _LEFT, self.width - _RIGHT, self.height - _BOTTOM, _TOP
        px = lambda v: _map(v, xt[0], xt[-1], x0, x1)  # noqa: E731
        py = lambda v: _map(v, yt[0], yt[-1], y0, y1)  # noqa: E731
        out = _open(self.title, self.width, self.height) + _legend(self._legend, 38)
        for t, s in zip(xt, self.xfmt(xt)):
            out.append(
                f'<line x1="{px(t):.1f}" y1="{y1}" x2="{px(t):.1f}" y2="{y0}" stroke="#e5e5e5"/>'
            )
            out.append(_text(px(t), y0 + 15, s, "middle"))
        for t, s in zip(yt, self.yfmt(yt)):
            out.append(
                f'<line x1="{x0}" y1="{py(t):.1f}" x2="{x1}" y2="{py(t):.1f}" stroke="#e5e5e5"/>'
            )
            out.append(_text(x0 - 5, py(t) + 4, s, "end"))
        out.append(
            f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" '
            'fill="none" stroke="#444"/>'
        )
        out.append(_text((x0 + x1) / 2, self.height - 8, self.xlabel, "middle"))
        out.append(
            _text(
                14,
                (y0 + y1) / 2,
                self.ylabel,
                "middle",
                f' transform="rotate(-90 14 {(y0 + y1) / 2:.1f})"',
            )
        )
        for kind, v, color, text in self._refs:
            if kind == "v":
                out.append(
                    f'<line x1="{px(v):.1f}" y1="{y1}" x2="{px(v):.1f}" y2="{y0}" stroke="{color}" '
                    f'stroke-width="1.5" stroke-dasharray="6 4"/>'
                )
                out.append(_text(px(v) + 3, y1 + 12, text, extra=f' fill="{color}"'))
            else:
                out.append(
                    f'<line x1="{x0}" y1="{py(v):.1f}" x2="{x1}" y2="{py(v):.1f}" stroke="{color}" '
                    f'stroke-width="1.5" stroke-dasharray="6 4"/>'
                )
                out.append(_text(x1 - 3, py(v) - 4, text, "end", f' fill="{color}"'))
        for lx, ly, color, dashed in self._lines:
            pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(lx, ly))
            dash = ' stroke-dasharray="5 3"' if dashed else ""
            out.append(
                f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{dash}/>'
            )
        for lx, ly, color, tips, labels, r in self._points:
            for i, (x, y) in enumerate(zip(lx, ly)):
                out.append(
                    f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{r}" '
                    f'fill="{color}" stroke="#fff">'
                    f"<title>{escape(tips[i] if i < len(tips) else '')}</title></circle>"
                )
                if i < len(labels) and labels[i]:
                    out.append(
                        _text(px(x) + r + 2, py(y) - r - 1, labels[i], extra=' font-size="10"')
                    )
        out.append("</svg>")
        return "\n".join(out)


def hbars(
    title: str,
    rows: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    fmt: Formatter,
    *,
    tips: Sequence[str] = (),
    missing: str = "removed",
    width: int = 620,
) -> str:
    """Grouped horizontal bars: one group per row, one bar per series.

    Args:
        title: shown above the chart.
        rows: one label per group (long labels are shortened; the tooltip has them whole).
        series: ``(label, color, values)``; a value of ``None`` is drawn as the word ``missing``.
        fmt: tick labels for the value axis.
        tips: tooltip per row.
        missing: the word for a ``None`` value.
        width: in pixels.

    Returns:
        The chart as an ``<svg>`` element.
    """
    bar, gap = 9, 8
    group = bar * len(series) + gap
    left = min(230, 12 + 6.5 * max((len(_short(r)) for r in rows), default=4))
    height = _TOP + group * max(len(rows), 1) + _BOTTOM
    x0, x1, top, y0 = left, width - _RIGHT, _TOP, height - _BOTTOM
    values = [v for _, _, vs in series for v in vs if v is not None]
    xt = nice_ticks(0.0, max(values, default=0.0))
    px = lambda v: _map(v, xt[0], xt[-1], x0, x1)  # noqa: E731
    out = _open(title, width, height) + _legend([(lab, c, False) for lab, c, _ in series], 38)
    for t, s in zip(xt, fmt(xt)):
        out.append(
            f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{y0}" stroke="#e5e5e5"/>'
        )
        out.append(_text(px(t), y0 + 15, s, "middle"))
    for i, row in enumerate(rows):
        gy = top + i * group + gap / 2
        tip = tips[i] if i < len(tips) else row
        out.append(
            f"<g><title>{escape(tip)}</title>"
            f"{_text(x0 - 5, gy + group / 2, _short(row), 'end')}</g>"
        )
        for j, (label, color, vs) in enumerate(series):
            y, v = gy + j * bar, vs[i] if i < len(vs) else None
            if v is None:
                out.append(
                    _text(
                        x0 + 4,
                        y + bar - 1,
                        missing,
                        extra=' font-style="italic" fill="#999" font-size="9"',
                    )
                )
                continue
            out.append(
                f'<rect x="{x0}" y="{y:.1f}" width="{max(px(v) - x0, 0.5):.1f}" height="{bar - 1}" '
                f'fill="{color}"><title>{escape(f"{tip}: {label} {fmt([v])[0]}")}</title></rect>'
            )
    out.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{y0}" stroke="#444"/>')
    out.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#444"/>')
    out.append("</svg>")
    return "\n".join(out)


def _short(s: str, n: int = 32) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
