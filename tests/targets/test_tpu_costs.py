"""The tpu target: its description and roofline, and one-node costs worked out by hand
(matrix unit, weight memory, the vector unit).

Published figures are from N. P. Jouppi et al., "In-Datacenter Performance Analysis of a
Tensor Processing Unit", ISCA 2017 (arXiv:1704.04760); each is copied next to its check.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from tpu_graphs import TOML, qlinear_conv, variant

from bench.tpu_workloads import Net, qlinear_fc
from hwcc.errors import HwccError
from hwcc.ir.workload import analyze
from hwcc.targets.base import CostContext, load_target

# TPU v1 parameters as the tests expect them (targets/tpu/tpu.toml), written out.
F = 700e6  # clock, Hz


BW = 34e9  # Weight Memory, B/s


TILE = 256 * 256  # bytes of one int8 weight tile


T_TILE = TILE / BW  # 1.9275 us to load one tile


FILL = 256  # cycles for a wavefront to cross the array


SHIFT = 256  # cycles to shift a tile in


P_IDLE, P_BUSY = 28.0, 40.0


# ---------------------------------------------------------------------- the target itself
def test_load_and_describe(tpu):
    d = tpu.describe()
    assert d["family"] == "tpu" and d["provenance"] == "model" and d["host"] == "cpu"
    assert any("Table 3" in v for v in d["validated_against"]) and d["sources"]
    assert d["params"]["array_rows"] == 256 and d["params"]["weight_fifo_tiles"] == 4


def test_missing_parameter_is_an_error(tmp_path):
    text = re.sub(r"^weight_fifo_tiles = .*$", "", TOML.read_text(), flags=re.M)
    (tmp_path / "broken.toml").write_text(text)
    with pytest.raises(HwccError, match="weight_fifo_tiles"):
        load_target(tmp_path / "broken.toml")


def test_roofline_peak_and_ridge(tpu):
    # Jouppi et al. 2017, Figure 5 / Table 2: 92 TOPS peak (8-bit), ridge at 1350 ops per
    # weight byte.
    assert tpu.peak_ops_per_s == 65536 * 2 * F  # 91.75e12
    assert tpu.peak_ops_per_s / 1e12 == pytest.approx(92, rel=0.005)
    # 65536 · 0.7e9 / 34e9 = 1349.3
    assert tpu.ridge_macs_per_byte == pytest.approx(1350, rel=0.001)
    assert tpu.roofline_ops_per_s(200) == 2 * 200 * BW  # MLP0's 13.6 TOPS roof (slanted part)
    assert tpu.roofline_ops_per_s(2888) == tpu.peak_ops_per_s


# -------------------------------------------------------------------- hand-computed one-node graphs
def test_one_tile_fc_at_batch_256(tpu):
    lc = tpu.cost(qlinear_fc(256, 256, 256)).layer("fc")
    # One 256×256 tile, one pass of 256 rows. Matrix unit: max(256 rows, 256 shift) = 256 cycles,
    # then the drain: fill 256 + Activate 256 rows = 512 cycles; path 768 cycles = 1.097 us.
    mxu_path = (256 + FILL + 256) / F
    # Weight memory: 65536 B / 34 GB/s = 1.928 us; the 0.73 us drain fits the 4-tile FIFO (7.7 us).
    weight_path = TILE / BW
    assert weight_path > mxu_path  # weight loading dominates
    assert lc.on == "tpu" and lc.cost.latency_s == pytest.approx(weight_path, rel=1e-12)
    assert lc.cost.breakdown["tiles"] == 1 and lc.cost.breakdown["weight_bound"] == 1.0
    u = (256 / F) / weight_path  # rows stream through the array 256 of the 1350 cycles: 19 %
    assert lc.cost.energy_j == pytest.approx(
        weight_path * (P_IDLE + (P_BUSY - P_IDLE) * u), rel=1e-12
    )


def test_512_fc_at_batch_1_is_weight_bound(tpu):
    lc = tpu.cost(qlinear_fc(1, 512, 512)).layer("fc")
    # 2×2 = 4 tiles of 1 row: each waits for its 256-cycle shift; drain 256 + 1 cycles.
    mxu_path = (4 * max(1, SHIFT) + FILL + 1) / F  # 1.83 us
    weight_path = 4 * T_TILE  # 7.71 us
    assert lc.cost.latency_s == pytest.approx(weight_path, rel=1e-12) and weight_path > 4 * mxu_path
    assert lc.cost.breakdown["tiles"] == 4


def test_tile_shift_bounds_small_batches_on_faster_memory(tmp_path):
    # TPU' (Section 7): GDDR5 moves the ridge from 1350 to 250 ops per weight byte, so
    # BW' = 34 GB/s · 1350 / 250 = 183.6 GB/s and a tile loads in 65536 / 183.6e9 = 0.357 us.
    prime = variant(tmp_path, "tpu_prime", weight_bandwidth_Bps=34e9 * 1350 / 250)
    lc = prime.cost(qlinear_fc(1, 512, 512)).layer("fc")
    # Now 4 tiles × 256 shift cycles + drain 257 = 1281 cycles (1.83 us) outlast 4 loads (1.43 us).
    assert lc.cost.latency_s == pytest.approx((4 * SHIFT + FILL + 1) / F, rel=1e-12)
    assert lc.cost.breakdown["weight_bound"] == 0.0


def test_constant_first_operand_swaps_rows_and_columns(tpu):
    net = Net()
    x = net.input([512, 1])
    y = net.op("MatMul", [net.weight((512, 512)), x], name="wx")  # W·x: one column of activations
    lc = tpu.cost(net.graph(y)).layer("wx")
    # Multiplied as xᵀ·Wᵀ: 1 row, K = 512, N = 512: 4 tiles (not 2 × 1 tiles of a 512-row multiply).
    assert lc.cost.breakdown["tiles"] == 4 and lc.cost.latency_s == pytest.approx(
        4 * T_TILE, rel=1e-12
    )


def test_conv_lowered_to_im2col(tpu):
    g = qlinear_conv(64, 28, 128, 3)
    x = analyze(g).layer("conv")
    assert x.macs == 784 * 576 * 128  # rows = 28·28, K = 64·3·3, N = 128
    # K = 576 → 3 row tiles, N = 128 → 1 column tile: 3 tiles, 784 rows in one pass.
    one = tpu.cost(g).layer("conv").cost
    mxu_path = (3 * 784 + FILL + 784) / F  # 4.85 us
    assert one.latency_s == pytest.approx(max(mxu_path, 3 * T_TILE), rel=1e-12)  # 5.78 us: weights
    assert one.breakdown["tiles"] == 3 and one.breakdown["passes"] == 1
    # Batch 4: 3136 rows exceed one accumulator pass (2048): 2 passes of 1568, each re-streaming
    # the 3 tiles. Matrix unit 3·2·1568 = 9408 cycles + drain 256 + 1568 = 16.05 us
    # > 6 tiles 11.57 us.
    four = tpu.cost(g, CostContext(batch=4)).layer("conv").cost
    assert four.breakdown["passes"] == 2 and four.breakdown["weight_bound"] == 0.0
    assert four.latency_s == pytest.approx((3 * 2 * 1568 + FILL + 1568) / F, rel=1e-12)
    assert four.breakdown["weight_bytes_streamed"] == 2 * 3 * TILE


def test_depthwise_groups_share_tiles(tpu):
    net = Net()
    y = net.conv(net.input([1, 64, 14, 14]), 64, 64, 3, act=None, group=64, name="dw")
    lc = tpu.cost(net.graph(y)).layer("dw")
    # Each group is 9 × 1; 256 // 9 = 28 groups sit block-diagonally in one tile:
    # ceil(64/28) = 3 tiles.
    assert lc.cost.breakdown["tiles"] == 3
    # 196 rows < shift: weights bound
    assert lc.cost.latency_s == pytest.approx(3 * T_TILE, rel=1e-12)


def test_16_bit_operands_run_at_half_and_quarter_speed(tpu):
    x = analyze(qlinear_fc(1024, 256, 256)).layer("fc")
    # Activations 16 bit: 1024 rows take 2048 cycles; drain 256 + 1024: (2048 + 1280) / F = 4.75 us.
    half = tpu.cost_layer(dataclasses.replace(x, act_bits=16), CostContext())
    assert half.latency_s == pytest.approx((2048 + FILL + 1024) / F, rel=1e-12)
    # Both 16 bit: 4096 cycles, and a tile of 16-bit weights is 128 KiB (3.86 us):
    # still compute-bound.
    quarter = tpu.cost_layer(dataclasses.replace(x, act_bits=16, weight_bits=16), CostContext())
    assert quarter.latency_s == pytest.approx((4096 + FILL + 1024) / F, rel=1e-12)
    assert quarter.breakdown["weight_bytes_streamed"] == 2 * TILE


def test_lstm_is_a_projection_then_dependent_steps(tpu):
    net = Net()
    x = net.input([2, 4, 256])  # T = 2 steps, batch 4, input 256
    w, r = net.weight((1, 256, 256)), net.weight((1, 256, 64))  # 4 gates × hidden 64
    lc = tpu.cost(net.graph(net.op("LSTM", [x, w, r], name="lstm", hidden_size=64))).layer("lstm")
    # Projection: 8 rows × K 256 × 256 gate columns = 1 tile; each of the 2 steps:
    # 4 rows × K 64 = 1 tile.
    # Every multiply is one tile load (1.93 us) behind a short matrix-unit path (< 0.8 us).
    gates = math.ceil(2 * 4 * 64 * 9 / 256)  # gate functions in Activate: 18 cycles
    assert lc.cost.latency_s == pytest.approx(3 * T_TILE + gates / F, rel=1e-12)


def test_unified_buffer_overflow_goes_over_pcie(tpu):
    lc = tpu.cost(qlinear_fc(8192, 2048, 2048)).layer("fc")
    # In 16 MiB + out 16 MiB int8 = 32 MiB > 24 MiB: 8 MiB round trip at 15.75 GB/s (PCIe Gen3 x16).
    spill = 8 * 2**20 / 15.75e9
    # 64 tiles × 4 passes of 2048 rows = 524288 cycles (749 us) > 256 tile loads (493 us).
    assert lc.cost.latency_s == pytest.approx((64 * 4 * 2048 + FILL + 2048) / F + spill, rel=1e-12)


# ---------------------------------------------------------------------- the vector unit
def test_activation_fuses_into_the_matrix_layer(tpu):
    net = Net()
    y = net.requant(
        net.op(
            "Relu", [net.fc(net.input([64, 1024]), 1024, 1024, act=None, name="mm")], name="relu"
        )
    )
    gc = tpu.cost(net.graph(y))
    for x in gc.layers:
        assert x.on == "tpu"
        if x.layer.op_type in ("Relu", "QuantizeLinear"):
            assert x.cost.latency_s == 0 and x.cost.note == "in the Activate pass of mm"
    assert gc.latency_s == pytest.approx(16 * T_TILE, rel=1e-12)  # 4×4 tiles, weight-bound


def test_standalone_vector_ops(tpu):
    net = Net()
    a, b = net.input([64, 1024]), net.input([64, 1024])
    mul = net.op("Mul", [a, b], name="mul")  # two int8 activations: a vector layer of its own
    mm = net.fc(net.input([64, 1024]), 1024, 1024, act=None, name="mm")
    relu = net.op("Relu", [mm], name="relu")  # mm is also a graph output: its Relu cannot fuse
    gc = tpu.cost(net.graph(mul, mm, relu))
    # Mul reads 2 × 65536 values, 256 per cycle: 512 cycles; Relu reads 65536: 256 cycles.
    # Idle power.
    assert gc.layer("mul").cost.latency_s == pytest.approx(512 / F, rel=1e-12)
    assert gc.layer("relu").cost.latency_s == pytest.approx(256 / F, rel=1e-12)
    assert gc.layer("relu").cost.energy_j == pytest.approx(256 / F * P_IDLE, rel=1e-12)
