"""hwcc compile end to end: the API, the CLI, the artifact, resume, honesty, errors.

The fast tests compile lenet300-digits (a 784-300-100-10 MLP on 8x8 digits) with short
fine-tunes; the must-show runs of the issue (lenet5 on every target, CPU measured) are slow.
"""

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

import hwcc
from hwcc.cli.commands import main
from hwcc.ir.verify import run_onnx

FAST = {"short_term_steps": 8, "long_term_steps": 8, "max_iterations": 4}
FAST_FLAGS = ["--short-term-steps", "8", "--long-term-steps", "8", "--max-iterations", "4"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _summary(folder: Path) -> dict:
    return json.loads((folder / "hwcc.json").read_text())


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

    def stop_after_two(kind, info):
        if kind == "picked":
            seen.append(info["state"].iteration)
            if len(seen) == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hwcc.compile(
            "zoo:lenet300-digits",
            "eyeriss",
            "80%",
            data="zoo:digits",
            output=out,
            seed=3,
            progress=stop_after_two,
            **FAST,
        )
    ckpt = Path(f"{out}.checkpoint")
    assert (ckpt / "state.json").is_file() and not out.exists()
    assert json.loads((ckpt / "state.json").read_text())["state"]["iteration"] == 2
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


def test_an_unreachable_budget_saves_the_best_model_and_exits_3(tmp_path, capsys):
    out = tmp_path / "art"
    # the GPU model charges a launch per kernel: pruning cannot take 90 % of the latency away
    code = main(
        [
            "compile",
            "zoo:lenet300-digits",
            "--target",
            "gpu",
            "--budget",
            "10%",
            "--data",
            "zoo:digits",
            "-o",
            str(out),
            *FAST_FLAGS,
        ]
    )
    captured = capsys.readouterr()
    assert code == 3
    s = _summary(out)
    assert not s["budget_met"] and s["final"]["latency_s"] > s["budgets"][0]["limit"]
    assert s["final"]["latency_s"] <= s["original"]["latency_s"]
    assert "NOT MET" in captured.out and "exit code 3" in captured.out


def test_without_data_it_warns_that_accuracy_is_fidelity_on_noise(tmp_path, capsys):
    code = main(
        [
            "compile",
            "zoo:lenet300-digits",
            "--target",
            "eie",
            "--budget",
            "90%",
            "-o",
            str(tmp_path / "a"),
            "--json",
            *FAST_FLAGS,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "warning: no --data given" in captured.err
    summary = json.loads(captured.out)
    assert summary["exit_code"] == 0 and "agreement with the original" in summary["accuracy_kind"]
    assert any("no --data" in w for w in summary["warnings"])


def test_two_budgets_must_both_hold(tmp_path):
    r = hwcc.compile(
        "zoo:lenet300-digits", "eie", ["90%latency", "60%size"], data="zoo:digits", **FAST
    )
    s = r.summary.to_json()
    assert {b["metric"] for b in s["budgets"]} == {"latency_s", "size_bytes"}
    assert all(b["met"] for b in s["budgets"])
    assert s["final"]["size_bytes"] <= 0.6 * s["original"]["size_bytes"]


def test_a_measured_miss_sends_the_search_back_to_work(monkeypatch):
    """A measured target whose measurements come out 30 % above its predictions: the
    predicted budget is not enough, the loop continues until the measurement meets it."""
    from hwcc.targets.base import load_target

    target = load_target("eyeriss")
    target.provenance = "measured"
    calls = []

    def measure(graphs):
        calls.append(len(graphs))
        original, final = (target.price(g).latency_s for g in graphs)
        return [original, 1.3 * final]

    target.measure_latency = measure
    monkeypatch.setattr("hwcc.api.load_target", lambda name: target)
    r = hwcc.compile(
        "zoo:lenet300-digits",
        "eyeriss",
        "70%latency",
        data="zoo:digits",
        **{**FAST, "max_iterations": 20},
    )
    s = r.summary.to_json()
    assert calls and s["honesty_rounds"], "the first final model missed when measured"
    assert s["measured"]["final_latency_s"] <= 0.7 * s["measured"]["original_latency_s"]
    assert s["budget_met"] and r.exit_code == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "eie"], "no budget given"),
        (["--target", "eie", "--budget", "5 parsecs"], "cannot read budget"),
        (["--target", "eie", "--budget", "50%", "--passes", "quantize"], "legal form"),
        (["--target", "eie", "--budget", "50%", "--max-accuracy-drop", "lots"], "not a number"),
        (["--target", "eie", "--budget", "50%", "--data", "missing.npz"], "not found"),
        (["--target", "nope", "--budget", "50%"], "nope"),
        (["--target", "eie", "--budget", "50%", "--resume"], "no checkpoint"),
    ],
)
def test_bad_input_exits_2_with_a_message(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["compile", "zoo:lenet300-digits", "-o", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_is_not_an_artifact_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    code = main(
        [
            "compile",
            "zoo:lenet300-digits",
            "--target",
            "eie",
            "--budget",
            "50%",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2 and "will not be overwritten" in capsys.readouterr().err
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_labelled_data_is_split_with_the_seed(tmp_path):
    from hwcc.models.digits import load_split

    from hwcc.data.evaluate import load_dataset, split_dataset

    g = hwcc.load("zoo:lenet300-digits")
    x, y = load_split("train")
    data = load_dataset(g, {"input": x, "labels": y})
    a1, h1 = split_dataset(data, 0.2, seed=1)
    a2, h2 = split_dataset(data, 0.2, seed=1)
    _, h3 = split_dataset(data, 0.2, seed=2)
    assert (
        np.array_equal(h1.labels, h2.labels) and h1.sha256 == h2.sha256 and h1.sha256 != h3.sha256
    )
    assert len(a1) + len(h1) == len(data) and abs(len(h1) - 0.2 * len(data)) <= 10
    for c in range(10):  # stratified: every class keeps its share
        assert abs(np.mean(h1.labels == c) - np.mean(y == c)) < 0.02
    with pytest.raises(hwcc.HwccError, match="samples of shape"):
        load_dataset(g, {"input": x[:, :, :4], "labels": y})
    with pytest.raises(hwcc.HwccError, match="different numbers of samples"):
        load_dataset(g, {"input": x, "labels": y[:-1]})


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


class _Terminal:
    def __init__(self, tty: bool):
        self.text, self.tty = "", tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_progress_is_a_bar_on_a_terminal_and_a_line_per_iteration_in_a_log(tty):
    from hwcc.cli.compile_view import Reporter
    from hwcc.search.loop import Proposal
    from hwcc.search.space import Step, Unit
    from hwcc.search.state import SearchState

    state = SearchState.start(
        {"latency_s": 5e-4},
        {"latency_s": 1e-3, "energy_j": 1.0, "size_bytes": 1.0},
        {"latency_s": 1e-3},
        None,
        initial_reduction=0.1,
        decay=0.96,
        max_iterations=40,
    )
    steps = tuple(Step({"group": "/0/Conv", "k": k}, {"k": k}) for k in range(1, 8))
    unit = Unit("channels of /0/Conv", "prune_channels", ("/0/Conv",), steps)
    stream = _Terminal(tty)
    r = Reporter(stream)
    for i in range(1, 4):
        r("iteration", {"iteration": i, "metric": "latency_s", "state": state})
        p = Proposal(unit, steps[1], None, {"latency_s": 1e-3 - 1e-4 * i}, 0.98)
        r("proposal", {"proposal": p, "done": 1, "total": 1})
        state.iteration, state.current = i, dict(p.metrics)
        r("picked", {"proposal": p, "state": state})
    r.close()
    assert (
        "iteration 3: latency 700 us/500 us; accuracy 98.00%; channels of /0/Conv (k=2)"
        in stream.text
    )
    if tty:
        assert (
            "\r" in stream.text and "searching" in stream.text and "3/6" in stream.text
        )  # 6: 0.1*(1+.96+...)>=.5
    else:
        assert "\r" not in stream.text and stream.text.count("\n") == 3


def test_user_data_files_with_and_without_a_holdout(tmp_path):
    from hwcc.models.digits import write_npz

    train, test = (
        write_npz("train", tmp_path / "train.npz"),
        write_npz("test", tmp_path / "test.npz"),
    )
    split = hwcc.compile("zoo:lenet300-digits", "eie", "90%", data=train, **FAST).summary.to_json()
    assert split["input"]["data"].endswith("(fine-tune part)") and split["input"][
        "holdout"
    ].endswith("(held-out part)")
    held = int(split["accuracy_kind"].split(" on ")[1].split()[0])
    assert abs(held - 0.2 * 1438) <= 5  # 20 % of the train split, rounded per class
    given = hwcc.compile(
        "zoo:lenet300-digits", "eie", "90%", data=train, holdout=test, **FAST
    ).summary.to_json()
    assert "359 held-out" in given["accuracy_kind"]
    zoo = hwcc.compile(
        "zoo:lenet300-digits", "eie", "90%", data="zoo:digits", **FAST
    ).summary.to_json()
    assert (
        given["final"] == zoo["final"] and given["history"] == zoo["history"]
    )  # same arrays, same run
