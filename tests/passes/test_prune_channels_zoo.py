"""prune_channels on the zoo: how many channel groups each model has, every prunable group
one channel narrower at once (each group alone by a quarter: slow), and random groups by
random counts (hypothesis), each pruned to a valid model of the expected shapes."""

from __future__ import annotations

import numpy as np
import pytest
from channel_checks import assert_channels_removed, check_runs, prune
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwcc
from hwcc.passes.lib.channel_prune import prune_group, prune_groups
from hwcc.passes.lib.depgraph import analyze, prunable_groups

# prunable groups of each zoo model, and all groups (prunable or not)
ZOO_GROUPS = {
    "lenet300": (2, 3),
    "lenet5": (3, 4),
    "alexnet": (2, 8),
    "googlenet": (55, 58),
    "mobilenet_v1": (14, 15),
    "mobilenet_v2": (25, 26),
    "resnet18": (12, 13),
    "squeezenet1_1": (25, 26),
    "tpu_mlp": (4, 5),
    "lstm_lm": (2, 3),  # the two LSTM layers' hidden sizes
    "transformer_encoder": (4, 8),  # per layer: the heads and the feed-forward width
    "lenet300-digits": (2, 3),
    "lenet5-digits": (3, 4),
    "mobilenet-digits": (6, 7),
    "resnet-digits": (5, 6),
    "vgg16": (15, 16),
}
# The two largest (138 M and 61 M weights, 6 to 13 s each) are slow.
ZOO = [
    pytest.param(n, marks=pytest.mark.slow) if n in ("vgg16", "alexnet") else n for n in ZOO_GROUPS
]


# ---------------------------------------------------------------------- the zoo
@pytest.mark.parametrize("name", ZOO)
def test_zoo_groups_each_lose_one_channel(name, report_line):
    """How many groups each zoo model has; then k = 1 in every prunable group at once:
    one valid model that runs with the expected shapes, every group's tensors one
    channel narrower (each group alone: the slow test below)."""
    g = hwcc.load(f"zoo:{name}")
    groups = analyze(g).groups()
    prunable = [x for x in groups if x.prunable]
    assert (len(prunable), len(groups)) == ZOO_GROUPS[name]
    assert len({x.id for x in groups}) == len(groups)  # ids are unique
    assert all(x.reason for x in groups if not x.prunable)
    report_line(f"prune_channels: {name}: {len(prunable)} prunable channel groups of {len(groups)}")
    if not prunable:
        result = prune(g, ratio=0.5)
        assert not result.modified and "no prunable channel group" in result.reason
        return
    after = prune_groups(g, {grp: range(1, grp.channels) for grp in prunable})
    assert_channels_removed(g, after, prunable[0], 1, *[(grp, 1) for grp in prunable[1:]])
    check_runs(g, after)


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_each_group_alone_loses_k_channels(name):
    g = hwcc.load(f"zoo:{name}")
    for grp in prunable_groups(g):
        k = max(1, grp.channels // 4)
        after = prune_group(g, grp, range(k, grp.channels))
        assert_channels_removed(g, after, grp, k)
        check_runs(g, after)


PROPERTY_MODELS = [
    "lenet300-digits",
    "lenet5-digits",
    "mobilenet-digits",
    "resnet-digits",
    "resnet18",
    "mobilenet_v2",
]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(PROPERTY_MODELS),
    pick=st.integers(0, 10**6),
    frac=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**16),
)
def test_property_random_group_random_k(model, pick, frac, seed):
    g = hwcc.load(f"zoo:{model}")
    groups = prunable_groups(g)
    grp = groups[pick % len(groups)]
    k = 1 + int(frac * (grp.channels - 1)) if grp.channels > 1 else 0
    k = min(k, grp.channels - 1)
    keep = np.sort(
        np.random.default_rng(seed).choice(grp.channels, grp.channels - k, replace=False)
    )
    after = prune_group(g, grp, keep)
    assert_channels_removed(g, after, grp, k)
    check_runs(g, after)
