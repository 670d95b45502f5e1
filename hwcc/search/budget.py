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

Latency and energy count the *system*: the accelerator and the host that runs what the
chip cannot (:attr:`hwcc.targets.base.Target.host`). Prefixed with ``chip:`` they count
the chip alone (``chip:2mJ``, ``chip:5ms``, ``chip:40%energy``: metrics ``chip_energy_j``,
``chip_latency_s``); ``system:`` may be written for the default. Size has no such split.

Sizes use SI prefixes (``1 MB = 10**6 bytes``, as the Deep Compression paper counts);
``KiB``/``MiB``/``GiB`` are binary. A relative budget becomes absolute once the input
model has been priced: :meth:`Budget.resolve`.

A budget is one word, or a number and its unit with one space between. Zero, negative,
infinite and vanishing budgets (below 1 ps, 1 pJ, 1 B or 0.01 %) are refused when parsed,
as are control characters and any whitespace but a space.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hwcc.errors import BudgetError

METRICS = ("latency_s", "energy_j", "size_bytes")
CHIP_METRICS = ("chip_latency_s", "chip_energy_j")  # the accelerator alone, without its host
_CHIP = "chip:"
_SYSTEM = "system:"

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
# ASCII digits only: float() would also read other scripts' digits, which nobody types on purpose.
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_ABSOLUTE = re.compile(rf"({_NUMBER}) ?([A-Za-zµ]+)")
_RELATIVE = re.compile(rf"({_NUMBER}) ?% ?([a-z]*)")
_BARE_NUMBER = re.compile(_NUMBER)
_RELATIVE_UNIT = re.compile(r"%([a-z]*)")
MAX_LENGTH = 40
# The smallest budgets accepted. Below them a budget is a typo, not a target: no model
# runs in under a picosecond or a picojoule, none is smaller than a byte, and a model
# priced at a ten-thousandth of its input's cost is nothing a search can reach.
FLOORS = {
    "latency_s": (1e-12, "latency budget is 0.001ns (1 ps)"),
    "energy_j": (1e-12, "energy budget is 1pJ"),
    "size_bytes": (1.0, "size budget is 1B"),
}
MIN_PERCENT = 0.01

ACCEPTED_FORMS = (
    "latency 5ms, 250us, 1.2s; energy 2mJ, 30uJ, 0.5J; size 1.5MB, 800KB, 2MiB; "
    "relative to the input model 50% (the target's primary metric), 50%latency, 40%energy, "
    "25%size; chip:2mJ, chip:5ms, chip:40%energy for the chip without its host"
)
_HINT = f"accepted forms: {ACCEPTED_FORMS}"


@dataclass(frozen=True)
class Budget:
    """A limit on one metric.

    Attributes:
        text: the budget as the user wrote it.
        metric: ``latency_s``, ``energy_j`` or ``size_bytes``; ``None`` for a bare
            relative budget until :meth:`resolve` picks the target's primary metric.
        limit: the absolute limit in seconds, joules or bytes (``None`` while relative).
        fraction: for a relative budget, the fraction of the input model's value.
        chip: the budget counts the chip alone (``chip:``), not the system with its host.
    """

    text: str
    metric: str | None
    limit: float | None = None
    fraction: float | None = None
    chip: bool = False

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
        metric = self.metric or (_chip_metric(primary_metric) if self.chip else primary_metric)
        if metric not in original:
            raise BudgetError(
                f"budget {self.text!r} needs the input model's {metric}, "
                "which the target does not price"
            )
        limit = original[metric] * self.fraction
        if not (math.isfinite(limit) and limit > 0):
            raise BudgetError(
                f"budget {self.text!r} leaves no {metric}: "
                f"the input model's is {original[metric]!r}",
                "give an absolute budget instead, e.g. 5ms, 2mJ or 1.5MB",
            )
        return Budget(self.text, metric, limit, self.fraction, self.chip)

    def is_met(self, metrics: Mapping[str, float]) -> bool:
        if self.limit is None or self.metric is None:
            raise ValueError(
                f"relative budget {self.text!r} must be resolved before it is compared"
            )
        return metrics[self.metric] <= self.limit

    def describe(self) -> str:
        if self.limit is None:
            return (
                f"{self.fraction * 100:g}% of the input model's {self.metric or 'primary metric'}"
            )
        return f"{format_metric(self.metric, self.limit)} ({self.text})"


def parse_budget(text: str) -> Budget:
    """Parse a budget string.

    A budget is a positive amount with its unit, or a percentage below 100 %; one ASCII
    space may sit between the number and the unit. Control characters, other whitespace,
    infinities and amounts below :data:`FLOORS` (or :data:`MIN_PERCENT`) are refused: they
    are typos that would otherwise surface later as a budget nothing can meet, or a
    division by zero.

    Raises:
        BudgetError: the string is not one of the accepted forms; the message lists them.
    """
    if not isinstance(text, str):
        raise BudgetError(f"a budget is a string such as '5ms', got {type(text).__name__}", _HINT)
    shown = _shown(text)
    if len(text) > MAX_LENGTH:
        raise BudgetError(f"budget {shown} is too long to be one ({len(text)} characters)", _HINT)
    if not text.isprintable():
        raise BudgetError(
            f"budget {shown} holds a control character or a whitespace other than a space", _HINT
        )
    s = text.strip(" ")
    if s.startswith(_CHIP):
        return _on_chip(text, parse_budget(s[len(_CHIP) :]))
    if s.startswith(_SYSTEM):
        return dataclasses.replace(parse_budget(s[len(_SYSTEM) :]), text=text)
    m = _RELATIVE.fullmatch(s)
    if m:
        return _relative(text, float(m.group(1)), m.group(2))
    m = _ABSOLUTE.fullmatch(s)
    if m:
        return _absolute(text, float(m.group(1)), m.group(2))
    if s.startswith(("-", "+")):
        raise BudgetError(f"budget {shown} must be a positive amount without a sign", _HINT)
    if _BARE_NUMBER.fullmatch(s):
        raise BudgetError(f"cannot read budget {shown}: it has no unit", _HINT)
    raise BudgetError(f"cannot read budget {shown}", _HINT)


def _chip_metric(metric: str) -> str:
    return metric if metric.startswith("chip_") else f"chip_{metric}"


def _on_chip(text: str, inner: Budget) -> Budget:
    """``inner`` counted on the chip alone: latency and energy only."""
    if inner.chip:
        raise BudgetError(f"budget {_shown(text)} says chip: twice", _HINT)
    if inner.metric == "size_bytes":
        raise BudgetError(
            f"budget {_shown(text)}: size has no chip/system split (the host holds no weights)",
            _HINT,
        )
    metric = None if inner.metric is None else _chip_metric(inner.metric)
    return Budget(text, metric, inner.limit, inner.fraction, chip=True)


def _relative(text: str, percent: float, word: str) -> Budget:
    if word not in _RELATIVE_METRIC:
        raise BudgetError(f"unknown metric {word!r} in budget {_shown(text)}", _HINT)
    hint = (
        f"a relative budget asks for a smaller model, from {MIN_PERCENT}% to below 100%, "
        "e.g. 50% or 40%energy"
    )
    if not 0 < percent < 100:
        raise BudgetError(
            f"relative budget {_shown(text)} must be between 0% and 100% (exclusive)", hint
        )
    if percent < MIN_PERCENT:
        raise BudgetError(
            f"relative budget {_shown(text)} is too small: the smallest is {MIN_PERCENT}%", hint
        )
    return Budget(text, _RELATIVE_METRIC[word], None, percent / 100)


def _absolute(text: str, number: float, unit: str) -> Budget:
    if unit not in _UNITS:
        raise BudgetError(f"cannot read budget {_shown(text)}: unknown unit {unit!r}", _HINT)
    metric, scale = _UNITS[unit]
    value = number * scale
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"budget {_shown(text)} must be a positive, finite amount", _HINT)
    floor, smallest = FLOORS[metric]
    if value < floor * (1 - 1e-9):  # 0.001ns is 1 ps, whatever the last bit of the product says
        raise BudgetError(f"budget {_shown(text)} is too small: the smallest {smallest}", _HINT)
    return Budget(text, metric, value)


def _shown(text: str) -> str:
    """The budget quoted for a one-line message: escapes visible, long ones cut short."""
    return repr(text if len(text) <= MAX_LENGTH else text[:MAX_LENGTH] + "...")


def is_split_budget(number: str, word: str) -> bool:
    """Whether ``number word`` is a budget the shell cut in two (``--budget 5 ms`` unquoted)."""
    m = _RELATIVE_UNIT.fullmatch(word)
    unit = word in _UNITS or bool(m and m.group(1) in _RELATIVE_METRIC)
    return unit and bool(_BARE_NUMBER.fullmatch(number))


def format_metric(metric: str | None, value: float) -> str:
    """A value with its unit scaled for reading: ``0.0052 latency_s`` -> ``5.2 ms`` (the
    chip's metrics read like the system's)."""
    if metric in CHIP_METRICS:
        metric = metric[len("chip_") :]
    if metric == "latency_s":
        return _scaled(value, [(1, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")])
    if metric == "energy_j":
        return _scaled(value, [(1, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ")])
    if metric == "size_bytes":
        return _scaled(value, [(1e9, "GB"), (1e6, "MB"), (1e3, "KB"), (1, "B")])
    return f"{value:.4g}"


def _scaled(value: float, units: list[tuple[float, str]]) -> str:
    """``value`` to 3 significant digits in the largest unit it reaches once rounded:
    999.7 ns is ``1 us``, not ``1e+03 ns``."""
    rounded = float(f"{value:.3g}")
    for scale, unit in units:
        if abs(rounded) >= scale:
            return f"{value / scale:.3g} {unit}"
    scale, unit = units[-1]
    return f"{value / scale:.3g} {unit}"
