"""Hostile command lines: every bad flag, budget, data file and output ends cleanly.

Each case runs ``hwcc`` in-process and must end with its documented exit code (2 for bad
input, 3 for ``apply --verify`` finding changed outputs), an ``hwcc COMMAND: error: ...``
line and at most a hint line on stderr, no traceback, and nothing written. A few run as
real processes too. The last test counts the outcomes.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hwcc.cli.commands import main

MODEL = "zoo:lenet5-digits"  # input 'input' [1, 1, 8, 8], output 'logits' [1, 10]
N = 40


def _write_data(folder: Path) -> None:
    """Good and broken data files for MODEL, and a file and a folder to trip outputs on."""
    rng = np.random.default_rng(0)
    x = rng.random((N, 1, 8, 8), dtype=np.float32)
    y = np.arange(N) % 10
    np.savez(folder / "good.npz", input=x, labels=y)
    good = (folder / "good.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(good[: len(good) // 2])
    crc = bytearray(good)
    crc[200] ^= 0xFF  # inside the first member's data: the zip's CRC check fails
    (folder / "crc.npz").write_bytes(bytes(crc))
    np.savez_compressed(folder / "compressed.npz", input=x, labels=y)
    member = bytearray((folder / "compressed.npz").read_bytes())
    member[150] ^= 0x55  # inside the compressed stream: the member's header comes out garbled
    (folder / "member.npz").write_bytes(bytes(member))
    np.savez(folder / "strings.npz", input=np.array(["a"] * N), labels=y)
    np.savez(folder / "objects.npz", input=np.array([{}] * N, dtype=object), labels=y)
    np.savez(folder / "scalar.npz", input=np.float32(3.0), labels=y)
    np.savez(folder / "negative.npz", input=x, labels=y - 5)
    np.savez(folder / "class10.npz", input=x, labels=y + 1)
    np.savez(folder / "huge.npz", input=x, labels=np.full(N, 2**62))
    np.savez(folder / "counts.npz", input=x, labels=y[: N // 2])
    np.savez(folder / "shape.npz", input=x[:, :, :4], labels=y)
    np.save(folder / "single.npy", x)
    (folder / "single.npy").rename(folder / "single.npz")
    (folder / "folder.npz").mkdir()
    (folder / "afile").write_text("not a folder\n")
    (folder / "existing").mkdir()


C = ["compile", MODEL, "--target", "eie", "-o", "{out}/art"]
COMPILE = [*C, "--budget", "50%"]
INSPECT = ["inspect", MODEL, "--target", "eie"]
A = ["apply", "quantize", MODEL, "-o", "{out}/q.onnx"]
PROC = "/proc/hwcc-test/x.onnx"

# (case id, argv, exit code, words the message must hold)
CASES: list[tuple[str, list[str], int, tuple[str, ...]]] = [
    # budgets
    ("budget-denormal-percent", [*C, "--budget", "4.9e-324%"], 2, ("too small", "0.01%")),
    ("budget-denormal-seconds", [*C, "--budget", "1e-320s"], 2, ("too small", "accepted forms")),
    ("budget-tiny-percent", [*C, "--budget", "1e-9%"], 2, ("too small",)),
    ("budget-zero", [*C, "--budget", "0ms"], 2, ("positive",)),
    ("budget-negative", [*C, "--budget=-3ms"], 2, ("positive",)),
    ("budget-inf", [*C, "--budget", "1e999J"], 2, ("finite",)),
    ("budget-nan", [*C, "--budget", "nan%"], 2, ("cannot read budget",)),
    ("budget-tab", [*C, "--budget", "5\tms"], 2, ("control character",)),
    ("budget-nul", [*C, "--budget", "5\x00ms"], 2, ("control character",)),
    ("budget-no-unit", [*C, "--budget", "5"], 2, ("no unit", "accepted forms")),
    ("budget-split-ms", [*C, "--budget", "5", "ms"], 2, ("two words", "--budget 5ms")),
    ("budget-split-percent", [*C, "--budget", "50", "%"], 2, ("two words", "--budget 50%")),
    (
        "budget-split-before-model",
        ["compile", "--budget", "2", "mJ", MODEL, "--target", "eie"],
        2,
        ("two words",),
    ),
    ("budget-split-equals", [*C, "--budget=5", "ms"], 2, ("two words",)),
    (
        "budget-split-energy",
        [*C, "--budget", "40", "%energy"],
        2,
        ("two words", "--budget 40%energy"),
    ),
    # numeric flags, refused by argparse with the accepted range
    ("seed-negative", [*COMPILE, "--seed", "-1"], 2, ("--seed", "0 to 4294967295")),
    ("seed-2**32", [*COMPILE, "--seed", str(2**32)], 2, ("--seed", "0 to 4294967295")),
    ("seed-text", [*COMPILE, "--seed", "abc"], 2, ("--seed",)),
    ("max-iterations-0", [*COMPILE, "--max-iterations", "0"], 2, ("--max-iterations", "1 or more")),
    ("max-iterations-negative", [*COMPILE, "--max-iterations", "-1"], 2, ("--max-iterations",)),
    ("decay-nan", [*COMPILE, "--decay", "nan"], 2, ("--decay", "(0, 1]")),
    ("decay-zero", [*COMPILE, "--decay", "0"], 2, ("--decay", "(0, 1]")),
    ("decay-above-1", [*COMPILE, "--decay", "1.5"], 2, ("--decay",)),
    (
        "initial-reduction-negative",
        [*COMPILE, "--initial-reduction", "-1"],
        2,
        ("--initial-reduction", "(0, 1)"),
    ),
    ("initial-reduction-1", [*COMPILE, "--initial-reduction", "1"], 2, ("--initial-reduction",)),
    (
        "short-term-steps-negative",
        [*COMPILE, "--short-term-steps", "-5"],
        2,
        ("--short-term-steps", "0 or more"),
    ),
    ("long-term-steps-negative", [*COMPILE, "--long-term-steps", "-1"], 2, ("--long-term-steps",)),
    (
        "max-accuracy-drop-nan",
        [*COMPILE, "--max-accuracy-drop", "nan"],
        2,
        ("--max-accuracy-drop",),
    ),
    ("batch-0", [*INSPECT, "--batch", "0"], 2, ("--batch", "1 to 4096")),
    ("batch-absurd", [*INSPECT, "--batch", str(10**18)], 2, ("--batch",)),
    ("act-density-nan", [*INSPECT, "--act-density", "nan"], 2, ("--act-density", "[0, 1]")),
    ("act-density-above-1", [*INSPECT, "--act-density", "1.5"], 2, ("--act-density",)),
    ("weight-bits-0", ["inspect", MODEL, "--weight-bits", "0"], 2, ("--weight-bits", "1 to 64")),
    ("act-bits-absurd", ["inspect", MODEL, "--act-bits", "1000000"], 2, ("--act-bits",)),
    ("rtol-nan", [*A, "--verify", "--rtol", "nan"], 2, ("--rtol",)),
    ("atol-nan", [*A, "--verify", "--atol", "nan"], 2, ("--atol",)),
    ("atol-negative", [*A, "--verify", "--atol", "-1"], 2, ("--atol", "0 or more")),
    ("unknown-flag", [*COMPILE, "--frobnicate"], 2, ("unrecognized arguments",)),
    ("unknown-command", ["frobnicate"], 2, ("invalid choice",)),
    # data files
    ("data-truncated", [*COMPILE, "--data", "{data}/truncated.npz"], 2, ("not a readable .npz",)),
    ("data-crc", [*COMPILE, "--data", "{data}/crc.npz"], 2, ("cannot be read", "CRC")),
    ("data-corrupt-member", [*COMPILE, "--data", "{data}/member.npz"], 2, ("cannot be read",)),
    ("data-strings", [*COMPILE, "--data", "{data}/strings.npz"], 2, ("not numbers",)),
    ("data-objects", [*COMPILE, "--data", "{data}/objects.npz"], 2, ("cannot be read",)),
    ("data-scalar", [*COMPILE, "--data", "{data}/scalar.npz"], 2, ("single value",)),
    ("labels-negative", [*COMPILE, "--data", "{data}/negative.npz"], 2, ("label -5", "0 to 9")),
    ("labels-too-large", [*COMPILE, "--data", "{data}/class10.npz"], 2, ("label 10", "0 to 9")),
    ("labels-huge", [*COMPILE, "--data", "{data}/huge.npz"], 2, ("out of range",)),
    (
        "data-counts-disagree",
        [*COMPILE, "--data", "{data}/counts.npz"],
        2,
        ("different numbers of samples",),
    ),
    ("data-wrong-shape", [*COMPILE, "--data", "{data}/shape.npz"], 2, ("samples of shape",)),
    ("data-npy", [*COMPILE, "--data", "{data}/single.npz"], 2, (".npy",)),
    ("data-folder", [*COMPILE, "--data", "{data}/folder.npz"], 2, ("is a folder",)),
    ("data-missing", [*COMPILE, "--data", "{data}/missing.npz"], 2, ("not found",)),
    ("data-zoo-unknown", [*COMPILE, "--data", "zoo:nope"], 2, ("zoo:nope", "zoo:digits")),
    (
        "holdout-crc",
        [*COMPILE, "--data", "{data}/good.npz", "--holdout", "{data}/crc.npz"],
        2,
        ("CRC",),
    ),
    (
        "holdout-zoo-unknown",
        [*COMPILE, "--data", "{data}/good.npz", "--holdout", "zoo:nope"],
        2,
        ("zoo:digits",),
    ),
    (
        "inspect-data-truncated",
        [*INSPECT, "--data", "{data}/truncated.npz"],
        2,
        ("not a readable .npz",),
    ),
    ("inspect-data-strings", [*INSPECT, "--data", "{data}/strings.npz"], 2, ("not numbers",)),
    ("inspect-data-scalar", [*INSPECT, "--data", "{data}/scalar.npz"], 2, ("single value",)),
    ("inspect-data-folder", [*INSPECT, "--data", "{data}/folder.npz"], 2, ("is a folder",)),
    ("inspect-data-zoo-unknown", [*INSPECT, "--data", "zoo:nope"], 2, ("zoo:digits",)),
    ("inspect-labels-huge", [*INSPECT, "--data", "{data}/huge.npz"], 2, ("out of range",)),
    ("apply-data-crc", [*A, "--data", "{data}/crc.npz"], 2, ("CRC",)),
    ("apply-data-scalar", [*A, "--data", "{data}/scalar.npz"], 2, ("single value",)),
    (
        "apply-data-counts",
        [*A, "--data", "{data}/counts.npz"],
        2,
        ("different numbers of samples",),
    ),
    ("apply-data-folder", [*A, "--data", "{data}/folder.npz"], 2, ("is a folder",)),
    ("apply-data-zoo-unknown", [*A, "--data", "zoo:nope"], 2, ("zoo:digits",)),
    # outputs
    (
        "compile-output-under-a-file",
        [*COMPILE[:4], "--budget", "50%", "-o", "{data}/afile/art"],
        2,
        ("is a file",),
    ),
    ("compile-output-in-proc", [*COMPILE[:4], "--budget", "50%", "-o", PROC], 2, ("cannot write",)),
    (
        "compile-output-is-a-file",
        [*COMPILE[:4], "--budget", "50%", "-o", "{data}/afile"],
        2,
        ("not a folder",),
    ),
    (
        "apply-output-under-a-file",
        ["apply", "quantize", MODEL, "-o", "{data}/afile/q.onnx"],
        2,
        ("is a file",),
    ),
    ("apply-output-in-proc", ["apply", "quantize", MODEL, "-o", PROC], 2, ("cannot write",)),
    (
        "apply-output-is-a-folder",
        ["apply", "quantize", MODEL, "-o", "{data}/existing"],
        2,
        ("is a folder",),
    ),
    ("apply-output-empty", ["apply", "quantize", MODEL, "-o", ""], 2, ("empty",)),
    (
        "export-output-is-a-folder",
        ["zoo", "export", "lenet5-digits", "-o", "{data}/existing"],
        2,
        ("is a folder",),
    ),
    ("export-output-in-proc", ["zoo", "export", "lenet5-digits", "-o", PROC], 2, ("cannot write",)),
    (
        "export-output-under-a-file",
        ["zoo", "export", "lenet5-digits", "-o", "{data}/afile/m.onnx"],
        2,
        ("is a file",),
    ),
    ("export-unknown-model", ["zoo", "export", "nope", "-o", "{out}/m.onnx"], 2, ("nope",)),
    # a failed check is not bad input: exit 3, nothing written
    (
        "apply-verify-fails",
        ["apply", "prune_weights", MODEL, "-o", "{out}/p.onnx", "--verify"],
        3,
        ("changed the model's outputs", "nothing written"),
    ),
    # other commands
    ("profile-unknown-model", ["profile", "--model", "zoo:nope"], 2, ("nope",)),
    ("profile-unknown-target", ["profile", "--model", MODEL, "--target", "nope"], 2, ("nope",)),
    ("targets-extra-argument", ["targets", "--frobnicate"], 2, ("unrecognized arguments",)),
    ("zoo-no-subcommand", ["zoo"], 2, ("required",)),
]

OUTCOMES: dict[str, str] = {}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-data")
    _write_data(folder)
    return folder


def _run(argv: list[str], data: Path, out: Path, capsys) -> tuple[int, str]:
    """Run hwcc in-process; argparse's refusals end in SystemExit, the rest return."""
    argv = [a.replace("{data}", str(data)).replace("{out}", str(out)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def _outcome(code: int, err: str, expected: int, words: tuple[str, ...]) -> str:
    """``ok`` or what went wrong, for the assertion and the count."""
    lines = err.strip().splitlines()
    if "Traceback" in err:
        return "traceback"
    if code != expected:
        return f"exit {code}"
    if not lines or not lines[0].startswith("hwcc") or ": error: " not in lines[0]:
        return "no error line"
    if len(lines) > 2 or (len(lines) == 2 and not lines[1].startswith("  hint: ")):
        return "more than an error and a hint"
    missing = [w for w in words if w not in err]
    return f"message lacks {missing}" if missing else "ok"


@pytest.mark.parametrize("case, argv, expected, words", CASES, ids=[c[0] for c in CASES])
def test_a_bad_command_line_ends_cleanly(case, argv, expected, words, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run(argv, data_dir, out, capsys)
    outcome = _outcome(code, err, expected, words)
    OUTCOMES[case] = f"exit {code}" if outcome == "ok" else "bad"
    assert outcome == "ok", err
    assert not out.exists(), "nothing is written"
    assert not Path(PROC).parent.exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        ([*C, "--budget", "5", "ms"], ("two words",)),
        ([*COMPILE, "--decay", "nan"], ("argument --decay",)),
        ([*COMPILE, "--data", "{data}/crc.npz"], ("CRC",)),
    ],
)
def test_as_a_process(argv, words, data_dir, tmp_path):
    argv = [
        a.replace("{data}", str(data_dir)).replace("{out}", str(tmp_path / "out")) for a in argv
    ]
    r = subprocess.run(
        [sys.executable, "-m", "hwcc", *argv], capture_output=True, text=True, timeout=300
    )
    assert _outcome(r.returncode, r.stderr, 2, words) == "ok", r.stderr
    assert not (tmp_path / "out").exists()


def test_bundled_data_feeds_inspect_and_apply(tmp_path, capsys):
    """zoo:digits, which the errors above list, works where --data is taken."""
    assert main([*INSPECT, "--data", "zoo:digits"]) == 0
    out = tmp_path / "q.onnx"
    assert main(["apply", "quantize", MODEL, "-o", str(out), "--data", "zoo:digits"]) == 0
    assert out.is_file()


def test_summary_of_outcomes(data_dir, tmp_path_factory, capsys, report_line):
    """Counts every case's outcome (running those not run above, e.g. when deselected)."""
    for case, argv, expected, words in CASES:
        if case not in OUTCOMES:
            out = tmp_path_factory.mktemp("rerun") / "out"
            code, err = _run(argv, data_dir, out, capsys)
            ok = _outcome(code, err, expected, words) == "ok" and not out.exists()
            OUTCOMES[case] = f"exit {code}" if ok else "bad"
    counts = Counter(OUTCOMES.values())
    report_line(
        f"hostile command lines: {len(CASES)} tried; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    )
    assert len(CASES) >= 40 and counts["bad"] == 0


def test_an_exact_pass_that_fails_verification_exits_3_and_writes_nothing(
    tmp_path, capsys, monkeypatch
):
    """An exact pass whose rewrite changes the outputs is stopped by the pass manager; the
    exit code is still 3 (a failed check), not 2 (bad input)."""
    from hwcc.ir import pass_manager
    from hwcc.ir.verify import Verification

    failed = Verification(False, 1.0, 1.0, 1e-4, 1e-5, 1, ())
    monkeypatch.setattr(pass_manager, "compare", lambda *args, **kwargs: failed)
    out = tmp_path / "folded.onnx"
    code = main(["apply", "fold_batchnorm", "zoo:resnet-digits", "-o", str(out), "--verify"])
    err = capsys.readouterr().err
    assert code == 3 and "changed the model's outputs" in err and "Traceback" not in err
    assert not out.exists()
