"""The ``cpu`` target's kernel table: entries measured once and reused, interpolation
between grid points, the JSON cache on disk (fingerprint, killed runs, concurrent saves,
another device's table), and entries kept at the table's speed.

The "measurements" are a deterministic function of the kernel spec (``FakeMeasure`` in
cpu_helpers.py), so every interpolated number can be worked out on paper.
"""

from __future__ import annotations

import json

import pytest
from cpu_helpers import FP, FakeMeasure, _gemm_spec

from hwcc.errors import HwccError
from hwcc.targets.cpu.kernels import spec_key
from hwcc.targets.cpu.table import REFERENCE, KernelTable


# ---------------------------------------------------------------------- the table
def test_measured_entry_is_reused(tmp_path):
    measure = FakeMeasure()
    table = KernelTable(FP, measure, path=tmp_path / "t.json")
    spec = {"op": "Relu", "inputs": [["x", 1, [1, 64]]], "outputs": [[1, [1, 64]]], "attrs": {}}
    table.ensure([spec])
    assert table.lookup(spec) == pytest.approx((10e-6, 30e-6))
    assert table.lookup(spec) == pytest.approx((10e-6, 30e-6))
    assert measure.kernels == [spec]  # measured once
    again = KernelTable(FP, measure, path=tmp_path / "t.json")  # reopened from disk
    again.lookup(spec)
    assert measure.kernels == [spec]


def test_interpolation_is_linear_between_grid_points(tmp_path):
    """Fake latency M^2 us (not linear, so interpolation shows): grid step 8.

    M = 16 is a grid point: 256 us exactly. M = 20 lies half-way between 16 and 24:
    (256 + 576) / 2 = 416 us (the true M^2 would be 400). M = 18: 0.75*256 + 0.25*576 =
    336 us. Only the grid points are measured.
    """
    measure = FakeMeasure(lambda s: (s["M"] ** 2 * 1e-6, s["M"] ** 2 * 1e-6))
    table = KernelTable(FP, measure, step=8, path=tmp_path / "t.json")
    table.ensure([_gemm_spec(64, m) for m in (16, 20, 18)])
    assert table.lookup(_gemm_spec(64, 16))[0] == pytest.approx(256e-6)
    assert table.lookup(_gemm_spec(64, 20))[0] == pytest.approx(416e-6)
    assert table.lookup(_gemm_spec(64, 18))[0] == pytest.approx(336e-6)
    assert sorted(s["M"] for s in measure.kernels) == [16, 24]


def test_gemm_columns_take_the_next_panel(tmp_path):
    """With panels of 16 a Gemm's M is a staircase: M = 17..32 all cost what M = 32 does
    (fake latency M^2 us: 1024 us), M = 16 its own 256 us; K still interpolates
    (K = 68 between 64 and 72 at M = 32: (1024 + 1024) / 2 = 1024 us, latency not in K).
    A conv's M is not a Gemm's and still interpolates (test_bilinear_in_both_channel_counts).
    """
    measure = FakeMeasure(lambda s: (s["M"] ** 2 * 1e-6, s["M"] ** 2 * 1e-6))
    table = KernelTable(FP, measure, step=8, panel=16, path=tmp_path / "t.json")
    table.ensure([_gemm_spec(64, m) for m in (16, 17, 20, 31)] + [_gemm_spec(68, 17)])
    assert table.lookup(_gemm_spec(64, 16))[0] == pytest.approx(256e-6)
    for m in (17, 20, 31):
        assert table.lookup(_gemm_spec(64, m))[0] == pytest.approx(1024e-6)
    assert table.lookup(_gemm_spec(68, 17))[0] == pytest.approx(1024e-6)
    assert sorted({(s["K"], s["M"]) for s in measure.kernels}) == [(64, 16), (64, 32), (72, 32)]


def test_bilinear_in_both_channel_counts(tmp_path):
    """Conv (group 1, not NCHWc) with latency C^2 * M us; C = 20, M = 12, step 8.

    Corners (16, 8), (24, 8), (16, 16), (24, 16), each weight 0.5 * 0.5:
    0.25 * (256*8 + 576*8 + 256*16 + 576*16) = 0.25 * 19968 = 4992 us.
    """
    measure = FakeMeasure(lambda s: (s["C"] ** 2 * s["M"] * 1e-6,) * 2)
    table = KernelTable(FP, measure, step=8, path=tmp_path / "t.json")
    spec = {**REFERENCE, "C": 20, "M": 12}
    table.ensure([spec])
    assert table.lookup(spec)[0] == pytest.approx(4992e-6)
    assert sorted((s["C"], s["M"]) for s in measure.kernels) == [
        (16, 8),
        (16, 16),
        (24, 8),
        (24, 16),
    ]
    # exact at a grid point
    assert table.lookup({**REFERENCE, "C": 16, "M": 8})[0] == pytest.approx(2048e-6)


def test_exact_entry_wins_over_interpolation(tmp_path):
    measure = FakeMeasure(lambda s: (s["M"] * 1e-6, s["M"] * 1e-6))
    table = KernelTable(FP, measure, path=tmp_path / "t.json")
    table.entries[spec_key(_gemm_spec(64, 20))] = {"hot_s": 1.0, "cold_s": 2.0}
    assert table.lookup(_gemm_spec(64, 20)) == (1.0, 2.0)
    assert measure.kernels == []


def test_json_cache_round_trip_keyed_by_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec = _gemm_spec(64, 16)
    a = KernelTable(FP, FakeMeasure())
    a.ensure([spec])
    b = KernelTable({**FP, "onnxruntime": "0.0.0"}, FakeMeasure())
    b.ensure([spec])
    assert a.path != b.path and a.path.parent == b.path.parent == tmp_path / "hwcc" / "tables"
    doc = json.loads(a.path.read_text())  # plain JSON, not a pickle
    assert doc["format"] == "hwcc-cpu-table/1" and doc["fingerprint"] == FP
    assert doc["entries"][spec_key(spec)]["hot_s"] == pytest.approx(10e-6)
    reopened = KernelTable(FP, FakeMeasure())
    assert reopened.entries == a.entries
    # no temporary left
    assert [p.name for p in a.path.parent.iterdir() if p.name.startswith(".")] == []


def test_killed_run_keeps_finished_batches(tmp_path):
    calls = []

    def flaky(specs):
        calls.append(specs)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [(1e-6, 2e-6)] * len(specs)

    table = KernelTable(FP, flaky, path=tmp_path / "t.json")
    with pytest.raises(KeyboardInterrupt):
        table.ensure([_gemm_spec(64, m) for m in (8, 16, 24)], batch=1)
    saved = json.loads((tmp_path / "t.json").read_text())["entries"]
    assert len(saved) == 2


def test_concurrent_saves_merge(tmp_path):
    a = KernelTable(FP, FakeMeasure(), path=tmp_path / "t.json")
    b = KernelTable(FP, FakeMeasure(), path=tmp_path / "t.json")
    a.ensure([_gemm_spec(64, 8)])
    b.ensure([_gemm_spec(64, 16)])
    assert len(KernelTable(FP, FakeMeasure(), path=tmp_path / "t.json").entries) == 2


def test_a_foreign_table_is_an_error(tmp_path):
    """A corrupt table is set aside and rebuilt (tests/test_concurrency.py); a valid table
    of another device is refused: its entries would price this machine wrongly."""
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps({"format": "hwcc-cpu-table/1", "fingerprint": {"cpu": "other"}, "entries": {}})
    )
    with pytest.raises(HwccError, match="another device"):
        KernelTable(FP, FakeMeasure(), path=path)


def test_entries_are_rescaled_to_the_table_speed(tmp_path):
    """The probe took 100 us in the first batch (the machine in its fast phase, the table's
    speed) and 180 us in the second (slowed by its neighbours): the second batch's 36 us
    entry answers 36 * 100 / 180 = 20 us; the first's 20 us stays 20 us."""
    speeds = iter([100e-6, 180e-6])

    def measure(specs):
        measure.last_speed = next(speeds)
        return [(20e-6, 40e-6) if measure.last_speed == 100e-6 else (36e-6, 72e-6) for _ in specs]

    table = KernelTable(FP, measure, path=tmp_path / "t.json")
    table.ensure([_gemm_spec(64, 8)])
    table.ensure([_gemm_spec(64, 16)])
    assert table.speed() == 100e-6
    assert table.lookup(_gemm_spec(64, 8)) == pytest.approx((20e-6, 40e-6))
    assert table.lookup(_gemm_spec(64, 16)) == pytest.approx((20e-6, 40e-6))


def test_table_speed_is_the_fast_phase_median_not_a_lucky_batch(tmp_path):
    """Probes of 100/101/104 us (fast phase), 180/190 us (neighbours busy): the table is
    kept at the fast phase, the median of {100, 101, 104} = 101 us, within 1.4x of the
    fastest; a minimum would let one lucky batch rescale every entry."""
    speeds = iter([100e-6, 180e-6, 101e-6, 190e-6, 104e-6])

    def measure(specs):
        measure.last_speed = next(speeds)
        return [(20e-6, 40e-6) for _ in specs]

    table = KernelTable(FP, measure, path=tmp_path / "t.json")
    for m in (8, 16, 24, 32, 40):
        table.ensure([_gemm_spec(64, m)])
    assert table.speed() == pytest.approx(101e-6)
    one_phase = KernelTable(FP, measure, path=tmp_path / "u.json")
    one_phase.extra["speeds"] = [100e-6, 104e-6, 102e-6]
    assert one_phase.speed() == pytest.approx(102e-6)

    begun_slowed = KernelTable(FP, measure, path=tmp_path / "v.json")
    # two batches timed while the neighbours were busy, each with a few fast visits
    begun_slowed.extra.update(speeds=[190e-6, 195e-6], fastest=[110e-6, 112e-6])
    assert begun_slowed.speed() == pytest.approx(111e-6)  # the next batches wait for it
    begun_slowed.extra["speeds"].append(113e-6)  # a batch timed at the fast phase
    assert begun_slowed.speed() == pytest.approx(113e-6)
