"""The ``cpu`` target's measurements on this machine: the kernel timer, ``measure_models``,
and how both wait for the machine's fast phase or rescale by its speed (a stand-in for the
speed probe plays the phases).
"""

from __future__ import annotations

import time

import pytest
from cpu_helpers import MB, gemm

from hwcc.targets.cpu.measure import Timer, session
from hwcc.targets.cpu.table import REFERENCE
from hwcc.targets.cpu.target import measure_models


# ---------------------------------------------------------------------- the timer
def test_timer_measures_a_kernel():
    """A 2.4 M MAC conv: hot time positive and below 50 ms, cold no faster than half of it.
    Five rounds: with three it failed once in four runs beside a compile, where a state may
    keep a single visit at the batch's speed (a third of three) and that one visit decides."""
    timer = Timer(1, 2 * MB, 0, rounds=5)
    ((hot, cold),) = timer([dict(REFERENCE)])
    assert 0 < hot < 0.05 and cold > 0.5 * hot
    assert timer.last_speed > 0


def test_measure_models_is_median_of_runs():
    data = gemm(64, 64).SerializeToString()
    (t,) = measure_models([data], runs=5, rounds=2)
    assert 0 < t < 0.01
    assert session(data, 1) is not None


# ---------------------------------------------------------------------- the machine's speed phases
class _Phases:
    """A stand-in for the speed probe: ``first`` for the first ``n`` calls, ``then`` after,
    in nanoseconds (100 us: the machine's fast phase; 180 us: its neighbours busy)."""

    def __init__(self, n, first=180e3, then=100e3):
        self.n, self.first, self.then, self.calls = n, first, then, 0

    def __call__(self):
        self.calls += 1
        return self.first if self.calls <= self.n else self.then

    def install(self, monkeypatch):
        monkeypatch.setattr(Timer, "_probe", lambda timer, pair: self())
        return self


def test_measure_models_waits_out_a_fast_phase(monkeypatch):
    """Probes say the first 8 visits ran slowed down: measuring at the fast phase's speed
    visits the model again until (rounds + 1) // 2 = 2 visits ran at it, instead of
    rescaling slow visits by the probe's ratio."""
    phases = _Phases(8).install(monkeypatch)
    data = gemm(64, 64).SerializeToString()
    (t,) = measure_models([data], runs=3, rounds=3, speed=100e-6, patience_s=30)
    # 1 probe before the first visit + 1 after each visit; the 9th probe is the first fast
    # one, so visit 8 still had a fast probe before it: visits 9 and 10 are the two fast ones
    assert phases.calls == 11
    assert 0 < t < 0.01


def test_measure_models_rescales_when_patience_runs_out(monkeypatch):
    """Every run takes 5 us by a stand-in clock (two timings of a real run differ by more
    than the rescale under load); every visit is rescaled by the probes' 100/180."""
    _Phases(10**6).install(monkeypatch)  # never fast
    ticks = iter(range(0, 10**12, 5000))
    monkeypatch.setattr(time, "thread_time_ns", lambda: next(ticks))
    data = gemm(64, 64).SerializeToString()
    (raw,) = measure_models([data], runs=3, rounds=3)
    (t,) = measure_models([data], runs=3, rounds=3, speed=100e-6, patience_s=0)
    assert raw == pytest.approx(5e-6)
    assert t == pytest.approx(raw / 1.8, rel=1e-9)


def test_at_speed_needs_both_probes_of_a_visit_at_the_speed():
    from hwcc.targets.cpu.measure import _at_speed

    visits = [
        ([1000], [0], 180.0, 180.0),
        ([1000], [0], 180.0, 100.0),  # the phase changed during it
        ([3000], [0], 180.0, 181.0),
    ]
    # the two visits at 180: each scaled by 180 / its probes' mean (1 and 180 / 180.5)
    assert _at_speed(visits, 180.0) == pytest.approx((1000 + 3000 * 180 / 180.5) / 2 * 1e-9)
    # one visit at the speed, two needed: all are rescaled by 180 / their probes' mean
    assert _at_speed(visits[:2], 180.0) == pytest.approx((1000 + 1000 * 180 / 140) / 2 * 1e-9)
    assert _at_speed([([1000], [0], 100.0, 100.0)], 180.0) == pytest.approx(1800e-9)


def test_two_visits_at_the_speed_are_enough():
    """Ten visits, two of them at the table's speed (probe 93 us): the kernel's time is
    theirs (1300 us). The slowed-down visits ran the kernel 1.13x slower where the probe
    ran 1.6x slower, as a conv of this machine did; rescaled by the probe, as when a
    third of the visits were needed, they would give 1300 x 1.13 / 1.6 = 918 us."""
    from hwcc.targets.cpu.measure import _at_speed

    fast = [([1300.0e3], [0], 93e3, 93e3)] * 2
    slow = [([1300.0e3 * 1.13], [0], 93e3 * 1.6, 93e3 * 1.6)] * 8
    assert _at_speed(fast + slow, 93e3) == pytest.approx(1300e-6)
    assert _at_speed(fast[:1] + slow, 93e3) == pytest.approx(1300e-6 * 1.13 / 1.6)


def test_timer_measures_at_the_tables_speed(monkeypatch):
    """With the table's speed as target, a batch timed first while the machine is slowed
    down goes on until every kernel has (rounds + 1) // 2 visits at the target speed in
    both states; without one, the batch keeps the faster speed it saw."""
    phases = _Phases(20).install(monkeypatch)
    timer = Timer(1, 1 << 16, 16, rounds=2, hot=1, cold=1, patience_s=30)
    timer.target_speed = 100e-6
    ((hot, cold),) = timer([dict(REFERENCE)])
    assert timer.last_speed == pytest.approx(100e-6)
    assert phases.calls > 20 and hot > 0 and cold > 0
    untargeted = _Phases(3).install(monkeypatch)  # slowed down, then fast
    plain = Timer(1, 1 << 16, 16, rounds=2, hot=1, cold=1)
    plain([dict(REFERENCE)])
    # no target: one probe, then one per visit (2 rounds x 2 states)
    assert untargeted.calls == 1 + 2 * 2
    assert plain.last_speed == pytest.approx(100e-6)


# ---------------------------------------------------------------------- the timer's states
class _Counting:
    """An input OrtValue that counts its rewrites."""

    def __init__(self, ov):
        self.ov, self.writes = ov, 0

    def update_inplace(self, value):
        self.writes += 1
        self.ov.update_inplace(value)


def test_a_hot_run_reads_the_input_its_previous_run_read():
    """Hot runs (2 x L1 read before each) leave the inputs as the previous run read them:
    a visit restores them once, before its untimed run. Cold runs (more than the L1 read)
    rewrite them before each run, as a producer would have just written them."""
    timer = Timer(1, 2 * MB, 0)
    (pair,) = timer._load([dict(REFERENCE)])[1:]
    (sess, binding, inputs), twin = pair
    counted = [(_Counting(ov), value) for ov, value in inputs]
    pair = ((sess, binding, counted), twin)
    out: list[int] = []
    timer._visit(pair, 3, 0, out)
    assert [c.writes for c, _ in counted] == [1] * len(counted) and len(out) == 3
    timer._visit(pair, 3, 2 * MB, out)
    assert [c.writes for c, _ in counted] == [1 + 1 + 3] * len(counted)
