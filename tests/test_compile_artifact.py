"""hwcc compile end to end, one uninterrupted run and its artifact: the budget met, the
model and its reported accuracy in onnxruntime, the payload and report; the CLI giving
the API's result; and resume, after a KeyboardInterrupt and (slow) after a SIGKILL, to
the same result, refusing another run's checkpoint.

The fast tests compile lenet300-digits (a 784-300-100-10 MLP on 8x8 digits) with short
fine-tunes (tests/compile_runs.py)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from compile_runs import FAST, FAST_FLAGS
from compile_runs import read_summary as _summary

import hwcc
from hwcc.cli.commands import main
from hwcc.ir.verify import run_onnx


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: lenet300-digits on Eyeriss to 80 % of its energy."""
    out = tmp_path_factory.mktemp("ref") / "art"
    result = hwcc.compile(
        "zoo:lenet300-digits", "eyeriss", "80%", data="zoo:digits", output=out, seed=3, **FAST
    )
    return result, out


def test_compile_meets_the_budget_and_writes_the_artifact(reference):
    result, out = reference
    s = _summary(out)
    assert result.exit_code == 0 and s["budget_met"] and result.budget_met
    limit = s["budgets"][0]["limit"]
    assert s["budgets"][0]["metric"] == "energy_j"  # Eyeriss's primary metric
    assert limit == pytest.approx(0.8 * s["original"]["energy_j"], rel=1e-12)
    assert s["final"]["energy_j"] <= limit
    assert s["timing"]["iterations"] == len(s["history"]) >= 1
    for key in (
        "input",
        "target",
        "budgets",
        "original",
        "final",
        "layers",
        "history",
        "proposals",
        "payload",
    ):
        assert key in s
    assert s["input"]["sha256"] and len(s["input"]["data_sha256"]) == 64
    for h in s["history"]:
        assert {"layer", "pass", "delta_latency_s", "delta_energy_j", "delta_accuracy"} <= set(h)
    # the model runs in onnxruntime, and its accuracy is the one reported
    from hwcc.models.digits import load_split

    x, y = load_split("test")
    graph = hwcc.load(out / "model.onnx")
    pred = [int(np.argmax(run_onnx(graph, {"input": x[i : i + 1]})[0])) for i in range(len(y))]
    assert np.mean(np.array(pred) == y) == pytest.approx(s["final"]["accuracy"], abs=1e-12)
    # the payload is there, and the report names it; nothing temporary is left behind
    assert s["payload"] and all((out / f).is_file() for f in s["payload"])
    assert "<svg" in (out / "report.html").read_text()
    assert not Path(f"{out}.checkpoint").exists()
    assert [p.name for p in out.parent.iterdir()] == ["art"]
    assert result.metrics["energy_j"] == s["final"]["energy_j"]


def test_the_cli_gives_the_same_result_as_the_api(reference, tmp_path, capsys):
    _, ref = reference
    out = tmp_path / "cli"
    code = main(
        [
            "compile",
            "zoo:lenet300-digits",
            "--target",
            "eyeriss",
            "--budget",
            "80%",
            "--data",
            "zoo:digits",
            "-o",
            str(out),
            "--seed",
            "3",
            *FAST_FLAGS,
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert _sha(out / "model.onnx") == _sha(ref / "model.onnx")
    a, b = _summary(out), _summary(ref)
    for key in ("original", "final", "history", "proposals", "budgets", "layers"):
        assert a[key] == b[key], key
    assert "every budget met" in printed and str(out / "report.html") in printed


def test_a_killed_run_resumes_to_the_same_result(reference, tmp_path):
    _, ref = reference
    out = tmp_path / "art"
    seen = []

    def stop_after_one(kind, info):  # killed once the first iteration is checkpointed
        if kind == "picked":
            seen.append(info["state"].iteration)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hwcc.compile(
            "zoo:lenet300-digits",
            "eyeriss",
            "80%",
            data="zoo:digits",
            output=out,
            seed=3,
            progress=stop_after_one,
            **FAST,
        )
    ckpt = Path(f"{out}.checkpoint")
    assert (ckpt / "state.json").is_file() and not out.exists()
    assert json.loads((ckpt / "state.json").read_text())["state"]["iteration"] == 1 == seen[0]
    with pytest.raises(hwcc.HwccError, match="--resume"):  # not silently restarted
        hwcc.compile(
            "zoo:lenet300-digits", "eyeriss", "80%", data="zoo:digits", output=out, seed=3, **FAST
        )
    resumed = hwcc.compile(
        "zoo:lenet300-digits",
        "eyeriss",
        "80%",
        data="zoo:digits",
        output=out,
        seed=3,
        resume=True,
        **FAST,
    )
    assert resumed.exit_code == 0
    assert _sha(out / "model.onnx") == _sha(ref / "model.onnx")
    assert _summary(out)["history"] == _summary(ref)["history"]
    assert not ckpt.exists()


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    out = tmp_path / "art"

    def stop(kind, info):
        if kind == "picked":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hwcc.compile(
            "zoo:lenet300-digits",
            "eyeriss",
            "80%",
            data="zoo:digits",
            output=out,
            progress=stop,
            **FAST,
        )
    with pytest.raises(hwcc.HwccError, match="different run.*budgets"):
        hwcc.compile(
            "zoo:lenet300-digits",
            "eyeriss",
            "70%",
            data="zoo:digits",
            output=out,
            resume=True,
            **FAST,
        )


@pytest.mark.slow
def test_a_run_killed_by_a_signal_resumes_to_the_same_result(tmp_path):
    args = [
        "zoo:lenet300-digits",
        "--target",
        "eie",
        "--budget",
        "50%",
        "--data",
        "zoo:digits",
        "--seed",
        "5",
        "--short-term-steps",
        "10",
        "--long-term-steps",
        "10",
    ]
    ref = tmp_path / "ref"
    assert main(["compile", *args, "-o", str(ref)]) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "hwcc", "compile", *args, "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = Path(f"{out}.checkpoint") / "state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["state"]["iteration"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert main(["compile", *args, "-o", str(out), "--resume"]) == 0
    assert _sha(out / "model.onnx") == _sha(ref / "model.onnx")
    assert _summary(out)["history"] == _summary(ref)["history"]
