"""The compile's long-term fine-tune sized to the data (hwcc.search.finetuning): six epochs
within [200, 2000] steps, fewer where the forward MACs would pass the cap, a given
number kept as given, and the size a compile used recorded in its summary; fewer
proposals fine-tuned an iteration for a model whose step is at the cap."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import hwcc
from hwcc.data.evaluate import Dataset
from hwcc.search.config import FINETUNE_TOP, HEAVY_TOP, SearchConfig
from hwcc.search.finetuning import (
    LONG_TERM_MAX,
    LONG_TERM_MIN,
    long_term_steps,
    sample_macs,
    sized,
    step_batch,
)


@pytest.mark.parametrize(
    "samples, batch, want",
    [
        (4000, 32, 6 * 125),  # the glyphs' training split: six epochs of 125 steps
        (1438, 32, 6 * 44),  # the digits' (the last, partial batch of an epoch is dropped)
        (100, 32, LONG_TERM_MIN),  # six epochs of 3 steps: the floor
        (10**6, 32, LONG_TERM_MAX),  # six epochs of 31250 steps: the ceiling
        (10, 64, LONG_TERM_MIN),  # fewer samples than a batch: one step an epoch
    ],
)
def test_six_epochs_within_bounds(samples, batch, want):
    assert long_term_steps(samples, batch, step_macs=0, sample_macs=1e6) == want


def test_a_heavy_model_stops_at_the_mac_cap():
    # batch 1 of a 3.6 GMAC model under a 5 GMAC step cap: 400 * 5e9 / 3.6e9 = 555 steps
    assert long_term_steps(600, 1, step_macs=5e9, sample_macs=3.6e9) == 555
    # the cap never takes it below one step, nor above six epochs
    assert long_term_steps(600, 1, step_macs=5e9, sample_macs=1e15) == 1
    assert long_term_steps(300, 1, step_macs=5e9, sample_macs=1.0) == 6 * 300


def _dataset(n: int) -> Dataset:
    r = np.random.default_rng(0)
    return Dataset({"image": r.normal(size=(n, 1, 8, 8)).astype(np.float32)}, None, "test")


def test_sized_fills_in_only_what_is_not_given():
    src = hwcc.load("zoo:lenet5-digits")
    tune = _dataset(640)
    got = sized(SearchConfig(), src, tune)
    batch = step_batch(SearchConfig(), sample_macs(src, tune))
    assert batch == 32 and got.long_term_steps == max(6 * 640 // 32, LONG_TERM_MIN)
    assert sized(SearchConfig(long_term_steps=7), src, tune).long_term_steps == 7
    assert sized(SearchConfig(long_term_steps=0), src, tune).long_term_steps == 0


def test_a_heavy_model_fine_tunes_fewer_proposals_an_iteration():
    """lenet5 at batch 32 is light: four proposals an iteration; as its step nears a cap
    set for it, three, then two; a number given is kept, whatever the model."""
    src, tune = hwcc.load("zoo:lenet5-digits"), _dataset(640)
    per_sample = sample_macs(src, tune)
    step = 32 * per_sample
    assert sized(SearchConfig(), src, tune).finetune_top == FINETUNE_TOP == 4
    for cap, want in [(2 * step, 4), (1.9 * step, 3), (1.01 * step, 2), (step / 4, 2)]:
        assert sized(SearchConfig(step_macs=cap), src, tune).finetune_top == want, cap / step
    assert sized(SearchConfig(step_macs=0), src, tune).finetune_top == 4  # no cap
    capped = SearchConfig(step_macs=step / 4)
    for given in (0, 1, 4):
        assert sized(replace(capped, finetune_top=given), src, tune).finetune_top == given
    assert HEAVY_TOP == 2


def test_a_compile_records_the_long_term_steps_it_ran():
    """The digits' fine-tune part holds 1438 samples: 44 steps of 32 an epoch, 264 in six."""
    events = []
    result = hwcc.compile(
        "zoo:lenet5-digits",
        "eyeriss",
        "95%",
        data="zoo:digits",
        max_iterations=1,
        short_term_steps=2,
        progress=lambda kind, info: events.append((kind, info)),
    )
    assert result.summary.to_json()["options"]["long_term_steps"] == 6 * (1438 // 32) == 264
    assert ("long_term", {"steps": 264}) in events
