"""hwcc compile's data: without any, a warning that accuracy is agreement with the original
on noise; labelled data split by the seed and stratified; user data files with and without
a held-out file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from compile_runs import FAST, FAST_FLAGS

import hwcc
from hwcc.cli.commands import main


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


def test_labelled_data_is_split_with_the_seed(tmp_path):
    from hwcc.data.evaluate import load_dataset, split_dataset
    from hwcc.models.digits import load_split

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


def test_unlabelled_data_is_held_out_in_contiguous_blocks():
    """A stream's neighbouring samples are alike: the held-out set is four runs of
    consecutive samples, one in each quarter, so few held-out samples have a fine-tune
    neighbour (a random draw of 20 of 100 gives about 32 such edges)."""
    from hwcc.data.evaluate import load_dataset, split_dataset

    g = hwcc.load("zoo:lenet300-digits")
    x = np.arange(100, dtype=np.float32)[:, None, None].repeat(64, 2).reshape(100, 1, 8, 8)
    data = load_dataset(g, {"input": x})
    tune, held = split_dataset(data, 0.2, seed=1)
    idx = held.inputs["input"][:, 0, 0, 0].astype(int)
    assert (
        len(idx) == 20
        and len(tune) == 80
        and not set(idx) & set(tune.inputs["input"][:, 0, 0, 0].astype(int))
    )
    blocks = np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1)
    assert len(blocks) <= 4 and all(len(b) == 5 for b in blocks)
    assert [int(b[0]) // 25 for b in blocks] == list(range(len(blocks)))  # one per quarter
    _, again = split_dataset(data, 0.2, seed=1)
    _, other = split_dataset(data, 0.2, seed=2)
    assert again.sha256 == held.sha256 and other.sha256 != held.sha256


def test_a_held_out_set_too_small_to_measure_is_warned_about():
    """13 held-out samples (a 64-sample --data file) make one sample 7.7 points: the
    run's fidelity means little, and the warning says so; 30 or more do not warn."""
    from hwcc.data.evaluate import resolve_data

    g = hwcc.load("zoo:lenet300-digits")
    x = np.random.default_rng(0).random((64, 1, 8, 8)).astype(np.float32)
    _, held, warning = resolve_data(g, {"input": x}, None, seed=0)
    assert len(held) == 13 and "only 13 held-out samples" in warning and "7.7 points" in warning
    big = np.random.default_rng(0).random((150, 1, 8, 8)).astype(np.float32)
    _, held, warning = resolve_data(g, {"input": big}, None, seed=0)
    assert len(held) == 30 and (warning is None or "held-out samples" not in warning)


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
