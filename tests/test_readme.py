"""Every code block of the README runs here, so the page stays true.

Each block is found by its position and first line; a block this file does not know
fails ``test_every_block_has_a_test``, so a new example cannot go untested. Commands run
as a user would type them, in a scratch folder, with this interpreter's ``hwcc``; the
set-up line that creates a virtual environment runs whole in the slow suite.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks() -> list[tuple[str, str]]:
    """``(kind, text)`` of every code block in order: kind is the fence's language, ``""``
    for a bare fence, ``"indented"`` for a block indented by four spaces."""
    out, lines, i = [], README.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = lines.index("```", i + 1)
            out.append((m.group(1), "\n".join(lines[i + 1 : j])))
            i = j + 1
            continue
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            out.append(("indented", textwrap.dedent("\n".join(lines[i:j])).strip()))
            i = j
            continue
        i += 1
    return out


BLOCKS = _blocks()


def _block(kind: str, starts: str) -> str:
    found = [t for k, t in BLOCKS if k == kind and t.startswith(starts)]
    assert len(found) == 1, (
        f"README: expected one {kind or 'bare'} block starting {starts!r}, found {len(found)}"
    )
    return found[0]


KNOWN = [
    ("indented", "hwcc compile model.onnx"),
    ("indented", "python3 -m venv .venv && .venv/bin/pip install -q -e . &&"),
    ("indented", 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]"'),
    ("", "hwcc inspect MODEL"),
    ("python", "import hwcc"),
    ("python", "from hwcc.ir.search_space import"),
    ("python", "from hwcc.targets.base import"),
    ("toml", 'family = "mychip"'),
    ("indented", "hwcc jobs run jobs.toml"),
    ("toml", "[defaults]"),
    ("", "ray start --head"),
    ("", "hwcc/ "),
]


def test_every_block_has_a_test():
    known = [(k, t) for k, t in BLOCKS if any(k == kk and t.startswith(s) for kk, s in KNOWN)]
    assert len(known) == len(BLOCKS) == len(KNOWN), [t[:60] for _, t in BLOCKS]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _hwcc(line: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a README ``hwcc ...`` line with this interpreter's hwcc."""
    argv = shlex.split(line)
    assert argv[0] == "hwcc", line
    return subprocess.run(
        [sys.executable, "-m", "hwcc", *argv[1:]],
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # an export and a compile, each its own process: 10 s
def test_the_opening_example_compiles_a_model_file(tmp_path):
    line = _block("indented", "hwcc compile model.onnx")
    assert _hwcc("hwcc zoo export lenet300-digits -o model.onnx", tmp_path).returncode == 0
    r = _hwcc(line, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "every budget met" in r.stdout


# a full compile (seconds quiet, a minute or more on a busy machine); test_compile_*.py cover
# the path
@pytest.mark.slow
def test_the_main_job_as_the_readme_gives_it(tmp_path):
    """The hwcc part of the set-up line, with this environment's hwcc (the whole line, venv
    and install included, runs in the slow suite)."""
    setup = _block("indented", "python3 -m venv .venv && .venv/bin/pip install -q -e . &&")
    line = setup.split("&&")[-1].strip().replace(".venv/bin/hwcc", "hwcc")
    r = _hwcc(line, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "every budget met" in r.stdout and "report.html" in r.stdout
    assert (tmp_path / "out" / "lenet300-eie" / "hwcc.json").is_file()


@pytest.mark.slow
def test_the_set_up_line_works_in_a_fresh_copy(tmp_path):
    """venv, install and main job, literally, in a copy of the tracked files."""
    copy = tmp_path / "hwcc"
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for f in files:
        (copy / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, copy / f)
    setup = _block("indented", "python3 -m venv .venv && .venv/bin/pip install -q -e . &&")
    r = subprocess.run(
        ["bash", "-c", setup],
        cwd=copy,
        env=_env(copy),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (copy / "out" / "lenet300-eie" / "report.html").is_file()


def test_ci_runs_the_readme_test_command_verbatim():
    command = _block("indented", 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]"')
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_command_synopsis_matches_each_commands_help():
    synopsis = _block("", "hwcc inspect MODEL")
    lines, current = [], ""
    for raw in synopsis.splitlines():
        if raw.startswith("hwcc "):
            if current:
                lines.append(current)
            current = raw
        else:
            current += " " + raw.strip()
    lines.append(current)
    from hwcc.cli.commands import build_parser

    parser = build_parser()
    for line in lines:
        words = line.split()
        command = words[1:3] if words[1] in ("zoo", "jobs") else words[1:2]
        sub = parser._subparsers._group_actions[0].choices[command[0]]
        if len(command) == 2:
            sub = sub._subparsers._group_actions[0].choices[command[1]]
        flags = {s for a in sub._actions for s in a.option_strings}
        for flag in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", line):
            assert flag in flags, (
                f"README synopsis {line!r}: {flag} is not an option of 'hwcc {' '.join(command)}'"
            )


@pytest.mark.slow  # a full-length search: 10 s on a quiet machine, minutes on a busy one
def test_the_python_example_runs(tmp_path):
    code = _block("python", "import hwcc")
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "latency_s" in r.stdout and "TOTAL" in r.stdout.upper()
    assert (tmp_path / "out" / "lenet5-eyeriss" / "hwcc.json").is_file()
    assert (tmp_path / "out" / "resnet-folded.onnx").is_file()


def test_the_pass_example_registers_and_runs():
    code = _block("python", "from hwcc.ir.search_space import")
    code = code.replace("MyPass", "ReadmePass").replace('"my_pass"', '"readme_example_pass"')
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    import hwcc
    from hwcc.cli import apply_view

    report = apply_view.apply_by_hand(
        hwcc.load("zoo:lenet5-digits"),
        "readme_example_pass",
        {"ratio": "0.25"},
        verify=True,
        rtol=1e-4,
        atol=1e-5,
    )
    assert report.modified
    from hwcc.ir.transform import resolve_search_passes
    from hwcc.search.space import units

    assert resolve_search_passes(["readme_example_pass"]) == ("readme_example_pass",)
    found = units(hwcc.load("zoo:lenet5-digits"), ["readme_example_pass"])
    assert [u.id for u in found] == ["my change of /0/Conv", "my change of /2/Conv"]
    assert [s.knobs["ratio"] for s in found[0].steps] == [0.25, 0.5]


def test_the_target_example_loads_from_its_toml(tmp_path):
    code = _block("python", "from hwcc.targets.base import")
    exec(compile(code.replace('"mychip"', '"readme_example_chip"'), "README.md", "exec"), {})
    toml = _block("toml", 'family = "mychip"').replace('"mychip"', '"readme_example_chip"')
    (tmp_path / "chip.toml").write_text(toml)
    import hwcc
    from hwcc.ir.workload import analyze
    from hwcc.targets.base import load_target

    graph = hwcc.load("zoo:lenet5-digits")
    cost = load_target(str(tmp_path / "chip.toml")).price(graph)
    macs = sum(x.macs for x in analyze(graph).layers if x.kind in ("conv", "gemm"))
    on_chip = sum(x.cost.latency_s for x in cost.layers if x.on != "cpu")
    assert on_chip == pytest.approx(macs / 256 / 1e9, rel=1e-9)


def test_the_job_file_example_is_the_jobs_it_says(tmp_path):
    """The job file as the README gives it: 2 models x 3 targets x 2 budgets and one single
    job, the cpu's on the named device; the command line it is run with parses. (Running
    its 13 full-length compiles is tests/test_jobs_cluster.py's part, at fast settings.)"""
    from hwcc.cli.commands import build_parser
    from hwcc.jobs import load_spec

    (tmp_path / "jobs.toml").write_text(_block("toml", "[defaults]"))
    spec = load_spec(tmp_path / "jobs.toml")
    assert len(spec) == 2 * 3 * 2 + 1
    assert {j.device for j in spec.jobs if j.target == "cpu"} == {"xeon-8380"}
    assert "lenet300-digits.cpu.50pct" in {j.id for j in spec.jobs}
    override = [j for j in spec.jobs if j.model == "zoo:lenet5-digits" and j.target == "eie"]
    assert override and all(j.options["passes"] == ("prune_channels",) for j in override)
    args = build_parser().parse_args(shlex.split(_block("indented", "hwcc jobs run jobs.toml"))[1:])
    assert args.jobs == "jobs.toml" and args.output == "results/" and args.address is None


def test_the_ray_start_lines_offer_devices_as_jobs_ask_for_them():
    import json

    from hwcc.jobs.spec import DEVICE_PREFIX

    offered = []
    for line in _block("", "ray start --head").splitlines():
        argv = shlex.split(line)
        assert argv[:2] == ["ray", "start"]
        offered += list(json.loads(argv[argv.index("--resources") + 1]))
    assert offered and all(r.startswith(DEVICE_PREFIX) for r in offered)
    assert f"{DEVICE_PREFIX}xeon-8380" in offered  # the job file's cpu device


LAYOUT_ROOTS = (
    ("hwcc", "the compiler: the import package hwcc"),
    ("passes", "the passes (hwcc.passes)"),
    ("targets", "the cost models, one folder per family (hwcc.targets)"),
    ("models", "the model zoo (hwcc.models)"),
    ("bench", "the benchmarks behind BENCHMARKS.md"),
)


def layout() -> str:
    """The tree of every module with the first line of its docstring: what the README's
    layout section must say (``python tests/test_readme.py --write`` rewrites it)."""
    import ast

    lines = []
    for top, what in LAYOUT_ROOTS:
        lines.append(f"{top + '/':<34}{what}")
        for path in sorted(
            (ROOT / top).rglob("*.py"),
            key=lambda q: (q.parent.parts, q.name != "__init__.py", q.name),
        ):
            rel = path.relative_to(ROOT / top)
            doc = (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
            first = _first_sentence(doc)
            if rel.name == "__init__.py":
                if rel.parent != Path("."):
                    name = "  " * len(rel.parts[:-1]) + str(rel.parent.name) + "/"
                    lines.append(f"{name:<34}{first}".rstrip())
            else:
                lines.append(f"{'  ' * len(rel.parts) + rel.name:<34}{first}".rstrip())
    return "\n".join(lines)


def _first_sentence(doc: str) -> str:
    """A docstring's first sentence (its summary may wrap over several lines)."""
    para = " ".join(doc.split("\n\n", 1)[0].split()) if doc else ""
    end = re.search(r"\.(\s|$)", para)
    return para[: end.start() + 1].rstrip(":") if end else para


def _layout_block() -> str:
    return _block("", "hwcc/ ")


def test_the_layout_is_the_tree():
    """The README's layout section is generated from the code: every module, one line each."""
    assert _layout_block() == layout(), (
        "the README's layout is out of date: run python tests/test_readme.py --write"
    )


def test_every_module_says_what_it_is():
    missing = [line.split()[0] for line in layout().splitlines() if len(line.split()) == 1]
    assert not missing, f"modules without a docstring: {missing}"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    (ROOT / "README.md").write_text(README.replace(_layout_block(), layout()))
