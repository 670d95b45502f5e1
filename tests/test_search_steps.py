"""The search's amount search on costs that fall in steps: channel counts the hardware runs
fastest (hwcc.search.space.smallest_meeting with a granularity), and where they come from."""

from __future__ import annotations

import math

import hwcc
from hwcc.ir.search_space import Step
from hwcc.search.space import smallest_meeting, units
from hwcc.targets.base import load_target


def _staircase(c: int) -> float:
    """A CPU-like price of ``c`` channels: 10 per block of 8 started, and 15 more when ``c`` is
    not a multiple of 4 (the fast layout is off)."""
    return 10 * math.ceil(c / 8) + (15 if c % 4 else 0)


def _steps(channels: int, last: int, price, log):
    steps = [Step({"k": k}, {"k": k}, channels - k) for k in range(1, channels - last + 1)]

    def at(step):
        log.append(step.count)
        return step, price(step.count)

    return steps, at


def test_the_fast_side_of_a_step_is_found_where_binary_search_misses_it():
    """40 channels, steps down to 16, target 30. Prices: 24 -> 30 (meets), 22 -> 45, 19 ->
    45, 17 -> 45, 16 -> 20. The plain binary search probes 28, 22, 19, 17 (all miss) and
    settles on 16, removing 24 channels; the aligned search (multiples of 4) finds 24."""
    steps, at = _steps(40, 16, _staircase, [])
    plain = smallest_meeting(steps, at, 30)
    assert plain[0].count == 16
    log: list[int] = []
    steps, at = _steps(40, 16, _staircase, log)
    step, _, price = smallest_meeting(steps, at, 30, granularity=(4, 8))
    assert (step.count, price) == (24, 30)
    assert len(set(log)) <= 2 * math.ceil(math.log2(len(steps))) + 4  # searches, not a scan
    assert (
        min((c for c in range(16, 40) if _staircase(c) <= 30), key=lambda c: 40 - c) == step.count
    )  # the smallest change that meets, by brute force


def test_unaligned_counts_are_probed_only_between_two_multiples():
    """The coarsest multiples are searched first and each finer search only below what
    was found, so the counts that are no multiple of 4 (on the CPU: kernels of their own
    to measure) are probed only between the two multiples of 4 around the answer, and the
    answer is still the smallest change that meets, by brute force."""
    for target in (21, 30, 41, 52):
        log: list[int] = []
        steps, at = _steps(64, 8, _staircase, log)
        step, _, _ = smallest_meeting(steps, at, target, granularity=(4, 8, 16))
        best = min((c for c in range(8, 64) if _staircase(c) <= target), key=lambda c: 64 - c)
        assert step.count == best, target
        unaligned = {c for c in log if c % 4}
        assert all(best <= c < best + 4 for c in unaligned), (target, sorted(unaligned))
        assert len(set(log)) <= 12, sorted(set(log))


def test_aligned_steps_can_rescue_a_unit_whose_largest_change_misses():
    """35 channels, steps down to 33 only (a cap): 34 and 33 are slow, 32 is not reachable,
    so nothing meets 30; with steps down to 32 the aligned 32 meets although 33 does not."""
    steps, at = _steps(35, 33, _staircase, [])
    assert isinstance(smallest_meeting(steps, at, 30, granularity=(4,)), str)
    steps, at = _steps(36, 32, lambda c: 25 if c == 32 else 45, [])
    assert smallest_meeting(steps, at, 30, granularity=(4,))[0].count == 32


def test_monotone_prices_give_the_plain_answer():
    """Must not fire: where the price falls with every channel the granularity changes
    nothing (the aligned search finds no earlier step)."""
    for target in (12, 20.5, 31):
        a, _ = _steps(40, 8, float, [])
        b, at = _steps(40, 8, float, [])
        plain = smallest_meeting(a, at, target)
        aligned = smallest_meeting(b, at, target, granularity=(4, 8, 16))
        assert plain[0].count == aligned[0].count == math.floor(target)


def test_steps_without_a_count_ignore_the_granularity():
    log: list[int] = []
    steps = [Step({"r": r}, {"r": r}) for r in range(10)]
    got = smallest_meeting(steps, lambda s: (s, 10 - s.knobs["r"]), 4, granularity=(4,))
    assert got[0].knobs["r"] == 6 and not log


def test_channel_steps_carry_the_count_they_leave():
    g = hwcc.load("zoo:lenet5-digits")
    for unit in units(g, ["prune_channels"]):
        first, last = unit.steps[0], unit.steps[-1]
        c = first.count + 1
        assert [s.count for s in unit.steps] == list(range(c - 1, 0, -1))
        assert first.shown["channels"] == f"{c}->{c - 1}" and last.count == 1


def test_targets_declare_their_granularity_as_data():
    """The cpu's NCHWc and Gemm-panel multiples, the TPU's 256-wide tiles, EIE's 64 PEs."""
    assert load_target("cpu").channel_granularity() == (4, 8, 16)
    assert load_target("tpu").channel_granularity() == (256,)
    assert load_target("eie").channel_granularity() == (64,)
    assert load_target("gpu").channel_granularity() == ()
