"""The summary's values as the report shows them.

Every key of the summary may be missing and every number ``None`` or not finite (an
accuracy that was not measured): these print as a dash or "not measured", never fail.
Shared by the page (:mod:`hwcc.report.html`) and its plots (:mod:`hwcc.report.plots`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hwcc.search.budget import format_metric

__all__ = [
    "METRIC_NAMES",
    "finite",
    "format_percent",
    "format_settings",
    "format_value",
    "primary_metric",
]

METRIC_NAMES = {"latency_s": "latency", "energy_j": "energy", "size_bytes": "size"}


def finite(v: Any) -> bool:
    """A real number (not a bool), neither NaN nor infinite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def format_value(metric: str | None, value: Any) -> str:
    """``value`` in ``metric``'s unit, or a dash when it is missing or not finite."""
    return format_metric(metric, value) if finite(value) else "–"


def format_percent(value: Any) -> str:
    """A fraction as a percentage, or "not measured"."""
    return f"{value * 100:.2f}%" if finite(value) else "not measured"


def format_settings(settings: Any) -> str:
    """``{"k": 4}`` -> ``k=4``; ``{"quantize": {"mode": "int8"}}`` -> ``quantize(mode=int8)``."""
    if not isinstance(settings, Mapping):
        return "" if settings is None else str(settings)
    return ", ".join(
        f"{k}({format_settings(v)})" if isinstance(v, Mapping) else f"{k}={v}"
        for k, v in settings.items()
    )


def primary_metric(s: Mapping[str, Any]) -> str:
    """The target's primary metric (``latency_s`` when the summary does not say)."""
    return (s.get("target") or {}).get("primary_metric") or "latency_s"
