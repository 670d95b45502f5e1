"""The job file (hwcc.jobs.spec): the matrix, single jobs, overrides and devices as jobs, and
each kind of mistake as one error naming its line and field, before anything runs. No Ray."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hwcc.errors import HwccError
from hwcc.jobs.spec import load_spec, parse_spec

GOOD = """\
[defaults]
data = "zoo:digits"
max_accuracy_drop = "5%"
[defaults.search]
max_iterations = 4

[devices]
cpu = "dev-a"

[matrix]
models = ["zoo:lenet300-digits", "zoo:lenet5-digits"]
targets = ["cpu", "eie", "eyeriss"]
budgets = ["50%", ["2mJ", "5ms"]]

[[override]]
model = "zoo:lenet5-digits"
target = "cpu"
device = "dev-b"
passes = ["prune_channels"]
seed = 3

[[job]]
id = "lenet5-tpu"
model = "zoo:lenet5-digits"
target = "tpu"
budget = "30%"
[job.search]
short_term_steps = 2
"""


def test_matrix_single_jobs_and_overrides():
    spec = parse_spec(GOOD)
    assert len(spec) == 2 * 3 * 2 + 1
    by = {j.id: j for j in spec.jobs}
    a = by["lenet300-digits.cpu.50pct"]
    assert a.device == "dev-a" and a.resource == "hwcc-device:dev-a"
    assert a.budgets == ("50%",) and a.data == "zoo:digits"
    assert a.options == {"max_iterations": 4, "max_accuracy_drop": 0.05}
    b = by["lenet5-digits.cpu@dev-b.2mJ+5ms"]  # the override moved it to its own device
    assert b.device == "dev-b" and b.budgets == ("2mJ", "5ms")
    assert b.options["passes"] == ("prune_channels",) and b.options["seed"] == 3
    for j in spec.jobs:  # modelled targets run on no device
        if j.target in ("eie", "eyeriss", "tpu"):
            assert j.device is None and j.resource is None
    single = by["lenet5-tpu"]
    assert single.options == {"max_iterations": 4, "short_term_steps": 2, "max_accuracy_drop": 0.05}


def test_a_measured_target_without_a_named_device_uses_its_own_name():
    spec = parse_spec('[[job]]\nmodel = "zoo:lenet300-digits"\ntarget = "cpu"\nbudget = "50%"\n')
    assert spec.jobs[0].device == "cpu" and spec.jobs[0].id == "lenet300-digits.cpu.50pct"


def test_paths_are_relative_to_the_job_file(tmp_path):
    import hwcc

    hwcc.models.zoo.export("lenet300-digits", tmp_path / "m.onnx")
    (tmp_path / "jobs.toml").write_text(
        '[[job]]\nmodel = "m.onnx"\ntarget = "eie"\nbudget = "50%"\n'
    )
    spec = load_spec(tmp_path / "jobs.toml")
    assert spec.jobs[0].model == str(tmp_path / "m.onnx") and spec.jobs[0].id == "m.eie.50pct"


BAD = [
    # (the text, the line the error names, words the message holds)
    ("[matrix]\nmodels = []\n", 2, ["matrix.models", "non-empty"]),
    (
        '[matrix]\nmodels = ["zoo:lenet300-digits"]\ntargets = ["eie"]\nbudgets = ["5xs"]\n',
        4,
        ["matrix.budgets", "5xs"],
    ),
    (
        '[matrix]\nmodels = ["zoo:nosuch"]\ntargets = ["eie"]\nbudgets = ["5ms"]\n',
        2,
        ["matrix.models", "zoo:nosuch", "hwcc zoo list"],
    ),
    (
        '[matrix]\nmodels = ["zoo:lenet300-digits"]\ntargets = ["tpuu"]\nbudgets = ["5ms"]\n',
        3,
        ["matrix.targets", "tpuu"],
    ),
    (
        '[defaults]\ndata = "zoo:digits"\n\n[defaults.search]\nmax_iteratons = 4\n'
        '[[job]]\nmodel = "zoo:lenet300-digits"\ntarget = "eie"\nbudget = "5ms"\n',
        5,
        ["defaults.search.max_iteratons", "unknown search option"],
    ),
    (
        '[[job]]\nmodel = "zoo:lenet300-digits"\ntarget = "eie"\nbudget = "5ms"\n'
        '[[job]]\nmodel = "zoo:lenet300-digits"\ntarget = "eie"\nbudget = "5ms"\nseed = -1\n',
        9,
        ["job[2].seed", "whole number"],
    ),
    (
        '[[job]]\nmodel = "zoo:lenet300-digits"\ntarget = "eie"\nbudget = "5ms"\n'
        'passes = ["prune", "quantize"]\n',
        5,
        ["job[1].passes", "quantization"],
    ),
    (
        '[[job]]\nmodel = "zoo:lenet300-digits"\ntarget = "eie"\nbudget = "5ms"\n'
        'device = "dev-a"\n',
        5,
        ["job[1].device", "modelled"],
    ),
    (
        '[[job]]\nmodel = "zoo:lenet300-digits"\ntarget = "eie"\nbudget = "5ms"\nbudgte = 1\n',
        5,
        ["job[1].budgte", "unknown key"],
    ),
    (
        '[[job]]\nmodel = "zoo:lenet300-digits"\ntarget = "eie"\nbudget = "5ms"\n'
        "[job.search]\nmax_iterations = 2.5\n",
        6,
        ["job[1].search.max_iterations", "default"],
    ),
    ('[[job]]\nmodel = "missing.onnx"\ntarget = "eie"\nbudget = "5ms"\n', 2, ["not found"]),
    ('[[job]]\ntarget = "eie"\nbudget = "5ms"\n', 1, ["job[1]", "needs model"]),
    ('[defaults]\ndata = "no.npz"\n', 2, ["defaults.data", "not found"]),
    (
        '[matrix]\nmodels = ["zoo:lenet300-digits"]\ntargets = ["eie"]\nbudgets = ["5ms"]\n'
        '[[override]]\ntarget = "cpu"\nseed = 1\n',
        5,
        ["override[1]", "matches no job"],
    ),
    ('[devices]\neie = "dev-a"\n', 2, ["devices.eie", "modelled"]),
    ("[matrix\n", 1, ["not valid TOML"]),
    ("", None, ["no jobs"]),
]


@pytest.mark.parametrize("text,line,words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_file_is_one_error_naming_line_and_field(tmp_path, text, line, words):
    path = tmp_path / "jobs.toml"
    path.write_text(text)
    with pytest.raises(HwccError) as e:
        load_spec(path)
    message = str(e.value)
    where = f"{path}:{line}:" if line else str(path)
    assert message.startswith(where), message
    for w in words:
        assert w in message, message


def test_two_jobs_with_one_id_are_refused():
    text = textwrap.dedent(
        """\
        [[job]]
        id = "x"
        model = "zoo:lenet300-digits"
        target = "eie"
        budget = "5ms"
        [[job]]
        id = "x"
        model = "zoo:lenet5-digits"
        target = "eie"
        budget = "5ms"
        """
    )
    with pytest.raises(HwccError, match="two jobs have the id 'x'"):
        parse_spec(text)


def test_the_command_refuses_a_bad_file_before_anything_runs(tmp_path):
    (tmp_path / "jobs.toml").write_text('[matrix]\nmodels = ["zoo:lenet300-digits"]\n')
    out = tmp_path / "results"
    p = subprocess.run(
        [sys.executable, "-m", "hwcc", "jobs", "run", str(tmp_path / "jobs.toml"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"hwcc jobs: error: {tmp_path / 'jobs.toml'}:1: matrix: needs")
    assert "Traceback" not in p.stderr and not out.exists()
