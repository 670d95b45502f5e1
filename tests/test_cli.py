"""The command line: bad input gives a short error, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwcc.cli.commands import main
from hwcc.cli.compile_view import passes_help
from hwcc.ir.transform import get_pass, resolve_search_passes, search_passes

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hwcc", *args], capture_output=True, text=True, timeout=300
    )


def small_model(tmp_path: Path, dynamic: bool = False, custom: bool = False) -> Path:
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if custom:
        nodes.append(helper.make_node("Frobnicate", ["y"], ["z"], domain="com.example"))
        outputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 6, 6])]
    shape = ["N", 3, 6, 6] if dynamic else [1, 3, 6, 6]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        outputs,
        initializer=[w],
    )
    opsets = [helper.make_opsetid("", 17)] + (
        [helper.make_opsetid("com.example", 1)] if custom else []
    )
    path = tmp_path / "small.onnx"
    onnx.save_model(helper.make_model(g, opset_imports=opsets, ir_version=10), str(path))
    return path


def assert_clean_error(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("hwcc ")
    assert len(r.stderr.strip().splitlines()) <= 3
    for w in words:
        assert w in r.stderr


def test_help_lists_every_command():
    r = run("--help")
    assert r.returncode == 0
    for command in ("compile", "inspect", "apply", "targets", "profile", "zoo"):
        assert command in r.stdout


def test_the_passes_help_is_read_from_the_pass_registry(capsys):
    """``hwcc compile --help`` names every searchable pass and alias, and a default that
    resolves to the default passes: nothing is listed by hand."""
    text = passes_help()
    for name in search_passes():
        assert name in text
        assert all(alias in text for alias in get_pass(name).aliases)
    default = text.rpartition("(default: ")[2].removesuffix(")")
    assert resolve_search_passes(default.split(",")) == tuple(search_passes(default_only=True))
    with pytest.raises(SystemExit) as exit_info:
        main(["compile", "--help"])
    assert exit_info.value.code == 0
    assert "".join(text.split()) in "".join(capsys.readouterr().out.split())


def test_missing_file(tmp_path):
    out = tmp_path / "out.onnx"
    r = run("apply", "fold_batchnorm", str(tmp_path / "nope.onnx"), "-o", str(out))
    assert_clean_error(r, "not found")
    assert not out.exists()


def test_not_onnx_and_truncated(tmp_path):
    text = tmp_path / "readme.onnx"
    text.write_text("hello\n" * 100)
    assert_clean_error(run("inspect", str(text)), "not")
    good = (LIGHT / "light_resnet50.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good[: len(good) // 3])
    out = tmp_path / "out.onnx"
    assert_clean_error(run("apply", "eliminate_dead", str(cut), "-o", str(out)))
    assert not out.exists()


def test_dynamic_dim_needs_input_shape(tmp_path):
    path = small_model(tmp_path, dynamic=True)
    assert_clean_error(run("inspect", str(path)), "--input-shape x:")
    r = run("inspect", str(path), "--input-shape", "x:2x3x6x6")
    assert r.returncode == 0, r.stderr
    assert "Conv" in r.stdout


def test_external_data_outside_the_folder(tmp_path):
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        initializer=[w],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    d = tmp_path / "m"
    d.mkdir()
    onnx.save_model(
        model, str(d / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0
    )
    os.replace(d / "m.data", tmp_path / "m.data")
    m = onnx.load(str(d / "m.onnx"), load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = "../m.data"
    onnx.save_model(m, str(d / "m.onnx"))
    assert_clean_error(run("inspect", str(d / "m.onnx")), "outside the model's folder")


def test_malformed_budget(tmp_path):
    path = small_model(tmp_path)
    r = run("compile", str(path), "--target", "cpu", "--budget", "5 parsecs")
    assert_clean_error(r, "accepted forms")


def test_unknown_op_is_shown_not_a_crash(tmp_path):
    path = small_model(tmp_path, custom=True)
    r = run("inspect", str(path))
    assert r.returncode == 0, r.stderr
    assert "com.example::Frobnicate" in r.stdout


def test_inspect_json_matches_the_table(tmp_path, capsys):
    path = small_model(tmp_path)
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    conv = [layer for layer in data["layers"] if layer["op_type"] == "Conv"][0]
    assert conv["macs"] == 8 * 6 * 6 * 3 * 3 * 3  # M·P·Q·C·R·S


def test_apply_bad_knob_and_unknown_pass(tmp_path):
    path = small_model(tmp_path)
    out = tmp_path / "o.onnx"
    assert_clean_error(run("apply", "no_such_pass", str(path), "-o", str(out)), "no_such_pass")
    assert_clean_error(
        run("apply", "fold_constants", str(path), "-o", str(out), "--set", "nonsense"), "knob=value"
    )
    assert not out.exists()


def test_zoo_unknown_name(tmp_path):
    assert_clean_error(run("inspect", "zoo:no-such-model"), "zoo list")


def test_compile_checks_its_budget_before_any_work(tmp_path):
    path = small_model(tmp_path)
    r = run(
        "compile",
        str(path),
        "--target",
        "cpu",
        "--budget",
        "5 furlongs",
        "-o",
        str(tmp_path / "art"),
    )
    assert_clean_error(r, "cannot read budget")
    assert not (tmp_path / "art").exists()


def test_target_flags_need_a_target(tmp_path):
    path = small_model(tmp_path)
    assert_clean_error(run("inspect", str(path), "--batch", "4"), "--target")


@pytest.mark.parametrize("bad", ["--input-shape=x", "--input-shape=x:1x2xq"])
def test_bad_input_shape_flag(tmp_path, bad):
    path = small_model(tmp_path)
    assert_clean_error(run("inspect", str(path), bad), "input shape")


def test_targets_lists_provenance_and_the_legal_form(capsys):
    from hwcc.cli.commands import main

    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in ("cpu", "gpu", "tpu", "eie", "eyeriss"):
        assert f"\n{name}  (" in "\n" + out
    assert "cpu  (cpu family, measured)" in out and "tpu  (tpu family, model)" in out
    tpu = out[out.index("\ntpu  (") :]
    form = "legal form (what hwcc compile produces for it): quantize_int8 calibration=minmax"
    assert form in tpu.split("\n\n")[0]


def test_warnings_read_as_hwcc_lines(monkeypatch, capsys):
    """A warning raised inside a command (a corrupt lookup table set aside, say) is one
    ``hwcc COMMAND: warning:`` line, not Python's file:line format."""
    import warnings

    from hwcc.cli import commands as cli
    from hwcc.cli import subcommands

    def warn(args):
        warnings.warn("lookup table t.json is corrupt; set aside as t.json.corrupt-1 and rebuilt")
        return 0

    monkeypatch.setattr(subcommands, "cmd_targets", warn)
    assert cli.main(["targets"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "hwcc targets: warning: lookup table t.json is corrupt; "
        "set aside as t.json.corrupt-1 and rebuilt\n"
    )
