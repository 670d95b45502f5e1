"""The issue's must-show compile runs, all slow: lenet5 on this CPU halves the measured
latency within one point of accuracy, half the target cost with its payload on EIE,
Eyeriss and the TPU, and lenet5 on the GPU model."""

from __future__ import annotations

import pytest
from compile_runs import read_summary as _summary

from hwcc.cli.commands import main


# ---------------------------------------------------------------------- the must-show runs
def _run_cli(tmp_path, *argv) -> tuple[int, dict]:
    out = tmp_path / "art"
    code = main(["compile", *argv, "--data", "zoo:digits", "-o", str(out)])
    return code, _summary(out)


@pytest.mark.slow
def test_lenet5_on_this_cpu_halves_the_measured_latency_within_one_point(tmp_path):
    code, s = _run_cli(tmp_path, "zoo:lenet5-digits", "--target", "cpu", "--budget", "50%")
    m = s["measured"]
    assert code == 0 and s["budget_met"]
    assert m["final_latency_s"] <= 0.5 * m["original_latency_s"]
    assert s["original"]["accuracy"] - s["final"]["accuracy"] <= 0.01


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, target, metric",
    [
        ("zoo:lenet300-digits", "eie", "latency_s"),
        ("zoo:lenet5-digits", "eyeriss", "energy_j"),
        ("zoo:lenet5-digits", "tpu", "latency_s"),
    ],
)
def test_half_the_target_cost_with_its_payload(tmp_path, model, target, metric):
    code, s = _run_cli(tmp_path, model, "--target", target, "--budget", "50%")
    assert code == 0 and s["budget_met"]
    assert s["budgets"][0]["metric"] == metric
    assert s["final"][metric] <= 0.5 * s["original"][metric]
    assert s["final"]["accuracy"] is not None and s["payload"]


@pytest.mark.slow
def test_lenet5_on_the_gpu_model(tmp_path):
    code, s = _run_cli(tmp_path, "zoo:lenet5-digits", "--target", "gpu", "--budget", "90%")
    assert code == 0 and s["final"]["latency_s"] <= 0.9 * s["original"]["latency_s"]
    assert s["final"]["accuracy"] is not None
