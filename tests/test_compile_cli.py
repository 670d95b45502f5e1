"""hwcc compile's command line: bad input exits 2 with a message and no traceback, a
folder that is not an artifact is never overwritten, and progress is a bar on a terminal
and a line per iteration in a log."""

from __future__ import annotations

import pytest

from hwcc.cli.commands import main


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
