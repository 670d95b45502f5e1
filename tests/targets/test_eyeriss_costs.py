"""Eyeriss target: its description, one-node costs worked out by hand, which layers run on
the chip and which on its host, and the mapper against exhaustive enumeration.

The hand-computed costs count each data type's accesses at each level (DRAM, GLB, NoC, RF)
for a given mapping; the energies are in units of ``PJ`` (eyeriss_graphs.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
from eyeriss_graphs import PJ, _conv_graph, _layer, _model, _vi
from onnx import helper

import hwcc
import hwcc.targets
import hwcc.targets.base as base
from hwcc.errors import HwccError
from hwcc.ir.workload import analyze
from hwcc.targets.base import Cost, CostContext, Target, load_target, register_family
from hwcc.targets.eyeriss.mapper import Mapping, check, evaluate, rlc_ratio, search, strip_rows
from hwcc.targets.eyeriss.target import layer_shape


# ---------------------------------------------------------------------- target basics
def test_load_target_describes_provenance():
    t = load_target("eyeriss")
    d = t.describe()
    assert d["family"] == "eyeriss" and d["provenance"] == "model"
    assert any("Table V" in v for v in d["validated_against"]) and d["sources"]
    assert t.primary_metric == "energy_j" and t.host == "host-45nm"
    assert t.params["pe_rows"] * t.params["pe_cols"] == 168
    assert t.params["energy_relative"] == {
        "mac": 1,
        "rf": 1,
        "noc": 2,
        "glb": 6,
        "dram": 200,
    }  # ISCA Table IV


def test_bad_objective_is_an_error(tmp_path):
    text = (Path(hwcc.targets.__file__).parent / "eyeriss" / "eyeriss.toml").read_text()
    (tmp_path / "e.toml").write_text(
        text.replace('mapper_objective = "edp"', 'mapper_objective = "speed"')
    )
    with pytest.raises(HwccError, match="mapper_objective"):
        load_target(tmp_path / "e.toml")


def test_rlc_ratio():
    rlc = (5, 16, 3, 64)  # JSSC: 5-bit run, 16-bit level, 3 pairs per 64-bit word
    # A pair covers (1 - (1-d)**32)/d values on average and costs 64/3 bits = 4/3 words.
    assert rlc_ratio(0.25, rlc) == pytest.approx((4 / 3) / ((1 - 0.75**32) / 0.25))  # 0.3337
    assert rlc_ratio(0.7, rlc) == pytest.approx((4 / 3) / ((1 - 0.3**32) / 0.7))  # 0.9333
    assert rlc_ratio(0.0, rlc) == pytest.approx((4 / 3) / 32)  # runs of 31 zeros + a zero value
    assert rlc_ratio(1.0, rlc) == 1.0  # coding would cost 4/3 words per value: sent raw
    assert rlc_ratio(0.8, rlc) == 1.0


# ---------------------------------------------------------------------- hand-computed
def test_hand_computed_conv(eyeriss):
    """2x4x4 input, two 3x3 filters, stride 1, no padding -> 2x2x2 output, batch 1, dense.

    Mapping m=2 n=1 e=2 p=2 q=2 r=1 t=1: one PE set of 3 rows x 2 columns, one pass.
    MACs = 2*2*2 * 2*3*3 = 144.
    ifmaps:  DRAM 2ch*4rows*4 = 32; GLB 32 (one pass); NoC 6 PEs * 2ch * 4 = 48; RF 144.
    weights: DRAM 2*2*3*3 = 36; GLB 36; NoC 36 * e=2 = 72; RF 144.
    psums:   DRAM 8 outputs; GLB 0 (one channel chunk); NoC (R-1)=2 hops * 8 = 16;
             RF 2*(q*S-1) = 10 per psum * 24 psums (6 PEs x 2 filters x 2 columns) = 240.
    Energy units = MAC 144 + RF 528 + NoC 2*136 + GLB 6*68 + DRAM 200*76 = 16552.
    Cycles = N*p*q*S*F = 1*2*2*3*2 = 24 MAC cycles, + 1/(q*S) = 1/6 of them to add the psum
    from the PE below = 28, stretched by the ifmap GIN (one value a cycle): the pass takes
    r*(U(e-1)+R)*W = 4*4 = 16 ifmap values in 12 MAC cycles, 4/3 -> 37.33; + 36/4
    filter-fill cycles = 46.33.
    DRAM 76 words = 152 B at 64 bit x 60 MHz = 480 MB/s -> 316.7 ns > 232 ns processing.
    """
    g = _conv_graph(C=2, H=4, M=2, R=3)
    c = eyeriss.plan_with(_layer(g, "conv"), dict(m=2, n=1, e=2, p=2, q=2, r=1, t=1))
    b = c.breakdown
    units = {
        "ifmaps_dram_j": 32 * 200,
        "ifmaps_glb_j": 32 * 6,
        "ifmaps_noc_j": 48 * 2,
        "ifmaps_rf_j": 144,
        "weights_dram_j": 36 * 200,
        "weights_glb_j": 36 * 6,
        "weights_noc_j": 72 * 2,
        "weights_rf_j": 144,
        "psums_dram_j": 8 * 200,
        "psums_glb_j": 0,
        "psums_noc_j": 16 * 2,
        "psums_rf_j": 240,
        "mac_j": 144,
    }
    for key, u in units.items():
        assert b[key] == pytest.approx(u * PJ, rel=1e-12, abs=1e-30), key
    assert c.energy_j == pytest.approx(16552 * PJ, rel=1e-12)
    assert b["rf_j"] == pytest.approx(528 * PJ) and b["dram_j"] == pytest.approx(76 * 200 * PJ)
    assert b["processing_s"] == pytest.approx((24 * 7 / 6 * 4 / 3 + 9) / 200e6)
    assert b["compute_s"] == pytest.approx(24 / 200e6)
    assert b["dram_s"] == pytest.approx(152 / 480e6)
    assert c.latency_s == pytest.approx(152 / 480e6)
    assert b["active_pes"] == 6 and b["passes"] == 1
    assert c.note == "m=2 n=1 e=2 p=2 q=2 r=1 t=1 · 6 PEs · DRAM-bound"


def test_zero_ifmaps_save_energy_not_cycles(eyeriss):
    """The same layer with half the ifmaps zero: the chip gates, it does not skip.

    MACs and filter-spad reads halve (144 -> 72 each); the ifmap crosses DRAM run-length
    coded: 32 * (4/3) / ((1 - 0.5**32)/0.5) = 21.33 words. Energy = 16552 - 72 - 72
    - (32 - 21.33) * 200 = 14274.67 units; cycles unchanged.
    """
    g = _conv_graph(C=2, H=4, M=2, R=3)
    mp = dict(m=2, n=1, e=2, p=2, q=2, r=1, t=1)
    dense = eyeriss.plan_with(_layer(g, "conv"), mp)
    sparse = eyeriss.plan_with(_layer(g, "conv", act_density=0.5), mp)
    rlc_words = 32 * (4 / 3) / ((1 - 0.5**32) / 0.5)
    assert sparse.energy_j == pytest.approx((16552 - 144 - (32 - rlc_words) * 200) * PJ, rel=1e-9)
    assert sparse.breakdown["mac_j"] == pytest.approx(72 * PJ)
    assert sparse.breakdown["processing_s"] == dense.breakdown["processing_s"]


def test_hand_computed_fc_as_1x1_conv(eyeriss):
    """Gemm 1x8 @ 8x4, batch 1, as a 1x1 convolution on a 1x1 ifmap.

    Mapping m=4 n=1 e=1 p=4 q=8 r=1 t=1: one PE, 32 MACs.
    ifmaps DRAM 8, GLB 8, NoC 8, RF 32; weights DRAM 32, GLB 32, NoC 32, RF 32;
    psums DRAM 4, GLB 0, NoC 0 (a 1x1 set), RF 2*(8-1)*4 = 56.
    Units = 32 + (32+32+56) + 2*(8+32) + 6*(8+32) + 200*(8+32+4) = 9272.
    Cycles = p*q = 32 MAC cycles + 4 psum adds (one per filter, 32/(q*S)) + 32/4 fill = 44
    -> 220 ns; DRAM 88 B -> 183 ns.
    """
    w = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")
    g = hwcc.load(_model([node], [_vi("x", [1, 8])], [_vi("y", None)], {"w": w}))
    layer = _layer(g, "fc")
    s = layer_shape(layer)
    assert (s.N, s.C, s.M, s.R, s.S, s.E, s.F) == (1, 8, 4, 1, 1, 1, 1)
    c = eyeriss.plan_with(layer, dict(m=4, n=1, e=1, p=4, q=8, r=1, t=1))
    assert c.energy_j == pytest.approx(9272 * PJ, rel=1e-12)
    assert c.breakdown["psums_rf_j"] == pytest.approx(56 * PJ)
    assert c.latency_s == pytest.approx(44 / 200e6)


def test_grouped_conv_runs_group_by_group(eyeriss):
    grouped = eyeriss.cost(_conv_graph(C=8, H=10, M=16, R=3, groups=2)).layer("conv").cost
    single = eyeriss.cost(_conv_graph(C=4, H=10, M=8, R=3)).layer("conv").cost
    assert grouped.energy_j == pytest.approx(2 * single.energy_j, rel=1e-12)
    assert grouped.breakdown["processing_s"] == pytest.approx(2 * single.breakdown["processing_s"])
    assert grouped.note == single.note.replace(" PEs", " PEs · 2 groups")


def test_invalid_mapping_is_rejected(eyeriss):
    layer = _layer(_conv_graph(C=8, H=4, M=2, R=3), "conv")
    with pytest.raises(HwccError, match="ifmap spad"):
        eyeriss.plan_with(layer, dict(m=2, n=1, e=2, p=1, q=5, r=1, t=2))  # q*S = 15 > 12


# ---------------------------------------------------------------------- graph handling
def test_host_fusion_and_output_density(eyeriss):
    """lone ReLU -> Conv -> ReLU (fused) -> MaxPool (host) -> Flatten -> Gemm -> ReLU -> Softmax."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Relu", ["x"], ["x1"], name="relu0"),
        helper.make_node("Conv", ["x1", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["c1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["c1"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw"], ["z"], name="fc"),
        helper.make_node("Relu", ["z"], ["z1"], name="relu2"),
        helper.make_node("Softmax", ["z1"], ["y"], name="soft"),
    ]
    inits = {
        "w": rng.normal(size=(8, 4, 3, 3)).astype(np.float32),
        "fw": rng.normal(size=(8 * 4 * 4, 10)).astype(np.float32),
    }
    g = hwcc.load(_model(nodes, [_vi("x", [1, 4, 8, 8])], [_vi("y", None)], inits))
    gc = eyeriss.cost(g, CostContext(act_density={"pool": 0.3}))
    on = {x.layer.name: x.on for x in gc.layers}
    assert on["pool"] == on["soft"] != eyeriss.name
    assert all(on[n] == eyeriss.name for n in ("relu0", "conv", "relu1", "flat", "fc", "relu2"))
    for n in ("relu1", "relu2", "flat"):
        assert gc.layer(n).cost.energy_j == 0 and gc.layer(n).cost.latency_s == 0
    assert gc.host_latency_s == pytest.approx(2e-3)
    # The conv writes its ReLU'd output at the pool's input density (0.3): 8*8*8 values coded.
    conv = gc.layer("conv").cost.breakdown
    assert conv["dram_psums_bytes"] == pytest.approx(8 * 8 * 8 * 2 * rlc_ratio(0.3, (5, 16, 3, 64)))
    # A lone ReLU streams its 256 values DRAM -> ReLU module -> DRAM: 512 words, 2*256 GLB.
    relu0 = gc.layer("relu0").cost
    assert relu0.energy_j == pytest.approx((512 * 200 + 512 * 6) * PJ)
    assert relu0.latency_s == pytest.approx(512 * 2 / 480e6)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        (dict(C=4, H=12, M=4, R=3, dilation=2), "dilated"),
        (dict(C=4, H=12, M=4, R=3, stride=3), "stride 3x3"),
        (dict(C=4, H=16, M=4, R=13), "filter height 13"),
    ],
)
def test_unsupported_convs_run_on_the_host(eyeriss, kwargs, reason):
    g = _conv_graph(**kwargs)
    layer = analyze(g).layer("conv")
    assert reason in eyeriss.supports(layer)
    assert eyeriss.cost(g).layer("conv").on != eyeriss.name
    with pytest.raises(HwccError, match=reason):
        eyeriss.mapping_for(layer)


def test_mapping_for(eyeriss):
    layer = _layer(_conv_graph(C=8, H=10, M=16, R=3, groups=2), "conv", batch=4)
    m = eyeriss.mapping_for(layer)
    assert set(m) >= set("mnepqrt") | {"active_pes", "passes", "groups", "processing_cycles"}
    assert (
        m["groups"] == 2
        and check(layer_shape(layer), Mapping(*(m[k] for k in "mnepqrt")), eyeriss.hw) is None
    )


def test_depthwise_and_matmul_of_activations(eyeriss):
    dw = eyeriss.cost(_conv_graph(C=8, H=10, M=8, R=3, groups=8)).layer("conv")
    # one channel per group
    assert dw.on == eyeriss.name and dw.cost.breakdown["active_pes"] <= 3 * 8
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")
    g = hwcc.load(_model([node], [_vi("a", [4, 8]), _vi("b", [8, 4])], [_vi("y", None)], {}))
    assert "two activations" in eyeriss.supports(analyze(g).layer("mm"))


def test_a_bare_workload_fuses_nothing(eyeriss):
    """Without the graph, the ReLU after a conv is priced as a lone one and ofmaps are dense."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    w = np.random.default_rng(3).normal(size=(4, 4, 3, 3)).astype(np.float32)
    g = hwcc.load(_model(nodes, [_vi("x", [1, 4, 6, 6])], [_vi("y", None)], {"w": w}))
    assert eyeriss.cost(g).layer("relu").cost.energy_j == 0
    assert eyeriss.cost(analyze(g)).layer("relu").cost.energy_j > 0


# ---------------------------------------------------------------------- the mapper
def _brute_force(s, hw, dens):
    """Every feasible mapping of a small layer, evaluated (check() is the judge; the loop
    bounds only skip values check() rejects: p <= M, q <= C, r <= C/q, t <= M/p)."""
    cols = {k: [] for k in (*"mnepqrt", "rows_pad", "rows_real")}
    for e, n, p, q in itertools.product(
        range(1, s.E + 1), range(1, s.N + 1), range(1, s.M + 1), range(1, s.C + 1)
    ):
        rows = strip_rows(s, e)
        for r, t in itertools.product(range(1, -(-s.C // q) + 1), range(1, -(-s.M // p) + 1)):
            for m in range(p * t, -(-s.M // (p * t)) * p * t + 1, p * t):
                if check(s, Mapping(m, n, e, p, q, r, t), hw) is None:
                    for k, v in zip(
                        (*"mnepqrt", "rows_pad", "rows_real"), (m, n, e, p, q, r, t, *rows)
                    ):
                        cols[k].append(v)
    return evaluate(s, hw, {k: np.array(v) for k, v in cols.items()}, dens)


@pytest.mark.parametrize("dims", [(2, 2, 16, 1, 3, 1), (4, 9, 11, 3, 5, 1), (2, 11, 17, 5, 3, 2)])
def test_search_against_exhaustive_enumeration(eyeriss, dims):
    N, C, M, R, E, U = dims
    H = U * (E - 1) + R
    s = layer_shape(_layer(_conv_graph(C=C, H=H, M=M, R=R, stride=U), "conv", batch=N))
    ev = _brute_force(s, eyeriss.hw, (0.6, 0.4, 1.0))
    best = search(s, eyeriss.hw, (0.6, 0.4, 1.0), "energy")
    assert best.energy == pytest.approx(ev["energy"].min(), rel=1e-12)  # pruning keeps the optimum
    edp = search(s, eyeriss.hw, (0.6, 0.4, 1.0), "edp")
    assert edp.energy * edp.cycles <= (ev["energy"] * ev["cycles"]).min() * 1.01  # within 1 %


# ---------------------------------------------------------------------- estimation settings
def test_paper_estimation_by_hand(eyeriss):
    """The hand-computed layer above with half its weights and half its ifmaps zero.

    chip (as the JSSC chip runs): MACs and filter-spad reads gated by zero ifmaps only,
    144 * 0.5 = 72 each; the ifmap and the weights cross DRAM run-length coded,
    32 * c and 36 * c words with c = (4/3) / ((1 - 0.5**32)/0.5) = 2/3 (to 1e-9);
    ifmap RF 144, psum RF 240 as dense.
      units = MAC 72 + RF (144 + 72 + 240) + NoC 2*136 + GLB 6*68 + DRAM 200*(32c + 36c + 8)
            = 528 + 272 + 408 + 200*(45.333 + 8) = 11874.67
    paper (CVPR 2017): only effectual MACs, 144 * 0.5 * 0.5 = 36, with their RF accesses:
    ifmap 36, weight 36, psum 240 * 0.25 = 60; weights in DRAM compressed, 36 * 0.5 = 18.
      units = 36 + (36 + 36 + 60) + 272 + 408 + 200*(32c + 18 + 8) = 848 + 200*47.333
            = 10314.67
    """
    g = _conv_graph(C=2, H=4, M=2, R=3)
    layer = dataclasses.replace(_layer(g, "conv", act_density=0.5), weight_density=0.5)
    mp = dict(m=2, n=1, e=2, p=2, q=2, r=1, t=1)
    chip = eyeriss.plan_with(layer, mp)
    paper = eyeriss.with_estimation("paper").plan_with(layer, mp)
    c = (4 / 3) / ((1 - 0.5**32) / 0.5)
    assert chip.energy_j == pytest.approx((1208 + 200 * (68 * c + 8)) * PJ, rel=1e-9)
    assert paper.energy_j == pytest.approx((848 + 200 * (32 * c + 18 + 8)) * PJ, rel=1e-9)
    assert chip.breakdown["mac_j"] == pytest.approx(72 * PJ)
    assert paper.breakdown["mac_j"] == pytest.approx(36 * PJ)
    assert paper.breakdown["psums_rf_j"] == pytest.approx(60 * PJ)
    assert paper.breakdown["weights_dram_j"] == pytest.approx(18 * 200 * PJ)
    assert paper.breakdown["processing_s"] == chip.breakdown["processing_s"]  # same cycles


def test_estimation_settings_agree_on_dense_layers(eyeriss):
    """Dense weights and dense ifmaps: every MAC is effectual and nothing compresses, so
    both settings count the same, for the hand-computed layer and for a searched one."""
    paper = eyeriss.with_estimation("paper")
    assert paper.estimation == "paper" and eyeriss.estimation == "chip"
    g = _conv_graph(C=2, H=4, M=2, R=3)
    mp = dict(m=2, n=1, e=2, p=2, q=2, r=1, t=1)
    assert paper.plan_with(_layer(g, "conv"), mp).energy_j == pytest.approx(16552 * PJ, rel=1e-12)
    g = _conv_graph(C=16, H=20, M=24, R=3, pad=1)
    a, b = eyeriss.cost(g).layer("conv").cost, paper.cost(g).layer("conv").cost
    assert a.energy_j == pytest.approx(b.energy_j, rel=1e-12) and a.note == b.note
    assert a.breakdown == pytest.approx(b.breakdown, rel=1e-12)
    # Sparse ifmaps: the chip still reads the zeros from the ifmap spad and moves their
    # psums through the psum spad; the paper's count skips them.
    sparse = CostContext(act_density=0.4)
    assert eyeriss.cost(g, sparse).energy_j != pytest.approx(paper.cost(g, sparse).energy_j)


def test_bad_estimation_is_an_error(tmp_path):
    text = (Path(hwcc.targets.__file__).parent / "eyeriss" / "eyeriss.toml").read_text()
    (tmp_path / "e.toml").write_text(text.replace('estimation = "chip"', 'estimation = "guess"'))
    with pytest.raises(HwccError, match="estimation must be 'chip' or 'paper'"):
        load_target(tmp_path / "e.toml")


# ---------------------------------------------------------------------- independence from the cpu
@register_family("test_cpu_table_for_eyeriss")
class _TableCPU(Target):
    """A stand-in for the measured cpu: every layer at ``scale`` x its work (a table built on
    a fast or a slow day)."""

    def cost_layer(self, layer, ctx):
        k = float(self.params["scale"]) * (layer.macs + layer.ops + 1)
        return Cost(k * 1e-9, k * 1e-9)


def _compiled_with_cpu_table(tmp_path, monkeypatch, scale):
    toml = tmp_path / f"cpu-{scale:g}.toml"
    toml.write_text(
        'family = "test_cpu_table_for_eyeriss"\nprovenance = "measured"\n'
        f"[params]\nscale = {scale}\n"
    )
    files = {**base._target_files(), "cpu": toml}
    monkeypatch.setattr(base, "_target_files", lambda: files)
    assert load_target("cpu").params["scale"] == scale
    r = hwcc.compile(
        "zoo:lenet5-digits", "eyeriss", "1J", data="zoo:digits", seed=0, long_term_steps=0
    )
    return r.summary


def test_compiling_lenet5_twice_with_different_cpu_tables_gives_identical_energies(
    tmp_path, monkeypatch
):
    """Issue 16's must-show: the Eyeriss system (chip and its embedded host, host-45nm) is
    priced from energies, so two cpu tables 1000x apart change nothing, to the bit."""
    a = _compiled_with_cpu_table(tmp_path, monkeypatch, 1.0)
    b = _compiled_with_cpu_table(tmp_path, monkeypatch, 1000.0)
    for when in ("original", "final"):
        for key in ("energy_j", "chip_energy_j", "latency_s"):
            assert getattr(a, when)[key] == getattr(b, when)[key], (when, key)
    assert a.original["energy_j"] > a.original["chip_energy_j"] > 0  # the host's share apart
