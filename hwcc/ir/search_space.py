"""What a searchable pass offers the search: units, and the steps each unit can take.

A *unit* is one layer or coupled group that one pass can change (the channels of a
dependency group, the weights of a layer, its rank). Its *steps* are the amounts of
change, smallest first, each given as the pass's own typed knob values, so applying a
step is running the pass through the pass manager like any other pass. The search
(:mod:`hwcc.search.space`) only reads these declarations; it knows no pass by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Step", "Unit"]


@dataclass(frozen=True)
class Step:
    """One amount of change to a unit.

    Attributes:
        knobs: the pass's knob values that make this change (typed: no knob strings).
        shown: how the history and the report show it (``{"channels": "32->24"}``).
        count: the channel count the unit is left with, where the step leaves one: the
            search prefers counts the target runs fastest (its channel granularity).
    """

    knobs: Mapping[str, Any]
    shown: Mapping[str, Any]
    count: int | None = None


@dataclass(frozen=True)
class Unit:
    """One layer (or coupled group) that one pass can change.

    Attributes:
        id: a stable, readable name (``channels of /0/Conv``).
        pass_name: the pass that changes it.
        layers: the graph nodes it touches (for most-energy-first ordering).
        steps: the amounts of change, smallest first.
    """

    id: str
    pass_name: str
    layers: tuple[str, ...]
    steps: tuple[Step, ...] = field(repr=False)
