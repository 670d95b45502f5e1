"""The embedded host of the accelerators (targets/host): hand-computed prices, independence
from this machine's CPU tables, and budgets on the chip alone or on the system."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from eie_graphs import graph_of
from onnx import TensorProto, helper, numpy_helper

import hwcc
import hwcc.targets.base as base
from hwcc.search.budget import parse_budget
from hwcc.targets.base import Cost, CostContext, Target, load_target, register_family
from hwcc.targets.pricing import metrics_of

OP_J = 70e-12  # Horowitz ISSCC 2014: one add instruction, 45 nm
BYTE_J = 640e-12 / 4  # EIE Table I: 32-bit LPDDR2 access
OPS_PER_S = 500e6  # host-45nm.toml: 1 op per cycle at 500 MHz (assumption)
BYTES_PER_S = 4.26e9  # LPDDR2-1066 x32


def maxpool_graph() -> hwcc.Graph:
    """conv (runs on Eyeriss) -> MaxPool 2x2 stride 2 (does not): 1x2x4x4 -> 1x2x2x2."""
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    return graph_of(
        [
            helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
            helper.make_node(
                "MaxPool", ["h"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
            ),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])],
        [w],
    )


def test_accelerators_declare_the_embedded_host():
    assert load_target("eyeriss").host == "host-45nm" and load_target("eie").host == "host-45nm"
    assert load_target("cpu").provenance == "measured"  # the cpu target keeps its measurements


def test_maxpool_on_the_host_by_hand():
    # 8 outputs x 4 compares = 32 ops; DRAM: 2*4*4 fp32 in (128 B) + 2*2*2 fp32 out (32 B).
    # energy = 32 * 70 pJ + 160 B * 160 pJ = 2240 + 25600 = 27840 pJ
    # latency = 32 / 500 MHz + 160 B / 4.26 GB/s = 64 ns + 37.559 ns
    gc = load_target("eyeriss").cost(maxpool_graph())
    pool = gc.layer("pool")
    assert pool.on == "host-45nm" and gc.layer("conv").on == "eyeriss"
    assert pool.cost.breakdown["ops"] == 32 and pool.cost.breakdown["dram_bytes"] == 160
    assert pool.cost.energy_j == pytest.approx(27840e-12, rel=1e-9)
    assert pool.cost.latency_s == pytest.approx(64e-9 + 160 / 4.26e9, rel=1e-9)
    assert gc.host_energy_j == pytest.approx(pool.cost.energy_j, rel=1e-12)


def lstm_graph(steps: int) -> hwcc.Graph:
    """One LSTM, hidden 2, input 2, batch 1, ``steps`` time steps; W, R and B in fp32."""
    rng = np.random.default_rng(0)
    shapes = {"W": (1, 8, 2), "R": (1, 8, 2), "B": (1, 16)}
    inits = [
        numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
        for n, s in shapes.items()
    ]
    return graph_of(
        [helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], name="lstm", hidden_size=2)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [steps, 1, 1, 2])],
        inits,
    )


@pytest.mark.parametrize("steps", [1, 3])
def test_a_recurrent_layer_reads_its_weights_at_every_step_by_hand(steps):
    # weights: W 16 + R 16 + B 16 floats = 192 B, read once per step; x and y: 8 B per step.
    # ops: T x (4 gates x 2 hidden x (2 + 2) MACs + 2 hidden x 9 gate ops) = 50 T.
    # T = 3: 624 B, 150 ops: 150 x 70 pJ + 624 x 160 pJ = 10500 + 99840 = 110340 pJ.
    lstm = load_target("host-45nm").cost(lstm_graph(steps)).layer("lstm").cost
    moved = 8 * steps + 8 * steps + 192 * steps
    assert lstm.breakdown["dram_bytes"] == moved and lstm.breakdown["ops"] == 50 * steps
    assert lstm.energy_j == pytest.approx(50 * steps * OP_J + moved * BYTE_J, rel=1e-9)
    if steps == 3:
        assert lstm.energy_j == pytest.approx(110340e-12, rel=1e-9)
    assert lstm.latency_s == pytest.approx(50 * steps / OPS_PER_S + moved / BYTES_PER_S, rel=1e-9)


def test_views_are_free_and_unknown_work_is_refused():
    host = load_target("host-45nm")
    x = np.ones((1, 8), np.float32)
    g = graph_of(
        [helper.make_node("Flatten", ["x"], ["y"], name="flat")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [],
    )
    assert host.cost(g).layer("flat").cost.energy_j == 0
    layer = host.workload(g, CostContext()).layer("flat")
    assert "unknown" in host.supports(dataclasses.replace(layer, known=False, reason="?"))


@register_family("test_cpu_table")
class _TableCPU(Target):
    """A stand-in for the measured cpu with a table of its own: every layer at scale x its work."""

    def cost_layer(self, layer, ctx):
        k = float(self.params["scale"]) * (layer.macs + layer.ops + 1)
        return Cost(k * 1e-9, k * 1e-9)


def _priced_with_cpu_table(tmp_path: Path, monkeypatch, scale: float):
    toml = tmp_path / f"cpu-{scale:g}.toml"
    toml.write_text(
        f'family = "test_cpu_table"\nprovenance = "measured"\n[params]\nscale = {scale}\n'
    )
    files = {**base._target_files(), "cpu": toml}
    monkeypatch.setattr(base, "_target_files", lambda: files)
    assert load_target("cpu").params["scale"] == scale
    g = hwcc.load("zoo:lenet5-digits")
    return {t: load_target(t).cost(g) for t in ("eyeriss", "eie")}


def test_accelerator_energy_does_not_depend_on_the_cpu_table(tmp_path, monkeypatch):
    # Two cpu tables 1000x apart (a fast and a slow day on this machine): the accelerators'
    # energy and latency are the same to the bit, and nothing runs on the cpu.
    a = _priced_with_cpu_table(tmp_path, monkeypatch, 1.0)
    b = _priced_with_cpu_table(tmp_path, monkeypatch, 1000.0)
    for t in a:
        assert a[t].energy_j == b[t].energy_j and a[t].latency_s == b[t].latency_s
        assert all(lc.on != "cpu" for lc in a[t].layers)
    assert a["eyeriss"].host_energy_j > 0  # lenet5's MaxPool runs on the embedded host


def test_chip_and_system_metrics_and_budgets():
    gc = load_target("eyeriss").cost(maxpool_graph())
    m = metrics_of(gc)
    chip = gc.layer("conv").cost
    assert m["chip_energy_j"] == pytest.approx(chip.energy_j, rel=1e-12)
    assert m["chip_latency_s"] == pytest.approx(chip.latency_s, rel=1e-12)
    assert m["energy_j"] == pytest.approx(chip.energy_j + 27840e-12, rel=1e-12)
    # a limit between the chip's energy and the system's: met on the chip, not on the system
    between = f"{(m['chip_energy_j'] + 13920e-12) * 1e12:.6g}pJ"
    system, on_chip = parse_budget(between), parse_budget("chip:" + between)
    assert system.metric == "energy_j" and on_chip.metric == "chip_energy_j"
    assert on_chip.limit == system.limit
    assert on_chip.is_met(m) and not system.is_met(m)
    # relative: chip:50% resolves on the chip's share of the target's primary metric
    half = parse_budget("chip:50%").resolve(m, "energy_j")
    assert half.metric == "chip_energy_j" and half.limit == pytest.approx(m["chip_energy_j"] / 2)
