"""Pass knobs: the typed settings a pass reads, a search proposes and a user ``--set``s.

A knob is a number, a string or a flag, or one of two containers a search needs to
change one layer at a time:

* ``dict``: a value per layer, ``{"fc1": 0.3}``; typed on the command line as
  ``fc1=0.3,fc2=0.1`` or a JSON object. ``item`` is the values' type, and ``range``
  bounds each value.
* ``tuple``: node names, ``("fc1", "fc2")``; typed as ``fc1,fc2``.

Both accept their text form wherever they accept the value, so a setting read from a
TOML file or typed by hand means the same as one built by the search.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hwcc.errors import HwccError

__all__ = ["Knob", "show_value"]

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_SCALARS = (int, float, str, bool)


@dataclass(frozen=True)
class Knob:
    """A setting of a pass that a search may propose or a user may ``--set``.

    Attributes:
        name: the knob's name, unique within its pass.
        type: ``int``, ``float``, ``str``, ``bool``, ``dict`` (per layer) or ``tuple`` (names).
        default: the value used when nothing is set.
        help: one line saying what it does.
        range: inclusive ``(low, high)`` bounds for numbers (for a ``dict``: its values);
            either may be ``None``.
        choices: the accepted values, for any scalar type.
        item: the values' type of a ``dict`` knob (``float`` or ``int``).
    """

    name: str
    type: type
    default: Any
    help: str
    range: tuple[float | None, float | None] | None = None
    choices: tuple[Any, ...] | None = None
    item: type | None = None

    def describe(self) -> str:
        """What the knob accepts, in words: ``an int in [0, 1024]``."""
        if self.type is dict:
            value = _Scalar(self.item or float, self.range).describe()
            return f"per-layer values NAME=VALUE,NAME=VALUE (or a JSON object), each {value}"
        if self.type is tuple:
            return "node names NAME,NAME (blank: none)"
        if self.choices is not None:
            return "one of " + ", ".join(show_value(c) for c in self.choices)
        return _Scalar(self.type, self.range).describe()

    def parse(self, text: str, pass_name: str) -> Any:
        """The value of ``--set NAME=TEXT``, checked; ``HwccError`` if it is not accepted."""
        if self.type in (dict, tuple):
            return self.validate(text, pass_name)
        raw = text.strip()
        try:
            if self.type is bool:
                if raw.lower() not in _TRUE | _FALSE:
                    raise ValueError
                value: Any = raw.lower() in _TRUE
            else:
                value = self.type(raw)
        except ValueError:
            raise self._error(text, pass_name) from None
        return self.validate(value, pass_name)

    def validate(self, value: Any, pass_name: str) -> Any:
        """``value`` if it is of the knob's type and in range (ints widen to floats); a
        container knob also takes its text form and returns a fresh container."""
        if self.type is dict:
            return self._per_layer(value, pass_name)
        if self.type is tuple:
            return self._names(value, pass_name)
        checked = _Scalar(self.type, self.range).check(value)
        if checked is _BAD or (self.choices is not None and checked not in self.choices):
            raise self._error(value, pass_name)
        return checked

    def _per_layer(self, value: Any, pass_name: str) -> dict[str, Any]:
        pairs = _pairs(value) if isinstance(value, str) else value
        if not isinstance(pairs, Mapping):
            raise self._error(value, pass_name)
        scalar, out = _Scalar(self.item or float, self.range), {}
        for name, v in pairs.items():
            checked = scalar.check(_number(v, self.item or float))
            if not isinstance(name, str) or not name or checked is _BAD:
                raise self._error(value, pass_name)
            out[name] = checked
        return out

    def _names(self, value: Any, pass_name: str) -> tuple[str, ...]:
        if isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        if isinstance(value, (list, tuple)) and all(isinstance(s, str) and s for s in value):
            return tuple(value)
        raise self._error(value, pass_name)

    def _error(self, value: Any, pass_name: str) -> HwccError:
        default = (
            self.default
            if self.type not in (dict, tuple)
            else (
                ",".join(f"{k}={v}" for k, v in self.default.items())
                if self.type is dict
                else ",".join(self.default)
            )
        )
        what = (
            f"cannot read {self.name} {show_value(value)}: a bad entry"
            if self.type in (dict, tuple)
            else f"knob {self.name!r} cannot be {show_value(value)}"
        )
        return HwccError(
            f"pass {pass_name!r}: {what}",
            f"{self.name} takes {self.describe()} (default {show_value(default)})",
        )

    def check_declaration(self) -> str | None:
        """Why this knob is declared wrongly, or None."""
        if self.type not in (*_SCALARS, dict, tuple):
            return f"has type {self.type!r}; use int, float, str, bool, dict or tuple"
        if self.type is dict and self.item not in (int, float):
            return "is a dict knob: give item=float or item=int"
        return None


@dataclass(frozen=True)
class _Scalar:
    """Checks one scalar against a type and an inclusive range."""

    type: type
    range: tuple[float | None, float | None] | None

    def describe(self) -> str:
        if self.type is bool:
            return "true or false"
        kind = {int: "an int", float: "a float", str: "a string"}[self.type]
        lo, hi = self.range or (None, None)
        if lo is not None and hi is not None:
            return f"{kind} in [{lo}, {hi}]"
        if lo is not None:
            return f"{kind} >= {lo}"
        if hi is not None:
            return f"{kind} <= {hi}"
        return kind

    def check(self, value: Any) -> Any:
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, self.type) and not (self.type is int and isinstance(value, bool))
        if ok and self.type is float:
            ok = math.isfinite(value)
        if ok and self.range is not None:
            lo, hi = self.range
            ok = (lo is None or value >= lo) and (hi is None or value <= hi)
        return value if ok else _BAD


_BAD = object()


def _pairs(text: str) -> Mapping[str, Any] | None:
    """``"a=1,b=2"`` or a JSON object -> its pairs (values as text or JSON numbers)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            got = json.loads(text)
        except ValueError:
            return None
        return got if isinstance(got, dict) else None
    out = {}
    for item in (s for s in text.split(",") if s.strip()):
        name, sep, value = item.rpartition("=")
        if not sep:
            return None
        out[name.strip()] = value.strip()
    return out


def _number(value: Any, kind: type) -> Any:
    """A value of a per-layer knob as ``kind`` (text converted), or the value as it is."""
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            return _BAD
    return value


def show_value(v: Any) -> str:
    """A knob value as messages and reports show it: strings quoted, flags as true/false."""
    return repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
