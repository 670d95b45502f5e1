"""Budgets: what a compiled model must not exceed.

A budget is a limit on one metric of the model as the target prices it:

======================  =========================================  ============
form                    examples                                   metric
======================  =========================================  ============
latency                 ``5ms``, ``250us``, ``1.2s``, ``800ns``    ``latency_s``
energy                  ``2mJ``, ``30uJ``, ``0.5J``, ``40nJ``      ``energy_j``
size                    ``1.5MB``, ``800KB``, ``2MiB``, ``512B``   ``size_bytes``
relative to the input   ``50%`` (the target's primary metric),
                        ``50%latency``, ``40%energy``, ``25%size``
======================  =========================================  ============

Sizes use SI prefixes (``1 MB = 10**6 bytes``, as the Deep Compression paper counts);
``KiB``/``MiB``/``GiB`` are binary. A relative budget becomes absolute once the input
model has been priced: :meth:`Budget.resolve`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hwcc.errors import BudgetError

METRICS = ("latency_s", "energy_j", "size_bytes")

_UNITS: dict[str, tuple[str, float]] = {
    "s": ("latency_s", 1.0),
    "ms": ("latency_s", 1e-3),
    "us": ("latency_s", 1e-6),
    "µs": ("latency_s", 1e-6),
    "ns": ("latency_s", 1e-9),
    "J": ("energy_j", 1.0),
    "mJ": ("energy_j", 1e-3),
    "uJ": ("energy_j", 1e-6),
    "µJ": ("energy_j", 1e-6),
    "nJ": ("energy_j", 1e-9),
    "pJ": ("energy_j", 1e-12),
    "B": ("size_bytes", 1.0),
    "KB": ("size_bytes", 1e3),
    "kB": ("size_bytes", 1e3),
    "MB": ("size_bytes", 1e6),
    "GB": ("size_bytes", 1e9),
    "KiB": ("size_bytes", 1024.0),
    "MiB": ("size_bytes", 1024.0**2),
    "GiB": ("size_bytes", 1024.0**3),
}
_RELATIVE_METRIC = {"": None, "latency": "latency_s", "energy": "energy_j", "size": "size_bytes"}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_ABSOLUTE = re.compile(rf"^({_NUMBER})\s*([A-Za-zµ]+)$")
_RELATIVE = re.compile(rf"^({_NUMBER})\s*%\s*([a-z]*)$")

ACCEPTED_FORMS = (
    "latency 5ms, 250us, 1.2s; energy 2mJ, 30uJ, 0.5J; size 1.5MB, 800KB, 2MiB; "
    "relative to the input model 50% (the target's primary metric), 50%latency, 40%energy, 25%size"
)


@dataclass(frozen=True)
class Budget:
    """A limit on one metric.

    Attributes:
        text: the budget as the user wrote it.
        metric: ``latency_s``, ``energy_j`` or ``size_bytes``; ``None`` for a bare
            relative budget until :meth:`resolve` picks the target's primary metric.
        limit: the absolute limit in seconds, joules or bytes (``None`` while relative).
        fraction: for a relative budget, the fraction of the input model's value.
    """

    text: str
    metric: str | None
    limit: float | None = None
    fraction: float | None = None

    @property
    def is_relative(self) -> bool:
        return self.fraction is not None

    def resolve(self, original: Mapping[str, float], primary_metric: str) -> Budget:
        """The absolute budget, given the input model's metrics.

        Args:
            original: the input model's metrics by name (``latency_s``, ...).
            primary_metric: the metric a bare ``N%`` refers to on this target.
        """
        if not self.is_relative:
            return self
        metric = self.metric or primary_metric
        if metric not in original:
            raise BudgetError(f"budget {self.text!r} needs the input model's {metric}, which the target does not price")
        return Budget(self.text, metric, original[metric] * self.fraction, self.fraction)

    def is_met(self, metrics: Mapping[str, float]) -> bool:
        if self.limit is None or self.metric is None:
            raise ValueError(f"relative budget {self.text!r} must be resolved before it is compared")
        return metrics[self.metric] <= self.limit

    def describe(self) -> str:
        if self.limit is None:
            return f"{self.fraction:.0%} of the input model's {self.metric or 'primary metric'}"
        return f"{format_metric(self.metric, self.limit)} ({self.text})"


def parse_budget(text: str) -> Budget:
    """Parse a budget string.

    Raises:
        BudgetError: the string is not one of the accepted forms; the message lists them.
    """
    s = text.strip()
    m = _RELATIVE.match(s)
    if m:
        value, word = float(m.group(1)), m.group(3)
        if word not in _RELATIVE_METRIC:
            raise BudgetError(f"unknown metric {word!r} in budget {text!r}", f"accepted forms: {ACCEPTED_FORMS}")
        if not 0 < value < 100:
            raise BudgetError(f"relative budget {text!r} must be between 0% and 100% (exclusive)",
                              "a budget asks for a smaller model, e.g. 50%")
        return Budget(text, _RELATIVE_METRIC[word], None, value / 100)
    m = _ABSOLUTE.match(s)
    if m and m.group(3) in _UNITS:
        metric, scale = _UNITS[m.group(3)]
        value = float(m.group(1)) * scale
        if not math.isfinite(value) or value <= 0:
            raise BudgetError(f"budget {text!r} must be a positive amount", f"accepted forms: {ACCEPTED_FORMS}")
        return Budget(text, metric, value)
    raise BudgetError(f"cannot read budget {text!r}", f"accepted forms: {ACCEPTED_FORMS}")


def format_metric(metric: str | None, value: float) -> str:
    """A value with its unit scaled for reading: ``0.0052 latency_s`` -> ``5.2 ms``."""
    if metric == "latency_s":
        return _scaled(value, [(1, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")])
    if metric == "energy_j":
        return _scaled(value, [(1, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ")])
    if metric == "size_bytes":
        return _scaled(value, [(1e9, "GB"), (1e6, "MB"), (1e3, "KB"), (1, "B")])
    return f"{value:.4g}"


def _scaled(value: float, units: list[tuple[float, str]]) -> str:
    for scale, unit in units:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    scale, unit = units[-1]
    return f"{value / scale:.3g} {unit}"
