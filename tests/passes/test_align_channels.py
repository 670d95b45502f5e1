"""align_channels: structure and numbers on the same graph, where it must not fire, and
the search driving it with nothing but the pass's own declarations."""

from __future__ import annotations

import numpy as np
import pytest

import hwcc
from hwcc.errors import HwccError
from hwcc.ir.transform import PassContext, get_pass, resolve_search_passes
from hwcc.search.space import units
from hwcc.testing import assert_equivalent, weight_of

RTOL, ATOL = 1e-4, 1e-5


def _run(graph, **knobs):
    return get_pass("align_channels")(
        graph, PassContext(knobs={"align_channels": knobs}, verify=False)
    )


@pytest.fixture
def lenet5_four_dead_filters():
    """lenet5-digits with 4 of the first conv's 20 filters (and biases) zeroed: before a
    ReLU they contribute nothing, so aligning that group to 16 channels is exact."""
    g = hwcc.load("zoo:lenet5-digits")
    w, b = weight_of(g, "/0/Conv").copy(), weight_of(g, "/0/Conv", 2).copy()
    dead = [1, 6, 11, 19]
    w[dead], b[dead] = 0.0, 0.0
    g.add_initializer("0.weight", w)
    g.add_initializer("0.bias", b)
    return g, dead


def test_aligning_a_group_removes_its_weakest_channels_exactly(lenet5_four_dead_filters):
    g, dead = lenet5_four_dead_filters
    r = _run(g, group="/0/Conv", keep=16)
    assert r.modified and r.details["aligned"] == {"/0/Conv": (20, 16)}
    assert weight_of(r.graph, "/0/Conv").shape[0] == 16  # the producer's filters
    assert weight_of(r.graph, "/2/Conv").shape[1] == 16  # the consumer's input channels
    kept = [i for i in range(20) if i not in dead]
    np.testing.assert_array_equal(weight_of(r.graph, "/0/Conv"), weight_of(g, "/0/Conv")[kept])
    assert_equivalent(g, r.graph, rtol=RTOL, atol=ATOL)


def test_without_a_group_every_group_rounds_down_to_the_multiple():
    g = hwcc.load("zoo:lenet5-digits")  # groups of 20, 50 and 500 channels
    r = _run(g, multiple=8)
    assert r.details["aligned"] == {"/0/Conv": (20, 16), "/2/Conv": (50, 48), "/6/Gemm": (500, 496)}
    assert weight_of(r.graph, "/6/Gemm").shape[0] == 496


def test_does_not_fire_when_every_group_is_aligned():
    g = _run(hwcc.load("zoo:lenet5-digits"), multiple=4).graph  # 20, 48, 500: multiples of 4
    again = _run(g, multiple=4)
    assert not again.modified and "multiple of 4" in again.reason


@pytest.mark.parametrize(
    "knobs, match",
    [
        ({"group": "/0/Conv", "keep": 12}, "cannot keep 12"),
        ({"group": "/0/Conv", "keep": 24}, "cannot keep 24"),
        ({"group": "nosuch", "keep": 8}, "no channel group 'nosuch'"),
    ],
)
def test_bad_settings_are_user_errors(knobs, match):
    with pytest.raises(HwccError, match=match):
        _run(hwcc.load("zoo:lenet5-digits"), **knobs)


def test_the_search_drives_it_from_its_declarations():
    """One file made it searchable: --passes knows it, its units are the aligned counts."""
    assert resolve_search_passes(["align_channels"]) == ("align_channels",)
    found = {
        u.id: [s.knobs["keep"] for s in u.steps]
        for u in units(hwcc.load("zoo:lenet5-digits"), ["align_channels"])
    }
    assert found["aligned channels of /0/Conv"] == [16, 8]
    assert found["aligned channels of /2/Conv"] == [48, 40, 32, 24, 16, 8]


def test_a_compile_with_only_this_pass_keeps_aligned_counts():
    r = hwcc.compile(
        "zoo:lenet5-digits",
        "eyeriss",
        "80%",
        data="zoo:digits",
        passes=("align_channels",),
        max_iterations=3,
        short_term_steps=2,
        long_term_steps=0,
        seed=0,
    )
    assert r.summary.history and all(h["pass"] == "align_channels" for h in r.summary.history)
    for h in r.summary.history:  # each step kept a multiple of 8 channels of the group it changed
        before, after = map(int, h["settings"]["channels"].split("->"))
        assert after % 8 == 0 and after < before
    assert r.summary.final["latency_s"] < r.summary.original["latency_s"]
