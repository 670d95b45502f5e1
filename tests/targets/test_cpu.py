"""The ``cpu`` target: kernels as onnxruntime fuses them, measured tables, fidelity.

Hand-computed costs use a table whose "measurements" are a deterministic function of
the kernel spec (no timing noise), so every number can be worked out on paper. The
fidelity tests measure for real, on this machine, with a fresh table.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwcc
from hwcc.errors import HwccError
from hwcc.ir.workload import analyze
from hwcc.progress import Progress, format_duration
from hwcc.targets.base import CostContext, NotPrepared, load_target
from hwcc.targets.cpu.kernel_model import kernel_graph
from hwcc.targets.cpu.kernels import plan_kernels, spec_key
from hwcc.targets.cpu.measure import Timer, session
from hwcc.targets.cpu.table import REFERENCE, KernelTable
from hwcc.targets.cpu.target import CpuTarget, measure_models, profile

MB = 1 << 20


# ---------------------------------------------------------------------- helpers
class FakeMeasure:
    """Stands in for the timer: ``fn(spec) -> (hot_s, cold_s)``; records what it measured."""

    def __init__(self, fn=lambda spec: (10e-6, 30e-6)):
        self.fn, self.calls = fn, []

    def __call__(self, specs):
        self.calls.extend(specs)
        return [self.fn(s) for s in specs]

    @property
    def kernels(self):
        return self.calls


FP = {
    "cpu": "test cpu",
    "cores": 2,
    "onnxruntime": ort.__version__,
    "threads": 1,
    "nchwc_block": 16,
    "l2_bytes": MB,
    "l3_bytes": 32 * MB,
    "protocol": 0,
}


def fake_target(tmp_path, fn=lambda spec: (10e-6, 30e-6), block=16, session_s=5e-6):
    """The cpu target on a table of fake measurements, with a fixed session overhead."""
    measure = FakeMeasure(fn)
    table = KernelTable(
        {**FP, "nchwc_block": block}, measure, step=8, block=block, path=tmp_path / "t.json"
    )
    table.extra["session"] = {"a_s": session_s, "b_s_per_byte": 0.0}
    t = load_target("cpu")
    t.use_table(table)
    return t, measure


def model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def const(name, *shape, value=None):
    arr = (
        np.full(shape, value, np.float32)
        if value is not None
        else np.random.default_rng(0).standard_normal(shape)
    )
    return numpy_helper.from_array(arr.astype(np.float32), name)


def conv_bn_relu(cin=3, cout=16, hw=8):
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    inits = [
        const("w", cout, cin, 3, 3),
        const("s", cout),
        const("b", cout),
        const("m", cout),
        const("v", cout, value=1.0),
    ]
    return model(nodes, [vi("x", [1, cin, hw, hw])], [vi("y", [1, cout, hw, hw])], inits)


def gemm(k, m, act=None):
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g" if act else "y"], name="fc", transB=1)]
    if act:
        nodes.append(helper.make_node(act, ["g"], ["y"], name="act"))
    return model(nodes, [vi("x", [1, k])], [vi("y", [1, m])], [const("w", m, k), const("b", m)])


def _bench():
    """The width-variant generator of bench/cpu_fidelity.py, loaded from its file."""
    path = Path(__file__).resolve().parents[2] / "bench" / "cpu_fidelity.py"
    spec = importlib.util.spec_from_file_location("hwcc_bench_cpu_fidelity", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------- the target
def test_load_target_and_describe():
    t = load_target("cpu")
    d = t.describe()
    assert isinstance(t, CpuTarget) and d["family"] == "cpu"
    assert d["provenance"] == "measured"
    assert any("onnxruntime" in v for v in d["validated_against"])
    assert any("EIE" in v and "2.22" in v for v in d["validated_against"])
    assert d["params"]["intra_op_num_threads"] == 1 and d["params"]["channel_step"] == 8
    assert t.supports(analyze(hwcc.load(gemm(8, 8))).layers[0]) is None  # the host runs everything


def test_conv_bn_relu_is_one_kernel(tmp_path):
    t, measure = fake_target(tmp_path)
    g = hwcc.load(conv_bn_relu())
    plan = t.plan(g)
    compute = [k for k in plan.kernels if not k.is_reorder]
    assert len(compute) == 1
    (k,) = compute
    assert (k.head, k.members) == ("conv", ("bn", "relu"))
    assert k.spec["op"] == "nchwc.Conv" and k.spec["act"] == "Relu" and k.spec["bias"]
    cost = t.price(g)
    assert cost.layer("bn").cost.latency_s == 0 and cost.layer("bn").cost.note == "fused into conv"
    assert (
        cost.layer("relu").cost.latency_s == 0 and cost.layer("relu").cost.note == "fused into conv"
    )
    assert "Relu" in cost.layer("conv").cost.note


def test_one_conv_cost_by_hand(tmp_path):
    """Conv+BN+Relu, 3 -> 16 channels at 8x8, block 16, fake table: hot 10 us, cold 30 us.

    Kernels: the NCHWc conv (3 < 16 input channels: read in NCHW, no ReorderInput) and
    the ReorderOutput of its graph output. Working set WS = input 3*64*4 = 768 B +
    weights 4*(16*3*9 + 16) = 1792 B + conv output 16*64*4 = 4096 B + reorder output
    4096 B = 10752 B, far below the 1 MiB L2, so f = 1 and each kernel costs its hot 10 us.
    latency = session 5 us + 10 us + 10 us = 25 us; energy = 73 W * 25 us = 1.825 mJ.
    """
    t, _ = fake_target(tmp_path)
    g = hwcc.load(conv_bn_relu())
    plan = t.plan(g)
    assert plan.working_set == 768 + 1792 + 4096 + 4096
    cost = t.price(g)
    assert cost.latency_s == pytest.approx(25e-6, rel=1e-9)
    assert cost.energy_j == pytest.approx(73.0 * 25e-6, rel=1e-9)
    conv = cost.layer("conv").cost
    assert conv.breakdown["session_s"] == pytest.approx(5e-6)
    assert conv.breakdown["kernel_s"] == pytest.approx(10e-6)
    assert conv.breakdown["reorder_s"] == pytest.approx(10e-6)


def test_cache_blend_by_hand(tmp_path):
    """Gemm 1x1024 -> 1024 + Relu (FusedGemm), hot 10 us, cold 30 us, L2 = 1 MiB.

    Kernel bytes: weights 4*(1024*1024 + 1024) = 4198400, input 4096, output 4096:
    ws = 4206592. WS = graph input 4096 + weights 4198400 + output 4096 = 4206592, so the
    rest of the network touches WS - ws = 0 bytes and the share of the kernel's data
    still in L2 is f = (1048576 - 0) / 4206592 = 0.249270. t = cold + f (hot - cold) =
    30 - 0.249270 * 20 = 25.0146 us; plus the 5 us session: 30.0146 us.
    """
    t, _ = fake_target(tmp_path)
    g = hwcc.load(gemm(1024, 1024, "Relu"))
    (k,) = t.plan(g).kernels
    assert k.spec["op"] == "com.microsoft.FusedGemm" and k.members == ("act",)
    t.prepare(g)
    ((sec, hot, cold, f),) = t.kernel_times(t.plan(g))
    assert f == pytest.approx(1048576 / 4206592, rel=1e-12)
    assert sec == pytest.approx(30e-6 - 1048576 / 4206592 * 20e-6, rel=1e-12)
    assert t.cost(g).latency_s == pytest.approx(5e-6 + 25.0146e-6, rel=1e-5)


def test_eie_table_v_cpu_energy():
    """Energy = package power x time, as EIE computes its CPU baseline.

    EIE (Han et al., ISCA 2016), Table V, column Core i7-5930K: 73 W, 162 frames/s on
    AlexNet FC7, 2.22 frames/J. Our model with the same power and time must give the
    published efficiency within 1 % (the table rounds to three digits).
    """
    published_power_w, published_fps, published_frames_per_j = 73.0, 162.0, 2.22
    t = load_target("cpu")
    assert t.power_w == published_power_w
    energy_per_frame = t.power_w * (1.0 / published_fps)
    assert 1.0 / energy_per_frame == pytest.approx(published_frames_per_j, rel=0.01)


def test_eliminated_and_gemm_fusions(tmp_path):
    t, _ = fake_target(tmp_path)
    nodes = [
        helper.make_node("Dropout", ["x"], ["d"], name="drop"),
        helper.make_node("MatMul", ["d", "w"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["y"], name="id"),
    ]
    data = model(
        nodes, [vi("x", [1, 32])], [vi("y", [1, 16])], [const("w", 32, 16), const("b", 16)]
    )
    plan = t.plan(hwcc.load(data))
    assert [k.spec["op"] for k in plan.kernels] == ["com.microsoft.FusedGemm"]
    assert plan.kernels[0].members == ("add", "relu")
    assert "removed" in plan.removed["id"] and "removed" in plan.removed["drop"]
    assert plan.kernels[0].spec["act"] == "Relu" and plan.kernels[0].spec["transB"] == 0
    assert _ort_kernels(data.SerializeToString()) == [
        ("com.microsoft:FusedGemm", "Relu", None, False)
    ]
    # A Dropout that makes the graph output stays, as in onnxruntime.
    nodes[0], nodes[-1] = (
        helper.make_node("Identity", ["x"], ["d"], name="id0"),
        helper.make_node("Dropout", ["r"], ["y"], name="drop"),
    )
    data = model(
        nodes, [vi("x", [1, 32])], [vi("y", [1, 16])], [const("w", 32, 16), const("b", 16)]
    )
    assert [k.spec["op"] for k in t.plan(hwcc.load(data)).kernels] == [
        "com.microsoft.FusedGemm",
        "Dropout",
    ]
    assert len(_ort_kernels(data.SerializeToString())) == 2


def test_residual_add_relu_fuses_into_the_conv(tmp_path):
    t, _ = fake_target(tmp_path)
    nodes = [
        helper.make_node(
            "Conv", ["x", "w1", "b1"], ["a"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["a"], ["r"], name="r1"),
        helper.make_node(
            "Conv", ["r", "w2", "b2"], ["c"], name="c2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Add", ["c", "r"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="r2"),
    ]
    inits = [const("w1", 32, 3, 3, 3), const("b1", 32), const("w2", 32, 32, 3, 3), const("b2", 32)]
    plan = t.plan(hwcc.load(model(nodes, [vi("x", [1, 3, 8, 8])], [vi("y", [1, 32, 8, 8])], inits)))
    second = next(k for k in plan.kernels if k.head == "c2")
    assert second.members == ("add", "r2") and second.spec["sum"] and second.spec["act"] == "Relu"
    # Without NCHWc (block 0) the same chain becomes a FusedConv with a "Z" input.
    (tmp_path / "b0").mkdir()
    t0, _ = fake_target(tmp_path / "b0", block=0)
    plan0 = t0.plan(
        hwcc.load(model(nodes, [vi("x", [1, 3, 8, 8])], [vi("y", [1, 32, 8, 8])], inits))
    )
    assert [k.spec["op"] for k in plan0.kernels] == ["com.microsoft.FusedConv"] * 2
    assert plan0.kernels[1].spec["sum"] and plan0.kernels[1].members == ("add", "r2")


def test_nchwc_staircase_shares_entries(tmp_path):
    """With 16-channel blocks, 17..32 output channels run the same padded kernel."""
    t, measure = fake_target(tmp_path)
    t.price(hwcc.load(conv_bn_relu(cout=32)))
    before = len(measure.kernels)
    for cout in (17, 20, 25, 31):
        t.price(hwcc.load(conv_bn_relu(cout=cout)))
    convs = [s for s in measure.kernels[before:] if s["op"] == "nchwc.Conv"]
    assert convs == []  # all answered by the M = 32 entry


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


def _gemm_spec(k, m):
    return {
        "op": "Gemm",
        "N": 1,
        "K": k,
        "M": m,
        "transA": 0,
        "transB": 1,
        "alpha": 1.0,
        "beta": 1.0,
        "bias": True,
        "b_const": True,
        "act": "",
        "act_params": [],
    }


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


# ---------------------------------------------------------------------- host pricing, profile
def test_cost_layer_prices_any_kind_alone(tmp_path):
    t, measure = fake_target(tmp_path)
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
        helper.make_node("Softmax", ["r"], ["y"], name="softmax", axis=-1),
    ]
    inits = [numpy_helper.from_array(np.array([1, 64], np.int64), "shape")]
    work = analyze(hwcc.load(model(nodes, [vi("x", [1, 4, 16])], [vi("y", [1, 64])], inits)))
    reshape, softmax = work.layer("reshape"), work.layer("softmax")
    t.prepare_layers([reshape, softmax], CostContext())
    c1 = t.cost_layer(reshape, CostContext())
    assert c1.latency_s == pytest.approx(10e-6) and "Reshape" in c1.note
    assert t.cost_layer(softmax, CostContext()).latency_s == pytest.approx(10e-6)
    n = len(measure.kernels)
    t.cost_layer(reshape, CostContext())
    assert len(measure.kernels) == n  # memoised
    conv = analyze(hwcc.load(conv_bn_relu())).layer("conv")
    t.prepare_layers([conv], CostContext())
    assert t.cost_layer(conv, CostContext()).latency_s > 0


def test_workload_without_graph_prices_layer_by_layer(tmp_path):
    t, _ = fake_target(tmp_path)
    work = analyze(hwcc.load(gemm(16, 8)))
    cost = t.price(work)
    assert cost.latency_s == pytest.approx(10e-6) and len(cost.layers) == 1


def test_batch_scales_kernel_specs(tmp_path):
    t, measure = fake_target(tmp_path)
    t.price(hwcc.load(gemm(16, 8)), CostContext(batch=4))
    # K = 16, M = 8: one grid point
    assert [s["N"] for s in measure.kernels if s["op"] == "Gemm"] == [4]


def test_profile_report_and_reuse(tmp_path, capsys):
    t, measure = fake_target(tmp_path)
    g = hwcc.load(conv_bn_relu())
    first = profile(g, t, progress=True)
    assert first.kernels == 2 and first.measured == 2 and first.reused == 0
    second = profile(g, t, progress=True)
    assert second.measured == 0 and second.reused == 2
    assert capsys.readouterr().err == ""  # not a terminal: no bar
    assert "kernels" in second.summary() and second.to_dict()["latency_s"] == pytest.approx(25e-6)


def test_unknown_shapes_are_an_error(tmp_path):
    t, _ = fake_target(tmp_path)
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", ["N", 4])], [vi("y", ["N", 4])])
    g = hwcc.load(m, allow_dynamic=True)
    with pytest.raises(HwccError, match="input shapes"):
        t.cost(g)


# ---------------------------------------------------------------------- prepare, then look up
def test_cost_is_a_pure_lookup_and_a_miss_says_what_to_do(tmp_path):
    """cost() never measures and never writes the table: an unprepared graph is an error
    naming the kernels it lacks and how to measure them; prepare() measures them once."""
    t, measure = fake_target(tmp_path)
    g = hwcc.load(conv_bn_relu())
    missing = (
        r"no measurement of 2 kernel configuration\(s\) that g at batch 1 needs "
        r"\(nchwc.Conv, nchwc.ReorderOutput\)"
    )
    with pytest.raises(NotPrepared, match=missing) as e:
        t.cost(g)
    assert "prepare(graph)" in e.value.hint and "hwcc profile --target cpu" in e.value.hint
    assert measure.calls == [] and not (tmp_path / "t.json").exists()
    t.prepare(g)
    assert len(measure.calls) == 2 and (tmp_path / "t.json").exists()
    written = (tmp_path / "t.json").read_text()
    t.prepare(g)  # nothing lacking: nothing measured
    assert t.cost(g).latency_s == pytest.approx(25e-6)
    assert len(measure.calls) == 2 and (tmp_path / "t.json").read_text() == written
    with pytest.raises(NotPrepared, match="at batch 2"):  # another batch, other kernels
        t.cost(g, CostContext(batch=2))
    del t.table.extra["session"]
    with pytest.raises(NotPrepared, match="no session overhead"):
        t.cost(g)


def test_cost_layer_is_a_lookup_too(tmp_path):
    t, measure = fake_target(tmp_path)
    fc = analyze(hwcc.load(gemm(16, 8))).layer("fc")
    with pytest.raises(NotPrepared, match=r"fc \(Gemm, priced alone for an accelerator\)"):
        t.cost_layer(fc, CostContext())
    assert measure.calls == [] and not (tmp_path / "t.json").exists()
    with pytest.raises(NotPrepared, match="Gemm"):  # the table refuses a lookup it cannot answer
        t.table.lookup(_gemm_spec(16, 8))


def test_an_accelerator_prepares_its_cpu_host_for_the_layers_it_sends_there(tmp_path):
    """EIE runs the FC layer and sends the Softmax to its host, the cpu: its prepare()
    measures the Softmax alone, nothing of the FC layer; then cost() prices both."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=-1),
    ]
    inits = [const("w", 8, 16), const("b", 8)]
    g = hwcc.load(model(nodes, [vi("x", [1, 16])], [vi("y", [1, 8])], inits))
    cpu, measure = fake_target(tmp_path)
    eie = load_target("eie")
    eie.host_target.use_table(cpu.table)
    with pytest.raises(NotPrepared, match="softmax"):
        eie.cost(g)
    eie.prepare(g)
    assert [s["op"] for s in measure.calls] == ["Softmax"]
    gc = eie.cost(g)
    assert [(x.layer.name, x.on) for x in gc.layers] == [("fc", "eie"), ("softmax", "cpu")]
    assert gc.layer("softmax").cost.latency_s == pytest.approx(10e-6)  # hot: its data fits L2
    assert eie.price(g).to_dict() == gc.to_dict() and len(measure.calls) == 1


# ---------------------------------------------------------------------- the progress bar
class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_quiet_off_terminal():
    out = io.StringIO()
    with Progress(3, "work", stream=out) as bar:
        bar.update(note="a")
    assert out.getvalue() == ""


def test_progress_draws_on_terminal():
    out = _Tty()
    with Progress(4, "profiling", stream=out, min_interval=0) as bar:
        bar.update(2, note="Conv")
        assert "2/4" in bar.line() and "ETA" in bar.line() and "Conv" in bar.line()
        bar.update(2)
    text = out.getvalue()
    assert text.startswith("\r") and "4/4" in text and text.endswith("\n")
    assert (
        format_duration(42) == "42s"
        and format_duration(185) == "3m05s"
        and format_duration(-1) == "?"
    )


@pytest.mark.parametrize("columns", [20, 40, 80, 200])
def test_progress_fits_the_terminal_and_redraws_in_place(columns):
    """A line as wide as the terminal wraps on most terminals and leaves a stale line
    behind at the next carriage return: every drawn line is at most columns - 1 wide, and
    each redraw erases to the end of the line instead of padding with spaces."""
    out = _Tty()
    with Progress(
        40, "profiling lenet5", unit="kernels", stream=out, min_interval=0, columns=columns
    ) as bar:
        for i in range(40):
            bar.update(note=f"Conv_{i} " + "x" * 150)
        bar.log("a line of its own")
    draws = out.getvalue().split("\r")[1:]
    assert draws and all(len(d.replace("\x1b[K", "").rstrip("\n")) <= columns - 1 for d in draws)
    assert all(d.endswith("\x1b[K") or d.endswith("\n") for d in draws)
    assert out.getvalue().count("a line of its own") == 1
    if columns >= 80:
        assert "40/40 kernels" in out.getvalue() and "[" in out.getvalue()


# ---------------------------------------------------------------------- against onnxruntime
def _ort_kernels(model_bytes: bytes) -> list[tuple]:
    """(op, activation, weight shape, has Sum) of each node onnxruntime keeps."""
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.optimized_model_filepath, so.log_severity_level, so.intra_op_num_threads = (
            f"{tmp}/o.onnx",
            3,
            1,
        )
        ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        m = onnx.load(so.optimized_model_filepath)
    shapes = {i.name: tuple(i.dims) for i in m.graph.initializer}
    out = []
    for n in m.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        conv = n.op_type in ("Conv", "FusedConv")
        out.append(
            (
                f"{n.domain}:{n.op_type}",
                attrs.get("activation", b"").decode(),
                shapes.get(n.input[1]) if conv else None,
                conv and len([i for i in n.input if i]) > 3,
            )
        )
    return sorted(out, key=repr)


def _plan_kernels(g, block: int) -> list[tuple]:
    domains = {"nchwc": "com.microsoft.nchwc", "com.microsoft": "com.microsoft"}
    out = []
    for k in plan_kernels(g, analyze(g), block).kernels:
        s, (dom, _, name) = k.spec, k.spec["op"].rpartition(".")
        conv = name in ("Conv", "FusedConv")
        w = (s["M"], s["C"] // s["group"], *s["k"]) if conv else None
        out.append(
            (f"{domains.get(dom, dom)}:{name}", s.get("act", ""), w, conv and bool(s["sum"]))
        )
    return sorted(out, key=repr)


@pytest.fixture(scope="module")
def block():
    return load_target("cpu").table.block


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.mark.parametrize("name", ["lenet5-digits", "mobilenet-digits", "resnet-digits"])
def test_kernels_match_onnxruntime_zoo(name, block):
    from hwcc.models import zoo

    data = zoo.model_path(name).read_bytes()
    assert _plan_kernels(hwcc.load(onnx.load_from_string(data)), block) == _ort_kernels(data)


def test_kernels_match_onnxruntime_width_variants(block, bench):
    """Random channel counts cross every NCHWc rule (multiples of 4, of 16, C < 16)."""
    for name, data in bench.variants(12, seed=3, families=bench.FAMILIES_QUICK):
        assert _plan_kernels(hwcc.load(onnx.load_from_string(data)), block) == _ort_kernels(data), (
            name
        )


@pytest.mark.slow
def test_kernels_match_onnxruntime_large_variants(block, bench):
    for name, data in bench.variants(10, seed=5):
        assert _plan_kernels(hwcc.load(onnx.load_from_string(data)), block) == _ort_kernels(data), (
            name
        )


def test_kernel_models_run_as_written(block):
    """Each kernel model holds exactly its kernel after onnxruntime's optimizer."""
    from hwcc.models import zoo

    g = hwcc.load(zoo.model_path("resnet-digits"))
    seen = set()
    for k in plan_kernels(g, analyze(g), block).kernels:
        if k.spec["op"] in seen:
            continue
        seen.add(k.spec["op"])
        data = hwcc.ir.onnx_io.to_proto(
            kernel_graph(k.spec, block), value_info=False
        ).SerializeToString()
        with tempfile.TemporaryDirectory() as tmp:
            so = ort.SessionOptions()
            so.optimized_model_filepath, so.log_severity_level = f"{tmp}/o.onnx", 3
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
            nodes = onnx.load(so.optimized_model_filepath).graph.node
        assert [
            f"{n.domain}.{n.op_type}".lstrip(".").replace("com.microsoft.nchwc", "nchwc")
            for n in nodes
        ] == [k.spec["op"]]


def test_timer_measures_a_kernel():
    """A 2.4 M MAC conv: hot time positive and below 50 ms, cold no faster than half of it."""
    timer = Timer(1, 2 * MB, 0, rounds=3)
    ((hot, cold),) = timer([dict(REFERENCE)])
    assert 0 < hot < 0.05 and cold > 0.5 * hot
    assert timer.last_speed > 0


# ---------------------------------------------------------------------- fidelity
def _fidelity(bench, n, families, report_line, label, rounds=20):
    """Run the bench's comparison on ``n`` width variants with a fresh table.

    ``error`` is the prediction at the machine's speed of the moment (a fixed reference
    kernel timed beside each model, see ``bench/cpu_fidelity.py``); the raw error and the
    noise floor (the same model timed twice) are reported too.
    """
    base = load_target("cpu")
    target = CpuTarget(
        "cpu", {**base.spec, "params": {**base.params, "rounds": rounds}}, base.source
    )
    with tempfile.TemporaryDirectory() as cache:
        old = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = cache  # a fresh table, measured now
        try:
            result = bench.evaluate(bench.variants(n, seed=0, families=families), target)
        finally:
            if old is None:
                os.environ.pop("XDG_CACHE_HOME")
            else:
                os.environ["XDG_CACHE_HOME"] = old
    s = result["summary"]
    report_line(
        f"cpu fidelity ({label}, {n} width variants): {s['error_within_10pct']:.0%} within +-10 % "
        f"(raw {s['raw_error_within_10pct']:.0%}), median |error| {s['error_median_abs']:.1%} "
        f"(raw {s['raw_error_median_abs']:.1%}), p90 {s['error_p90_abs']:.1%}; "
        f"noise floor (same model timed twice): median {s['noise_median_abs']:.1%} "
        f"(raw {s['raw_noise_median_abs']:.1%}), "
        f"p90 {s['noise_p90_abs']:.1%}"
    )
    return s


# timed on a shared machine: a claim measured in the slow suite and bench/, not a CI gate
@pytest.mark.slow
def test_fidelity_digits_width_variants(bench, report_line):
    """8 random-width variants of the digits models: >= 80 % within +-10 % of onnxruntime."""
    s = _fidelity(bench, 8, bench.FAMILIES_QUICK, report_line, "digits")
    assert s["error_within_10pct"] >= 0.8


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason="not met reliably: 77 % of 30 variants within +-10 % (bench, seed 0, with "
    "a noise floor of 97 %), 50-67 % on seed 7's, 80 % asked; ResNet-18 at 64x64 is predicted "
    "about 10 % low and MobileNet V2 at 64x64 about 8 % high",
)
def test_fidelity_30_width_variants(bench, report_line):
    """30 variants: digits models, MobileNet V2 and ResNet-18 at 64x64 (about 8 min)."""
    s = _fidelity(bench, 30, bench.FAMILIES, report_line, "digits + 64x64")
    assert s["error_within_10pct"] >= 0.8
    assert math.isfinite(s["error_median_abs"])


def test_measure_models_is_median_of_runs():
    data = gemm(64, 64).SerializeToString()
    (t,) = measure_models([data], runs=5, rounds=2)
    assert 0 < t < 0.01
    assert session(data, 1) is not None


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
    _Phases(10**6).install(monkeypatch)  # never fast
    data = gemm(64, 64).SerializeToString()
    (raw,) = measure_models([data], runs=3, rounds=3)
    (t,) = measure_models([data], runs=3, rounds=3, speed=100e-6, patience_s=0)
    assert t == pytest.approx(raw / 1.8, rel=0.5)  # every visit rescaled by 100/180


def test_at_speed_needs_both_probes_of_a_visit_at_the_speed():
    from hwcc.targets.cpu.measure import _at_speed

    visits = [
        ([1000], [0], 180.0, 180.0),
        ([1000], [0], 180.0, 100.0),  # the phase changed during it
        ([3000], [0], 180.0, 181.0),
    ]
    # the two visits at 180: each scaled by 180 / its probes' mean (1 and 180 / 180.5)
    assert _at_speed(visits, 180.0, need=2) == pytest.approx((1000 + 3000 * 180 / 180.5) / 2 * 1e-9)
    # one visit at the speed, two needed: all are rescaled by 180 / their probes' mean
    assert _at_speed(visits[:2], 180.0, need=2) == pytest.approx(
        (1000 + 1000 * 180 / 140) / 2 * 1e-9
    )
    assert _at_speed([([1000], [0], 100.0, 100.0)], 180.0, need=1) == pytest.approx(1800e-9)


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
