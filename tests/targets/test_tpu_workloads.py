"""The tpu target on the six workloads of the paper (Table 1's layer counts, weights and
intensity; Table 3's measured TeraOps/s; the roofline of Figure 5) and Section 7's 600x600
multiply on a 256x256 and a 512x512 matrix unit.

Published figures are from N. P. Jouppi et al., "In-Datacenter Performance Analysis of a
Tensor Processing Unit", ISCA 2017 (arXiv:1704.04760); each is copied next to its check.
"""

from __future__ import annotations

import numpy as np
import pytest
from tpu_graphs import qlinear_conv, variant

import hwcc
from bench.tpu_workloads import BUILDERS, alphago, inception, qlinear_fc, stack

# ---------------------------------------------------------------------- the paper's six workloads
# Jouppi et al. 2017, Table 1 (layers, weights, TPU ops/weight byte, batch) and Table 3 row 9
# (measured TeraOps/s, 92 peak). The per-layer widths are not published; each graph below is
# built from the published totals by a stated rule, never from the measured TOPS:
#
# * MLP0, MLP1: L equal square FC layers with ReLU, d = sqrt(weights / L): 2000, 1118.
# * LSTM0, LSTM1: L equal square FC layers (one time step of the stacked cells; their
#   sigmoid/tanh run in Activate) and the published number of vector layers as element-wise
#   products with the int8 recurrent state, spread evenly after the FC layers: d = 1472, 959.
# * CNN0 is AlphaGo (Table 1 caption): 2888 = 8 · 19², one use of each weight per board point.
#   Its layers follow the AlphaGo networks (Silver et al., Nature 2016: a 5×5 conv on 48 input
#   planes, 3×3 convs, 1×1 convs, k filters): 1 + 13 + 2 = 16 layers; k = 256 gives the 8 M
#   weights (k = 192 would give 4.6 M).
# * CNN1 is Inception (Table 1 caption). Assumption: its 72-conv trunk carries 10 M weights (the
#   order of an Inception trunk) and its 4 FC layers the other 90 M. Trunk: 72 equal 3×3 convs of
#   sqrt(10 M / 72 / 9) = 124 channels at 23×23, the square grid nearest the 538 points per image
#   that Table 1's intensity of 1750 asks for; 13 3×3 max-pools spread evenly; then the flattened
#   trunk (124·23·23 = 65596) feeds FC d, d, d, d with 65596·d + 3·d² = 90 M: d = 1295. Its FC
#   layers then run at intensity 32 = batch, as the paper says.
TABLE1 = {  # name: (FC, conv, vector, pool, weights, ops per weight byte, batch, measured TOPS)
    "MLP0": (5, 0, 0, 0, 20e6, 200, 200, 12.3),
    "MLP1": (4, 0, 0, 0, 5e6, 168, 168, 9.7),
    "LSTM0": (24, 0, 34, 0, 52e6, 64, 64, 3.7),
    "LSTM1": (37, 0, 19, 0, 34e6, 96, 96, 2.8),
    "CNN0": (0, 16, 0, 0, 8e6, 2888, 8, 86.0),
    "CNN1": (4, 72, 0, 13, 100e6, 1750, 32, 14.1),
}


def test_builders_make_graphs_onnxruntime_runs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    small = {
        "stack": stack(3, 64, 4, 2),
        "alphago": alphago(1, 8),
        "inception": inception(2, 4, 5, 6),
        "qfc": qlinear_fc(4, 64, 32),
        "qconv": qlinear_conv(8, 6, 4, 3),
    }
    for name, g in small.items():
        path = hwcc.save(g, tmp_path / f"{name}.onnx")
        sess = ort.InferenceSession(str(path))
        feeds = {
            i.name: np.ones(i.shape, np.uint8 if "uint8" in i.type else np.int8)
            for i in sess.get_inputs()
        }
        assert all(np.isfinite(o).all() for o in sess.run(None, feeds)), name


@pytest.fixture(scope="module")
def apps(tpu):
    """name → (graph, GraphCost, MACs, weight bytes, modelled TOPS with 2 ops per MAC)."""
    out = {}
    for name, build in BUILDERS.items():
        g = build()
        gc = tpu.cost(g)
        macs, wbytes = (
            sum(x.layer.macs for x in gc.layers),
            sum(x.layer.weight_bytes for x in gc.layers),
        )
        out[name] = (g, gc, macs, wbytes, 2 * macs / gc.latency_s / 1e12)
    return out


@pytest.mark.parametrize("name", TABLE1)
def test_workload_matches_table1(apps, name):
    fc, conv, vector, pool, weights, intensity, _, _ = TABLE1[name]
    g, gc, macs, wbytes, _ = apps[name]
    ops = [n.op_type for n in g.nodes]
    assert (ops.count("MatMul"), ops.count("Conv"), ops.count("Mul"), ops.count("MaxPool")) == (
        fc,
        conv,
        vector,
        pool,
    )
    assert wbytes == pytest.approx(weights, rel=0.01)  # int8: one byte per weight
    # MACs per weight byte is Table 1's "TPU ops / weight byte". CNN1 lands at 1716 (-1.9 %):
    # 23×23 = 529 points instead of the 538 an exact 1750 would need.
    assert macs / wbytes == pytest.approx(intensity, rel=0.02)
    assert {x.on for x in gc.layers} == {"tpu"}


@pytest.mark.parametrize("name", TABLE1)
def test_never_above_the_roofline(tpu, apps, name):
    # Roofline (Figure 5): TOPS = 2·MACs / time ≤ min(92 TOPS, 2 · (MACs / weight byte) · 34 GB/s).
    _, gc, macs, wbytes, tops = apps[name]
    assert tops * 1e12 <= tpu.roofline_ops_per_s(macs / wbytes)
    for x in gc.layers:
        if x.layer.macs:
            assert 2 * x.layer.macs / x.cost.latency_s <= tpu.roofline_ops_per_s(
                x.layer.macs / x.layer.weight_bytes
            )


@pytest.mark.parametrize("name", ["MLP0", "MLP1", "LSTM0", "CNN0"])
def test_measured_tops_within_15_percent(apps, name, report_line):
    measured = TABLE1[name][-1]  # Table 3 row 9: 12.3, 9.7, 3.7, 86.0 TOPS
    tops = apps[name][-1]
    report_line(
        f"tpu {name}: model {tops:.2f} TOPS, measured {measured} (Table 3), "
        f"{100 * (tops / measured - 1):+.1f} %"
    )
    assert tops == pytest.approx(measured, rel=0.15)


@pytest.mark.parametrize("name", ["LSTM1", "CNN1"])
def test_lstm1_and_cnn1_are_not_captured(apps, name, report_line):
    # Table 3: LSTM1 2.8 and CNN1 14.1 TOPS sit far below their roofs (6.5 and 92) through RAW
    # stalls, under-filled tiles and host overhead the model does not see: it can only be
    # optimistic.
    measured = TABLE1[name][-1]
    tops = apps[name][-1]
    report_line(
        f"tpu {name}: model {tops:.2f} TOPS, measured {measured} (Table 3), "
        f"{100 * (tops / measured - 1):+.1f} % (not captured)"
    )
    assert tops > measured


def test_memory_bound_and_compute_bound_apps(apps):
    # Table 3: "The MLPs and LSTMs are memory-bandwidth limited but CNNs are not"
    # (CNN0: 0 % weight stalls).
    for name in ("MLP0", "MLP1", "LSTM0", "LSTM1"):
        assert all(
            x.cost.breakdown["weight_bound"] == 1.0 for x in apps[name][1].layers if x.layer.macs
        )
    assert all(
        x.cost.breakdown["weight_bound"] == 0.0 for x in apps["CNN0"][1].layers if x.layer.macs
    )
    # CNN1's FC layers stall on weights (intensity 32); its conv layers do not.
    cnn1 = [x for x in apps["CNN1"][1].layers if x.layer.macs]
    assert {(x.layer.op_type, x.cost.breakdown["weight_bound"]) for x in cnn1} == {
        ("Conv", 0.0),
        ("MatMul", 1.0),
    }


def test_busy_power_running_cnn0(apps):
    # Table 2 / Figure 10: 40 W per die (incremental) running CNN0 at full load.
    gc = apps["CNN0"][1]
    assert gc.energy_j / gc.latency_s == pytest.approx(40.0, rel=0.05)


def test_600x600_matrix_section_7(tpu, tmp_path):
    # Section 7: "With a 256x256 matrix unit, it takes 9 steps to tile 600x600, for a total of 18 us
    # of time. The larger 512x512 unit requires only four steps, but each step takes four times
    # longer, for 32 us of time." At LSTM1's batch of 96 (Table 1). Tolerance 10 %.
    small = tpu.cost(qlinear_fc(96, 600, 600)).layer("fc").cost
    # 17.3 us
    assert small.breakdown["tiles"] == 9 and small.latency_s == pytest.approx(18e-6, rel=0.10)
    big = variant(
        tmp_path,
        "tpu512",
        array_rows=512,
        array_cols=512,
        tile_shift_cycles=512,
        pipeline_fill_cycles=512,
    )
    large = big.cost(qlinear_fc(96, 600, 600)).layer("fc").cost
    # 30.8 us
    assert large.breakdown["tiles"] == 4 and large.latency_s == pytest.approx(32e-6, rel=0.10)
