"""The layouts of ``--data`` arrays (:mod:`hwcc.data.layout`) on small hand-built models.

An LSTM whose states ``h``/``c`` are inputs and outputs (axis 0 of its input is time), a
model with a 0-d input, and a model whose state has its batch on axis 1: each fed with
samples on axis 0, stacked runs, or one run for all, through every consumer (runs for
onnxruntime, the fine-tune/held-out split, the evaluator, calibration, fine-tuning and a
whole compile). The errors say what is wrong, where, and what to do; the classic layout
(samples on axis 0 of every array) keeps its meaning.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from compile_runs import FAST
from onnx import TensorProto, helper, numpy_helper

import hwcc
from hwcc.data.activations import split_batches
from hwcc.data.evaluate import Evaluator, load_dataset, random_dataset, split_dataset
from hwcc.data.layout import RUNS, SAME, SAMPLES
from hwcc.errors import HwccError
from hwcc.ir.onnx_io import to_proto

F, I64 = TensorProto.FLOAT, TensorProto.INT64
T, HID = 4, 5  # LSTM: time steps per run, hidden size


def _graph(nodes, inputs, outputs, weights, name="m") -> hwcc.Graph:
    g = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(k, t, s) for k, (t, s) in inputs.items()],
        [helper.make_tensor_value_info(k, F, s) for k, s in outputs.items()],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    return hwcc.load(model)


def lstm() -> hwcc.Graph:
    """x [T, 1, 3] (time on axis 0), h/c [1, 1, HID] in; scores [T, 2], hn, cn out."""
    r = np.random.default_rng(0)
    w = {
        "W": r.normal(0, 0.5, (1, 4 * HID, 3)).astype(np.float32),
        "R": r.normal(0, 0.5, (1, 4 * HID, HID)).astype(np.float32),
        "Wo": r.normal(0, 0.5, (HID, 2)).astype(np.float32),
        "ax": np.array([1, 2], np.int64),
    }
    N = helper.make_node
    nodes = [
        N("LSTM", ["x", "W", "R", "", "", "h", "c"], ["y", "hn", "cn"], hidden_size=HID),
        N("Squeeze", ["y", "ax"], ["ys"]),
        N("MatMul", ["ys", "Wo"], ["scores"], name="head"),
    ]
    ins = {"x": (F, [T, 1, 3]), "h": (F, [1, 1, HID]), "c": (F, [1, 1, HID])}
    outs = {"scores": [T, 2], "hn": [1, 1, HID], "cn": [1, 1, HID]}
    return _graph(nodes, ins, outs, w, "lstm")


def scaled() -> hwcc.Graph:
    """x [1, 4] and a 0-d scale s: y = (x @ W) * s, [1, 3]."""
    w = {"W": np.random.default_rng(1).normal(0, 1, (4, 3)).astype(np.float32)}
    N = helper.make_node
    nodes = [N("MatMul", ["x", "W"], ["xw"], name="fc"), N("Mul", ["xw", "s"], ["y"])]
    return _graph(nodes, {"x": (F, [1, 4]), "s": (F, [])}, {"y": [1, 3]}, w, "scaled")


def axis1_state() -> hwcc.Graph:
    """x [1, 4] and a state [2, 1, 4] (batch on axis 1): y = (x + Σ_0 state) @ W, [1, 3];
    the new state is the old one plus x."""
    w = {
        "W": np.random.default_rng(2).normal(0, 1, (4, 3)).astype(np.float32),
        "ax": np.array([0], np.int64),
    }
    N = helper.make_node
    nodes = [
        N("ReduceSum", ["state", "ax"], ["rs"], keepdims=0),
        N("Add", ["x", "rs"], ["xs"]),
        N("MatMul", ["xs", "W"], ["y"], name="fc"),
        N("Add", ["state", "x"], ["stateN"]),
    ]
    ins = {"x": (F, [1, 4]), "state": (F, [2, 1, 4])}
    return _graph(nodes, ins, {"y": [1, 3], "stateN": [2, 1, 4]}, w, "axis1")


def _ort(graph: hwcc.Graph, feed) -> list[np.ndarray]:
    s = ort.InferenceSession(
        to_proto(graph).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return s.run(None, feed)


def _frames(runs: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (runs * T, 1, 3)).astype(np.float32)


ZEROS = np.zeros((1, 1, HID), np.float32)


# -- each layout: the runs fed to the model ----------------------------------------------


def test_time_major_samples_and_one_state_for_all_runs():
    g, x = lstm(), _frames(3)
    data = load_dataset(g, {"x": x, "h": ZEROS, "c": ZEROS})
    kinds = {k: v.kind for k, v in data.layout.inputs.items()}
    assert kinds == {"x": SAMPLES, "h": SAME, "c": SAME}
    assert data.runs == 3 and len(data) == 3 * T  # samples are frames
    feeds = split_batches(g, data.inputs)
    assert len(feeds) == 3
    for i, feed in enumerate(feeds):
        np.testing.assert_array_equal(feed["x"], x[i * T : (i + 1) * T])  # frames in order
        np.testing.assert_array_equal(feed["h"], ZEROS)


def test_stacked_states_give_each_run_its_own():
    g, x = lstm(), _frames(3)
    h = np.random.default_rng(3).normal(0, 1, (3, 1, 1, HID)).astype(np.float32)
    data = load_dataset(g, {"x": x, "h": h, "c": np.stack([ZEROS] * 3)})
    assert data.layout.inputs["h"].kind == RUNS and data.runs == 3
    for i, feed in enumerate(split_batches(g, data.inputs)):
        np.testing.assert_array_equal(feed["h"], h[i])
        expected = _ort(g, {"x": x[i * T : (i + 1) * T], "h": h[i], "c": ZEROS})[0]
        np.testing.assert_allclose(_ort(g, feed)[0], expected, rtol=1e-6)


def test_a_scalar_input_once_or_per_run():
    g = scaled()
    x = np.random.default_rng(4).normal(0, 1, (6, 4)).astype(np.float32)
    once = split_batches(g, load_dataset(g, {"x": x, "s": np.float32(2.0)}).inputs)
    per_run = split_batches(
        g, load_dataset(g, {"x": x, "s": np.arange(6, dtype=np.float32)}).inputs
    )
    assert len(once) == len(per_run) == 6
    for i in range(6):
        assert once[i]["s"].shape == () and once[i]["s"] == 2.0 and per_run[i]["s"] == i
        np.testing.assert_allclose(
            _ort(g, per_run[i])[0], (x[i : i + 1] @ g.tensors["W"].data) * i, rtol=1e-5
        )


def test_a_state_with_its_batch_on_axis_1():
    g = axis1_state()
    x = np.random.default_rng(5).normal(0, 1, (4, 4)).astype(np.float32)
    states = np.random.default_rng(6).normal(0, 1, (4, 2, 1, 4)).astype(np.float32)
    for state in (states, states.reshape(8, 1, 4)):  # stacked runs, or runs joined on axis 0
        feeds = split_batches(g, load_dataset(g, {"x": x, "state": state}).inputs)
        assert [f["state"].shape for f in feeds] == [(2, 1, 4)] * 4
        np.testing.assert_array_equal(feeds[2]["state"], states[2])


def test_the_classic_layout_keeps_its_meaning():
    g = scaled()  # s one run for all; x: samples on axis 0, one per run (batch 1)
    x = np.ones((5, 4), np.float32)
    assert len(split_batches(g, {"x": x, "s": np.float32(1)}, max_samples=3)) == 3
    free = hwcc.load(to_proto(scaled()))
    free.tensors["x"].shape = ("N", 4)  # a free axis 0: all samples in one run, as before
    assert [f["x"].shape for f in split_batches(free, {"x": x, "s": np.float32(1)})] == [(5, 4)]
    g = lstm()
    r = random_dataset(g, 40, seed=0)  # inputs' axes 0 differ: stacked runs
    assert {k: v.kind for k, v in r.layout.inputs.items()} == dict.fromkeys("xhc", RUNS)
    assert r.runs == 10 and r.inputs["h"].shape == (10, 1, 1, HID)


# -- the consumers -----------------------------------------------------------------------


def test_split_by_whole_runs_and_labels_follow_their_runs():
    g, x = lstm(), _frames(10)
    labels = np.arange(10 * T) % 2
    data = load_dataset(g, {"x": x, "h": ZEROS, "c": ZEROS, "labels": labels})
    tune, held = split_dataset(data, 0.2, seed=0)
    assert (tune.runs, held.runs) == (8, 2) and len(held) == 2 * T
    frame = x.reshape(10, T, 1, 3)
    for part in (tune, held):
        runs = part.inputs["x"].reshape(-1, T, 1, 3)
        index = [int(np.flatnonzero((frame == r).all(axis=(1, 2, 3)))[0]) for r in runs]
        np.testing.assert_array_equal(part.labels, labels.reshape(10, T)[index].ravel())
    assert split_batches(g, held.inputs)[0]["h"].shape == (1, 1, HID)


def test_the_evaluator_runs_every_held_out_run():
    g = axis1_state()
    x = np.random.default_rng(7).normal(0, 1, (6, 4)).astype(np.float32)
    data = load_dataset(g, {"x": x, "state": np.zeros((2, 1, 4), np.float32)})
    ev = Evaluator(g, data)
    assert ev.outputs(g).shape == (6, 3) and ev.accuracy(g) == pytest.approx(1.0)
    assert "6" in ev.kind


def test_calibration_gets_whole_runs_it_can_read():
    from passes.lib.calibration import calibration_feeds

    g, x = lstm(), _frames(3)
    data = load_dataset(g, {"x": x, "h": ZEROS, "c": ZEROS})
    head = data.head(2 * T)
    assert head["x"].shape == (2 * T, 1, 3) and head["h"].shape == (2, 1, HID)
    cal = calibration_feeds(
        g, head, "", random_ok=False, samples=64, seed=0, required=True, who="t", purpose="p"
    )
    assert len(cal.feeds) == 2 and all(f["h"].shape == (1, 1, HID) for f in cal.feeds)
    assert data.head(1)["x"].shape == (T, 1, 3)  # at least one whole run


@pytest.mark.parametrize("model", [lstm, axis1_state, scaled])
def test_finetune_trains_on_whole_runs(model):
    from hwcc.train.finetune import finetune

    g, r = model(), np.random.default_rng(8)
    x = r.normal(0, 1, (4, 4)).astype(np.float32)
    if model is lstm:
        inputs = {"x": _frames(4), "h": ZEROS, "c": ZEROS}
    elif model is axis1_state:
        inputs = {"x": x, "state": r.normal(0, 1, (4, 2, 1, 4)).astype(np.float32)}
    else:
        inputs = {"x": x, "s": np.float32(0.5)}
    noisy = g.copy()
    for name in ("W", "Wo"):
        if name in noisy.tensors:
            w = noisy.tensors[name].data
            noisy.tensors[name].data = w + r.normal(0, 0.5, w.shape).astype(np.float32)
    # a constant rate: what is tested is training on runs, not the schedule's decay
    kw = {"steps": 20, "batch_size": 2, "lr": 0.05, "seed": 0, "schedule": "constant"}
    result = finetune(noisy, inputs, teacher=g, **kw)
    assert result.steps == 20 and all(math.isfinite(v) for v in result.losses)

    def gap(student: hwcc.Graph) -> float:  # distance to the teacher's softmax, every run
        soft = lambda m, f: np.exp(_ort(m, f)[0]) / np.exp(_ort(m, f)[0]).sum(-1, keepdims=True)  # noqa: E731
        feeds = split_batches(g, inputs)
        return sum(float(np.abs(soft(student, f) - soft(g, f)).mean()) for f in feeds)

    assert gap(result.graph) < 0.7 * gap(noisy)


def test_a_whole_compile_on_a_stateful_model():
    g, x = lstm(), _frames(20)
    result = hwcc.compile(g, "eyeriss", "90%", data={"x": x, "h": ZEROS, "c": ZEROS}, **FAST)
    assert result.exit_code in (0, 3) and result.summary.to_json()


# -- errors: what, where, what to do ------------------------------------------------------


def test_arrays_that_disagree_on_the_runs():
    g = axis1_state()  # a state repeated per sample on axis 0: 2 runs' worth, x has 4
    x, state = np.ones((4, 4), np.float32), np.zeros((4, 1, 4), np.float32)
    with pytest.raises(HwccError) as err:
        load_dataset(g, {"x": x, "state": state})
    text = str(err.value)
    assert "different numbers of runs" in text and "x 4" in text and "state 2" in text
    assert "runs of 2" in text and "exact shape" in err.value.hint


def test_a_shape_that_fits_no_layout():
    with pytest.raises(HwccError) as err:
        load_dataset(axis1_state(), {"x": np.ones((4, 4), np.float32), "state": np.ones((2, 3, 4))})
    assert "'state'" in str(err.value) and "[2, 1, 4]" in str(err.value)
    assert "[R, 2, 1, 4] (R runs)" in err.value.hint and "one run" in err.value.hint
    with pytest.raises(HwccError, match="single value"):
        load_dataset(lstm(), {"x": np.float32(1), "h": ZEROS, "c": ZEROS})
    with pytest.raises(HwccError, match=r"5 samples, which do not split into runs of .* 4"):
        load_dataset(lstm(), {"x": _frames(2)[:5], "h": ZEROS, "c": ZEROS})
    with pytest.raises(HwccError, match="different numbers of samples"):
        load_dataset(lstm(), {"x": _frames(2), "h": ZEROS, "c": ZEROS, "labels": np.zeros(7, int)})


def test_a_file_is_named_in_the_message(tmp_path):
    path = tmp_path / "D.npz"
    np.savez(path, x=np.ones((4, 4), np.float32), state=np.zeros((4, 1, 4), np.float32))
    with pytest.raises(HwccError, match=f"^{path}: the arrays give different numbers of runs"):
        load_dataset(axis1_state(), path)


def test_a_model_that_moves_its_batch_inside_is_trained_one_run_at_a_time():
    """[1, 8] -> Reshape [2, 1, 4] (the batch of 1 moves to axis 1, as a CNN's features do on
    their way into a time-major LSTM) -> Reshape [1, 8]: samples stacked on axis 0 cannot
    pass, so the fine-tuner runs the model at its own shapes, one run per sample."""
    from onnx import helper, numpy_helper

    from hwcc.train.finetune import _batch_flows, finetune
    from hwcc.train.graph_module import to_torch

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([2, 1, 4], np.int64), "s1"),
        numpy_helper.from_array(np.array([1, 8], np.int64), "s2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Reshape", ["h", "s1"], ["t"]),
        helper.make_node("Relu", ["t"], ["r"]),
        helper.make_node("Reshape", ["r", "s2"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", 1, [1, 8])
    y = helper.make_tensor_value_info("y", 1, [1, 8])
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    graph = hwcc.load(model)
    data = {"x": rng.standard_normal((16, 8)).astype(np.float32)}
    labels = rng.integers(0, 8, 16)
    assert not _batch_flows(to_torch(graph), graph, data)
    result = finetune(graph, data, labels, steps=30, batch_size=8, lr=0.05, seed=0)
    assert result.losses[-1] < result.losses[0]
