"""The ``cpu`` target's costs: kernels as onnxruntime fuses them, costs worked out by hand,
layers priced alone, and ``cost()`` as a pure lookup in the table that ``prepare()`` fills.

Hand-computed costs use a table whose "measurements" are a deterministic function of the
kernel spec (no timing noise; ``fake_target`` in cpu_helpers.py), so every number can be
worked out on paper.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from cpu_helpers import (
    _gemm_spec,
    _ort_kernels,
    const,
    conv_bn_relu,
    fake_target,
    gemm,
    model,
    vi,
)
from onnx import helper, numpy_helper

import hwcc
import hwcc.targets.base
from hwcc.errors import HwccError
from hwcc.ir.workload import analyze
from hwcc.targets.base import CostContext, NotPrepared, load_target
from hwcc.targets.cpu.target import CpuTarget, profile


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
    """EIE, given the cpu as its host (its bundled host is the embedded host-45nm), runs
    the FC layer and sends the Softmax there: its prepare() measures the Softmax alone,
    nothing of the FC layer; then cost() prices both."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=-1),
    ]
    inits = [const("w", 8, 16), const("b", 8)]
    g = hwcc.load(model(nodes, [vi("x", [1, 16])], [vi("y", [1, 8])], inits))
    cpu, measure = fake_target(tmp_path)
    bundled = Path(hwcc.targets.base.__file__).parent / "eie" / "eie.toml"
    text, n = re.subn(r'^host = "[^"]*"', 'host = "cpu"', bundled.read_text(), flags=re.M)
    assert n == 1
    (tmp_path / "eie.toml").write_text(text)
    eie = load_target(tmp_path / "eie.toml")
    eie.host_target.use_table(cpu.table)
    with pytest.raises(NotPrepared, match="softmax"):
        eie.cost(g)
    eie.prepare(g)
    assert [s["op"] for s in measure.calls] == ["Softmax"]
    gc = eie.cost(g)
    assert [(x.layer.name, x.on) for x in gc.layers] == [("fc", "eie"), ("softmax", "cpu")]
    assert gc.layer("softmax").cost.latency_s == pytest.approx(10e-6)  # hot: its data fits L2
    assert eie.price(g).to_dict() == gc.to_dict() and len(measure.calls) == 1


@pytest.mark.parametrize("opset", [11, 13])
def test_a_kernel_is_rebuilt_at_its_models_opset(opset):
    """Squeeze takes its axes as an attribute before opset 13 and as an input from 13 on:
    the one-kernel model must be written at the source's opset, or onnxruntime refuses it."""
    from hwcc.targets.cpu.kernel_model import kernel_graph
    from hwcc.targets.cpu.measure import session

    if opset < 13:
        nodes = [helper.make_node("Squeeze", ["x"], ["y"], axes=[1])]
        inits = []
    else:
        nodes = [helper.make_node("Squeeze", ["x", "axes"], ["y"])]
        inits = [numpy_helper.from_array(np.array([1], np.int64), "axes")]
    x = helper.make_tensor_value_info("x", 1, [1, 1, 8])
    y = helper.make_tensor_value_info("y", 1, [1, 8])
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    t = load_target("cpu")
    (kernel,) = [k for k in t.plan(hwcc.load(model)).kernels if not k.is_reorder]
    assert kernel.spec["opset"] == opset
    from hwcc.ir.onnx_io import to_proto

    session(to_proto(kernel_graph(kernel.spec, t.table.block)).SerializeToString(), 1)


def test_a_kernel_is_priced_by_its_shapes_not_its_weights(tmp_path):
    """Fine-tuning changes an LSTM's bias; the kernel is the same one: no new measurement
    and the same price (its 8H-entry bias was copied into the kernel model, so every
    fine-tune asked for a fresh, noisy, measurement). A float scalar that changes the
    computation (Pow's exponent) still tells kernels apart."""
    h, seq, feat = 8, 4, 6

    def lstm(bias: float, exponent: float):
        nodes = [
            helper.make_node("LSTM", ["x", "w", "r", "b"], ["y"], hidden_size=h, name="rnn"),
            helper.make_node("Pow", ["y", "e"], ["z"], name="pow"),
        ]
        inits = [
            const("w", 1, 4 * h, feat),
            const("r", 1, 4 * h, h),
            const("b", 1, 8 * h, value=bias),
            const("e", value=exponent),
        ]
        return hwcc.load(model(nodes, [vi("x", [seq, 1, feat])], [vi("z", [seq, 1, 1, h])], inits))

    t, measure = fake_target(tmp_path)
    t.prepare(lstm(0.1, 2.0))
    calls, price = len(measure.calls), t.cost(lstm(0.1, 2.0)).latency_s
    t.prepare(lstm(0.7, 2.0))
    assert len(measure.calls) == calls and t.cost(lstm(0.7, 2.0)).latency_s == price
    t.prepare(lstm(0.7, 0.5))
    assert len(measure.calls) == calls + 1  # the Pow kernel with another exponent
