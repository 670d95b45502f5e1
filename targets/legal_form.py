"""A target's ``[legal_form.<pass>]`` tables: the passes (and their knob settings) that
turn any model into the form the target runs, checked against the pass registry when the
target file is read."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwcc.errors import HwccError

__all__ = ["parse_legal_form"]


def parse_legal_form(table: Any, where: Path | str) -> dict[str, dict[str, Any]]:
    """The ``[legal_form.<pass>]`` tables, each pass and knob checked against the registry."""
    if not table:
        return {}
    from hwcc.ir.transform import get_pass  # the registry imports every pass: only when needed

    if not isinstance(table, Mapping):
        raise HwccError(f"{where}: legal_form must be a table of [legal_form.<pass>] tables")
    form: dict[str, dict[str, Any]] = {}
    for pass_name, knobs in table.items():
        if not isinstance(knobs, Mapping):
            raise HwccError(
                f"{where}: legal_form.{pass_name} must be a table of knob settings",
                f'write it as [legal_form.{pass_name}] with lines such as mode = "int8"',
            )
        try:
            p = get_pass(pass_name)
            form[pass_name] = {k: p.knob(k).validate(v, pass_name) for k, v in knobs.items()}
        except HwccError as e:
            raise HwccError(f"{where}: [legal_form.{pass_name}]: {e.message}", e.hint) from None
    return form
