"""The EIE target against the published per-layer times (Han et al., ISCA 2016, Table
III and Table IV): actual and theoretical time, load-balance efficiency, every row within
25 %, and the densities reaching the model."""

from __future__ import annotations

import numpy as np
import pytest
from eie_graphs import fc

from hwcc.targets.base import CostContext, load_target

# ---------------------------------------------------------------------- published figures
# Han et al., ISCA 2016: Table III (size, weight %, activation %) and Table IV (EIE
# theoretical and actual time in µs, batch 1, 64 PEs, 800 MHz). W is rows = outputs.
PAPER = {  # name: (rows, cols, weight density, act density, theoretical µs, actual µs)
    "Alex-6": (4096, 9216, 0.09, 0.351, 28.1, 30.3),
    "Alex-7": (4096, 4096, 0.09, 0.353, 11.7, 12.2),
    "Alex-8": (1000, 4096, 0.25, 0.375, 8.9, 9.9),
    "NT-We": (600, 4096, 0.10, 1.0, 5.2, 8.0),
    "NT-Wd": (8791, 600, 0.11, 1.0, 13.0, 13.9),
}
LATENCY_RTOL = 0.15  # actual time, per layer
THEORY_RTOL = 0.15  # theoretical time, per layer
BALANCE_RTOL = 0.10  # load-balance efficiency = theoretical / actual
# measured misses, reported rather than tuned away (see the module docstring of eie.py)
MISSES = {
    ("Alex-8", "latency"): (
        "model 8.0 us vs 9.9 us (-19 %): random 25 %-dense weights need no padding, "
        "while the paper's own theoretical time is 19 % above nnz·act/(64·f)"
    ),
    ("Alex-8", "theory"): "model 7.5 us vs 8.9 us (-16 %): same cause",
}


@pytest.fixture(scope="module")
def paper_costs():
    t = load_target("eie")
    out = {}
    for i, (name, (rows, cols, wd, ad, _, _)) in enumerate(PAPER.items()):
        rng = np.random.default_rng(1000 + i)
        W = np.zeros((rows, cols), np.float16)
        nz = np.flatnonzero(rng.random((rows, cols), dtype=np.float32) < wd)
        W.flat[nz] = rng.standard_normal(len(nz), dtype=np.float32)
        out[name] = t.cost(fc(W, dtype=np.float16), CostContext(act_density=ad)).layer("fc")
    return out


def _check(paper_costs, report_line, name, what, value, published, rtol):
    err = value / published - 1
    report_line(f"EIE {name} {what}: {value:.3g} vs paper {published:.3g} ({err:+.1%})")
    if (name, what) in MISSES:
        if abs(err) <= rtol:
            pytest.fail(f"{name} {what} is now within {rtol:.0%}: remove it from MISSES")
        pytest.xfail(MISSES[(name, what)])
    assert abs(err) <= rtol


@pytest.mark.parametrize("name", PAPER)
def test_paper_actual_time(paper_costs, report_line, name):
    c = paper_costs[name].cost
    assert c.breakdown["sram_fits"] == 1 and c.breakdown["vectors"] == 1
    _check(
        paper_costs, report_line, name, "latency", c.latency_s * 1e6, PAPER[name][5], LATENCY_RTOL
    )


@pytest.mark.parametrize("name", PAPER)
def test_paper_theoretical_time(paper_costs, report_line, name):
    theory = paper_costs[name].cost.breakdown["theoretical_s"] * 1e6
    _check(paper_costs, report_line, name, "theory", theory, PAPER[name][4], THEORY_RTOL)


@pytest.mark.parametrize("name", PAPER)
def test_paper_load_balance_efficiency(paper_costs, report_line, name):
    published = PAPER[name][4] / PAPER[name][5]
    balance = paper_costs[name].cost.breakdown["load_balance_efficiency"]
    _check(paper_costs, report_line, name, "balance", balance, published, BALANCE_RTOL)


ROW_RTOL = 0.25  # issue 16: every published EIE row, actual time


def test_every_published_row_within_25_percent(paper_costs, report_line):
    # Every Table IV row this project holds, actual time, one list: the rows the model was
    # checked on. Before and after the storage fix (the same for these five: it changes only
    # layers whose pointers exceed the pointer SRAM): Alex-6 -5.4 %, Alex-7 +5.9 %, Alex-8
    # -18.1 %, NT-We -13.0 %, NT-Wd -4.1 %.
    errors = {name: paper_costs[name].cost.latency_s * 1e6 / PAPER[name][5] - 1 for name in PAPER}
    table = ", ".join(f"{n} {e:+.1%}" for n, e in errors.items())
    report_line(f"EIE actual time vs Table IV: {table}")
    assert all(paper_costs[n].cost.breakdown["sram_fits"] == 1 for n in PAPER)
    assert all(abs(e) <= ROW_RTOL for e in errors.values()), table


@pytest.mark.parametrize("name", PAPER)
def test_paper_densities_reach_the_model(paper_costs, name):
    # the weight density is read from the synthetic matrix's zeros, the activation density
    # comes from the context; the MACs simulated are rows · cols · weight % · act %
    rows, cols, wd, ad, _, _ = PAPER[name]
    layer, cost = paper_costs[name].layer, paper_costs[name].cost
    assert layer.weight_density == pytest.approx(wd, abs=0.002) and layer.act_density == ad
    assert cost.breakdown["broadcasts_per_vector"] == round(ad * cols)
    assert cost.breakdown["macs_per_vector"] == pytest.approx(rows * cols * wd * ad, rel=0.02)
    # 4096 activations per register file (64 PEs · 64): Alex-6's 9216 inputs come in 3 chunks,
    # NT-Wd's 8791 outputs in 3 row tiles
    assert cost.breakdown["input_chunks"] == -(-cols // 4096)
    assert cost.breakdown["row_tiles"] == -(-rows // 4096)
