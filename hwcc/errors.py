"""Errors a user can act on.

Every error that reaches the command line is an :class:`HwccError`: it says what was
wrong, where, and what to do. The CLI prints it without a traceback and exits with
``exit_code`` (2 for bad input).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def json_kind(kind: type) -> str:
    """How a message names a JSON value of Python type ``kind``: ``an object``, ``a number``..."""
    return _JSON_KINDS.get(kind, kind.__name__)


class HwccError(Exception):
    """A problem the user can fix.

    Args:
        message: what is wrong and where.
        hint: what to do about it (optional).
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ModelLoadError(HwccError):
    """The model file is missing, not ONNX, truncated, or has unfixed dynamic dims."""


class BudgetError(HwccError):
    """A budget string could not be parsed."""


class PassError(HwccError):
    """A pass failed; the message names the pass."""


def check_fields(obj: Any, types: Mapping[str, type | tuple[type, ...]], where: str) -> None:
    """Check that ``obj`` is a JSON object holding every field of ``types`` with its type.

    Raises:
        ValueError: naming the first field missing or of the wrong type.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{where} is {json_kind(type(obj))}, not an object")
    for key, want in types.items():
        if key not in obj:
            raise ValueError(f"{where} has no {key!r}")
        v = obj[key]
        if not isinstance(v, want) or (isinstance(v, bool) and want is not bool):
            names = sorted({json_kind(t) for t in (want if isinstance(want, tuple) else (want,))})
            raise ValueError(f"{where}: {key!r} is {json_kind(type(v))}, not {' or '.join(names)}")
