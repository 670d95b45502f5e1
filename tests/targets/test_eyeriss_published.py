"""Eyeriss target against the published figures: the AlexNet layers' mappings, latency,
DRAM traffic and chip energy, and GoogLeNet's energy split by data type.

Published figures (copied here; the tests do not read the reference files):

* JSSC 2017 = Chen, Krishna, Emer, Sze, "Eyeriss: An Energy-Efficient Reconfigurable
  Accelerator for Deep CNNs", IEEE JSSC 52(1). Table III: AlexNet CONV1-5 shapes and
  mappings; Table V: per-layer results at batch 4, 200 MHz core, 60 MHz link.
* CVPR 2017 = Yang, Chen, Sze, "Designing Energy-Efficient CNNs using Energy-Aware
  Pruning", Fig. 1: GoogLeNet energy by data type.
"""

from __future__ import annotations

import time

import pytest
from eyeriss_graphs import PJ, _conv_graph, _layer

import hwcc
from hwcc.ir.workload import analyze
from hwcc.targets.base import CostContext, load_target
from hwcc.targets.eyeriss.mapper import (
    Mapping,
    check,
    plan_of,
    rlc_ratio,
    search,
    vertical_sets,
)
from hwcc.targets.eyeriss.published import (
    ACTIVE_PES,
    ALEXNET,
    BATCH,
    DRAM_MB,
    GOOGLENET_SPLIT,
    OFMAP_DENSITY,
    POWER_MW,
    PROCESSING_MS,
    TOTAL_MS,
    ZEROS_IN_IFMAPS,
)
from hwcc.targets.eyeriss.target import EyerissContext, layer_shape


# --------------------------------------------------------------------- the published AlexNet layers
@pytest.fixture(scope="module")
def alexnet_layers():
    """JSSC Table III shapes as one-node graphs, scaled to batch 4, with Table V densities."""
    out = {}
    for name, ((C, H, M, R, stride, pad, groups), _) in ALEXNET.items():
        g = _conv_graph(C, H, M, R, stride, pad, groups, name=name)
        out[name] = (g, _layer(g, name, BATCH, act_density=1 - ZEROS_IN_IFMAPS[name]))
    return out


def _ctx(name):
    return EyerissContext(
        batch=BATCH, act_density=1 - ZEROS_IN_IFMAPS[name], out_density={name: OFMAP_DENSITY[name]}
    )


def test_table_iii_mappings_fit_and_give_published_active_pes(eyeriss, alexnet_layers, report_line):
    for name, (_, mapping) in ALEXNET.items():
        layer = alexnet_layers[name][1]
        mp = dict(zip("mnepqrt", mapping))
        assert check(layer_shape(layer), Mapping(**mp), eyeriss.hw) is None, name
        c = eyeriss.plan_with(layer, mp, _ctx(name))
        assert c.breakdown["active_pes"] == ACTIVE_PES[name], name
        assert c.note.startswith(
            " ".join(f"{k}={v}" for k, v in mp.items()) + f" · {ACTIVE_PES[name]} PEs"
        )
        report_line(
            f"eyeriss {name} Table III mapping: {int(c.breakdown['active_pes'])} PEs "
            f"(published {ACTIVE_PES[name]}), "
            f"processing {c.breakdown['processing_s'] * 1e3:.2f} ms "
            f"(published {PROCESSING_MS[name]}), DRAM {c.breakdown['dram_bytes'] / 1e6:.2f} MB "
            f"(published {DRAM_MB[name]})"
        )


def test_mapper_matches_published_latency_and_dram(eyeriss, alexnet_layers, report_line):
    """The mapper's own mappings: processing latency within 15 %, DRAM traffic within 25 %
    of JSSC Table V, per layer. Known model gaps (module docstring): per-pass overheads
    beyond the filter fill are not modelled, so latency tends low."""
    for name in ALEXNET:
        g = alexnet_layers[name][0]
        c = eyeriss.cost(g, _ctx(name)).layer(name).cost
        ms, mb = c.breakdown["processing_s"] * 1e3, c.breakdown["dram_bytes"] / 1e6
        err_ms, err_mb = ms / PROCESSING_MS[name] - 1, mb / DRAM_MB[name] - 1
        report_line(
            f"eyeriss {name} mapper [{c.note}]: processing {ms:.2f} ms vs {PROCESSING_MS[name]} "
            f"({100 * err_ms:+.1f} %), "
            f"DRAM {mb:.2f} MB vs {DRAM_MB[name]} ({100 * err_mb:+.1f} %), "
            f"latency_s {c.latency_s * 1e3:.2f} ms vs total {TOTAL_MS[name]}"
        )
        assert abs(err_ms) <= 0.15, (name, ms)
        assert abs(err_mb) <= 0.25, (name, mb)


def test_objectives_against_the_published_mappings(eyeriss, alexnet_layers):
    """Each objective's choice is at least as good as the chip's own mapping by that
    objective; the least-energy CONV2 mapping is far slower than the chip's (why the
    default objective is EDP)."""
    for name, (_, mapping) in ALEXNET.items():
        layer = alexnet_layers[name][1]
        s, dens = layer_shape(layer), (1 - ZEROS_IN_IFMAPS[name], OFMAP_DENSITY[name], 1.0)
        paper = plan_of(s, eyeriss.hw, Mapping(*mapping), dens)
        energy = search(s, eyeriss.hw, dens, "energy")
        edp = search(s, eyeriss.hw, dens, "edp")
        assert energy.energy <= paper.energy * (1 + 1e-12), name
        assert edp.energy * edp.cycles <= paper.energy * paper.cycles * (1 + 1e-12), name
        if name == "CONV2":
            assert energy.cycles > 1.3 * paper.cycles and energy.energy > 0.95 * paper.energy


def test_mapper_is_fast_and_cached(alexnet_layers):
    fresh = load_target("eyeriss")
    start = time.perf_counter()
    first = [fresh.mapping_for(layer) for _, layer in alexnet_layers.values()]
    assert time.perf_counter() - start < 3.0  # typically ~0.3 s for the five layers
    start = time.perf_counter()
    assert [fresh.mapping_for(layer) for _, layer in alexnet_layers.values()] == first
    assert time.perf_counter() - start < 0.1  # cached by shape and densities


def test_energy_scale_against_measured_chip_energy(eyeriss, alexnet_layers, report_line):
    """pj_per_mac is calibrated once: measured chip energy (power x total latency, JSSC
    Table V) over the modelled on-chip units (MAC + RF + NoC + GLB) of the Table III
    mappings. Check the calibration reproduces, how well one scale fits each layer, and
    that DRAM at 200 x pj_per_mac falls in Horowitz's 1.3-2.6 nJ per 64-bit access."""
    chip_j = {n: POWER_MW[n] * 1e-3 * TOTAL_MS[n] * 1e-3 for n in ALEXNET}  # 6.94 ... 2.48 mJ
    model_j = {}
    for name, (_, mapping) in ALEXNET.items():
        c = eyeriss.plan_with(alexnet_layers[name][1], dict(zip("mnepqrt", mapping)), _ctx(name))
        model_j[name] = c.energy_j - c.breakdown["dram_j"]
    pj = PJ * sum(chip_j.values()) / sum(model_j.values())
    assert pj == pytest.approx(eyeriss.params["pj_per_mac"] * 1e-12, rel=0.02)
    for name in ALEXNET:
        err = model_j[name] / chip_j[name] - 1
        report_line(
            f"eyeriss {name} on-chip energy {model_j[name] * 1e3:.2f} mJ vs measured "
            f"{chip_j[name] * 1e3:.2f} mJ ({100 * err:+.1f} %)"
        )
        assert abs(err) <= 0.30, name  # one scale for all; clock and control power not modelled
    assert 1.3e-9 <= 4 * 200 * PJ <= 2.6e-9


# ---------------------------------------------------------------------- zoo models
def _googlenet_split(eyeriss):
    from hwcc import models

    g = hwcc.load(models.model_path("googlenet"))
    layers = analyze(g).layers
    first = next(x.name for x in layers if x.kind == "conv")
    # Conditions chosen before comparing: batch 1 (energy-aware pruning prices one image);
    # the image dense; every other layer's input at the average published AlexNet
    # CONV2-5 density, 1 - 0.575 = 0.425 (JSSC Table V), as GoogLeNet's is not published.
    density = {x.name: 0.425 for x in layers} | {first: 1.0}
    gc = eyeriss.cost(g, CostContext(batch=1, act_density=density))
    here = [x.cost.breakdown for x in gc.layers if x.on == eyeriss.name]
    parts = {k: sum(b.get(k, 0.0) for b in here) for k in GOOGLENET_SPLIT}
    total = sum(parts.values())
    return {k: v / total for k, v in parts.items()}


def test_googlenet_energy_split(eyeriss, report_line):
    """CVPR 2017 Fig. 1: output maps 43 %, input maps 25 %, weights 22 %, compute 10 %.
    Each share within 10 percentage points: the published split comes from the authors'
    own estimation tool with GoogLeNet's measured sparsity, which we do not have."""
    split = _googlenet_split(eyeriss)
    report_line(
        "eyeriss GoogLeNet energy split (psums/ifmaps/weights/compute): "
        + ", ".join(
            f"{100 * split[k]:.1f} % vs {100 * v:.0f} %" for k, v in GOOGLENET_SPLIT.items()
        )
    )
    for k, v in GOOGLENET_SPLIT.items():
        assert abs(split[k] - v) <= 0.10, (k, split[k])


@pytest.mark.slow
def test_zoo_alexnet_through_the_graph(eyeriss, report_line):
    """The same Table V checks on the zoo AlexNet graph: ReLUs fused, LRN and pooling on
    the host, the written densities found through the graph (set on the LRN/pool inputs)."""
    from hwcc import models

    g = hwcc.load(models.model_path("alexnet"))
    layers = analyze(g).layers
    convs = [x.name for x in layers if x.kind in ("conv", "grouped_conv")]
    names = dict(zip(ALEXNET, convs))
    density = {names[n]: 1 - ZEROS_IN_IFMAPS[n] for n in ALEXNET}
    following = OFMAP_DENSITY["CONV5"]  # after CONV5: not published (see OFMAP_DENSITY)
    for x in reversed(layers):  # LRN and pool inputs: the next CONV's ifmap density
        if x.name in density:
            following = density[x.name]
        elif x.kind in ("norm", "pool"):
            density[x.name] = following
    gc = eyeriss.cost(g, CostContext(batch=BATCH, act_density=density))
    for x in gc.layers:
        if x.layer.op_type == "Relu":
            assert x.cost.energy_j == 0 and x.on == eyeriss.name
        if x.layer.kind in ("norm", "pool"):
            assert x.on != eyeriss.name
    for n in ALEXNET:
        c = gc.layer(names[n]).cost
        ms, mb = c.breakdown["processing_s"] * 1e3, c.breakdown["dram_bytes"] / 1e6
        report_line(
            f"eyeriss zoo {n}: {ms:.2f} ms vs {PROCESSING_MS[n]}, {mb:.2f} MB vs {DRAM_MB[n]}"
        )
        assert abs(ms / PROCESSING_MS[n] - 1) <= 0.15 and abs(mb / DRAM_MB[n] - 1) <= 0.25, n


# ------------------------------------------------------------ a network with large maps
# VGG-16's convolution shapes, built here (3x3, stride 1, pad 1), batch 3: (C, M, map).
# No published figure of that network is used: these check the mapping constraints.
VGG_CONVS = [
    (3, 64, 224),
    (64, 64, 224),
    (64, 128, 112),
    (128, 128, 112),
    (128, 256, 56),
    (256, 256, 56),
    (256, 512, 28),
    (512, 512, 28),
    (512, 512, 14),
]


@pytest.fixture(scope="module")
def vgg_costs(eyeriss):
    out = {}
    for C, M, H in VGG_CONVS:
        layer = _layer(_conv_graph(C, H, M, 3, 1, 1), "conv", 3, act_density=0.5)
        out[(C, M, H)] = (layer, eyeriss.cost_layer(layer, EyerissContext(batch=3)))
    return out


def test_large_maps_fit_the_glb_by_narrow_strips_and_few_filters(eyeriss, vgg_costs, report_line):
    """On 224x224 maps a block of psums, n*m*e*F*2 B, must share the 100 KB GLB with the
    ifmap rows, n*q*r*(e-1+R)*W*2 B (JSSC Table III's footprints): the mapper takes narrow
    strips and few ofmap channels per block, m < M, so each ifmap is read from DRAM
    ceil(M/m) times; sets of different channels stack in one column (r <= 4 for R = 3).

    Hand-computed for (C, M) = (64, 64) at 224: the mapping found is
    m=24 n=1 e=7 p=6 q=3 r=2 t=4 (168 PEs); psums 24*7*224 = 37632 words = 19 banks of
    2048, ifmaps 3*2*9*226 = 12204 words = 6 banks: 25 banks, the whole GLB. Per pass the
    psums leave at t*e/(q*S) = 28/9 = 3.1 words a cycle (the GON carries 4) and the ifmaps
    arrive at r*(e+2)*W/(p*S*F) = 4068/4032 = 1.009 (the ifmap GIN carries 1: the pass is
    stretched 0.9 %); each output position costs q*S = 9 MAC cycles + 1 psum add:
    5.55 G MACs / 168 = 33.03 M MAC cycles * 10/9 * 1.009 = 37.03 M, + the filter fills,
    3 images * 32 strips * 36864 words / 4 a cycle = 0.88 M.
    Utilisation = MACs / (168 * cycles) = 33.03 / 37.91 = 0.871.
    """
    for (C, M, H), (layer, c) in vgg_costs.items():
        b = c.breakdown
        mp = {k: int(b[f"map_{k}"]) for k in "mnepqrt"}
        psum_b = mp["n"] * mp["m"] * mp["e"] * H * 2
        ifmap_b = mp["n"] * mp["q"] * mp["r"] * (mp["e"] + 2) * (H + 2) * 2
        assert psum_b + ifmap_b <= 100 * 1024
        assert mp["r"] <= vertical_sets(3, mp["e"], eyeriss.hw)
        report_line(
            f"eyeriss VGG-16-like {C}->{M} at {H}x{H}, batch 3: {c.note}, utilisation "
            f"{b['utilisation']:.2f}, processing {b['processing_s'] * 1e3:.1f} ms"
        )
    layer, c = vgg_costs[(64, 64, 224)]
    b = c.breakdown
    assert {k: b[f"map_{k}"] for k in "mnepqrt"} == dict(m=24, n=1, e=7, p=6, q=3, r=2, t=4)
    macs = 3 * 64 * 64 * 9 * 224 * 224
    cycles = macs / 168 * (1 + 1 / 9) * (2 * 9 * 226) / (6 * 3 * 224) + 3 * 32 * 64 * 64 * 9 / 4
    assert b["processing_s"] == pytest.approx(cycles / 200e6, rel=1e-3)
    assert b["utilisation"] == pytest.approx(0.871, abs=0.002)
    # ifmaps read ceil(64/24) = 3 times from DRAM (halo rows of each 7-row strip again)
    assert b["dram_ifmaps_bytes"] > 3 * 3 * 64 * 224 * 224 * 2 * rlc_ratio(0.5, eyeriss.hw.rlc)


def test_large_maps_keep_the_array_busy_unlike_the_chip(vgg_costs):
    """What the published constraints give on large maps: utilisation within 0.80-0.92 on
    every layer with 64 channels or more, however large the map (on 224x224 maps the GLB
    costs DRAM traffic, not PE time); only the 3-channel first layer cannot fill the array.
    The chip is reported to run large-map layers at a fraction of this; none of the
    constraints modelled (spads, array, vertical psum chains, 100 KB GLB, 16-bit ifmap GIN,
    64-bit GON, filter fills) explains that, so the model stays optimistic there (BENCHMARKS)."""
    util = {k: c.breakdown["utilisation"] for k, (_, c) in vgg_costs.items()}
    for (C, M, H), u in util.items():
        if C >= 64:
            assert 0.80 <= u <= 0.92, (C, M, H, u)
    assert util[(3, 64, 224)] < 0.7
