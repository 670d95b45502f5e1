"""``hwcc inspect --target`` tables: as wide as the terminal, nothing a reader needs cut."""

from __future__ import annotations

import re

import pytest

import hwcc
from hwcc.cli.costview import format_cost_table
from hwcc.targets.base import load_target


@pytest.fixture(scope="module")
def alexnet_on_eyeriss():
    return load_target("eyeriss").price(hwcc.load("zoo:alexnet"))


@pytest.mark.parametrize("columns", [80, 100, 160])
@pytest.mark.parametrize("breakdown", [False, True])
def test_fits_the_width_and_keeps_every_note_and_entry_whole(
    alexnet_on_eyeriss, columns, breakdown
):
    gc = alexnet_on_eyeriss
    text = format_cost_table(gc, breakdown=breakdown, columns=columns)
    assert "…" not in text
    too_wide = [line for line in text.splitlines() if len(line) > columns - 1]
    assert not too_wide, too_wide
    flat = re.sub(r"\s+", " ", text)
    for x in gc.layers:
        if x.layer.name not in text:
            continue  # a data-movement node at no cost, summarised on the last line
        if x.cost.note:
            assert re.sub(r"\s+", " ", x.cost.note) in flat, x.cost.note
        if breakdown:
            for key in x.cost.breakdown:
                assert re.search(rf"(^|[ ·]){re.escape(key)} ", text, re.M), key
    assert ("ifmaps_dram_j" in text) == breakdown


def test_breakdown_rows_follow_their_layer(alexnet_on_eyeriss):
    lines = format_cost_table(alexnet_on_eyeriss, breakdown=True, columns=100).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("/features/features.0/Conv"))
    following = lines[first + 1 : first + 12]
    assert any(line.startswith("    ") and "ifmaps_dram_j" in line for line in following)
