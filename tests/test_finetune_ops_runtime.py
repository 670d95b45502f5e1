"""finetune's torch executor against onnxruntime where an op's integer operands (Reduce*'s
axes, Slice's starts/ends/axes/steps, Split's split, Squeeze/Unsqueeze's axes, Pad's pads,
constant_value and axes, TopK's k) are graph inputs, known only at run time; and the same
operands as constants (read once when the module is built); TopK's ties and Reduce{Max,Min}
over an empty axis. Explicit tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import check_against_ort
from onnx import helper

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

N = helper.make_node
F32, I64 = np.float32, np.int64
RTOL, ATOL = 1e-5, 1e-6


def check(node, feeds: dict, outputs: dict, opset: int, const: tuple = ()) -> None:
    """The torch executor's outputs equal onnxruntime's (shape, dtype, values), with the
    operands named in ``const`` as initializers and every other one a graph input."""
    inits = {k: v for k, v in feeds.items() if k in const}
    feeds = {k: v for k, v in feeds.items() if k not in const}
    check_against_ort([node], feeds, inits, outputs, opset=opset, rtol=RTOL, atol=ATOL)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


def i64(*v):
    return np.array(v, I64)


# ---------------------------------------------------------------------- reductions
REDUCE = [
    ("ReduceSum", 13),
    ("ReduceMean", 18),
    ("ReduceMax", 18),
    ("ReduceMin", 18),
    ("ReduceProd", 18),
    ("ReduceL2", 18),
    ("ReduceLogSumExp", 18),
]


@pytest.mark.parametrize("op, opset", REDUCE)
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", [(-1, 0), (1,), ()], ids=["neg", "one", "empty"])
def test_reduce_axes_at_run_time(op, opset, keepdims, axes):
    """Negative axes; empty axes reduce every axis (noop_with_empty_axes=0)."""
    node = N(op, ["x", "axes"], ["y"], keepdims=keepdims)
    check(node, {"x": rand(2, 3, 4), "axes": i64(*axes)}, {"y": F32}, opset)


@pytest.mark.parametrize("op, opset", REDUCE)
def test_reduce_empty_axes_at_run_time_with_noop(op, opset):
    node = N(op, ["x", "axes"], ["y"], noop_with_empty_axes=1)
    check(node, {"x": rand(2, 3), "axes": i64()}, {"y": F32}, opset)


@pytest.mark.parametrize("op, opset", REDUCE)
def test_reduce_constant_axes_still_work(op, opset):
    node = N(op, ["x", "axes"], ["y"], keepdims=0)
    check(node, {"x": rand(2, 3, 4), "axes": i64(-2)}, {"y": F32}, opset, const=("axes",))


# ---------------------------------------------------------------------- Slice
SLICES = {
    "negative_axes": (i64(1, 0), i64(-1, 3), i64(-2, -1), i64(1, 1)),
    "clamped_bounds": (i64(-100, 2), i64(100, 2**62), i64(0, 1), i64(1, 2)),
    "negative_steps": (i64(-1, 20), i64(-100, 0), i64(0, 1), i64(-2, -1)),
    "negative_step_empty": (
        i64(
            0,
        ),
        i64(
            3,
        ),
        i64(
            1,
        ),
        i64(
            -1,
        ),
    ),
}


@pytest.mark.parametrize("name", SLICES)
@pytest.mark.parametrize("const", [(), ("starts", "ends", "axes", "steps")], ids=["run", "const"])
def test_slice_operands(name, const):
    starts, ends, axes, steps = SLICES[name]
    feeds = {"x": rand(4, 6, 5), "starts": starts, "ends": ends, "axes": axes, "steps": steps}
    node = N("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    check(node, feeds, {"y": F32}, 13, const)


def test_slice_default_axes_and_steps_at_run_time():
    feeds = {"x": rand(4, 6), "starts": i64(1, -4), "ends": i64(-1, 100)}
    check(N("Slice", ["x", "starts", "ends"], ["y"]), feeds, {"y": F32}, 13)


# ---------------------------------------------------------------------- Split
@pytest.mark.parametrize("axis", [1, -1])
def test_split_sizes_at_run_time(axis):
    node = N("Split", ["x", "split"], ["a", "b", "c"], axis=axis)
    check(node, {"x": rand(2, 7), "split": i64(3, 0, 4)}, dict.fromkeys("abc", F32), 13)


@pytest.mark.parametrize("size", [7, 9])
def test_split_num_outputs_uneven(size):
    node = N("Split", ["x"], ["a", "b", "c"], axis=0, num_outputs=3)
    check(node, {"x": rand(size, 2)}, dict.fromkeys("abc", F32), 18)


# ---------------------------------------------------------------------- Squeeze, Unsqueeze
def test_squeeze_axes_at_run_time():
    node = N("Squeeze", ["x", "axes"], ["y"])
    check(node, {"x": rand(1, 3, 1, 2, 1), "axes": i64(-1, 0)}, {"y": F32}, 13)


@pytest.mark.parametrize("axes", [(0, -1), (-2, 1, 5)])
def test_unsqueeze_axes_at_run_time(axes):
    node = N("Unsqueeze", ["x", "axes"], ["y"])
    check(node, {"x": rand(3, 4, 2), "axes": i64(*axes)}, {"y": F32}, 13)


# ---------------------------------------------------------------------- Pad
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("const", [(), ("pads", "axes")], ids=["run", "const"])
def test_pad_modes_with_pads_and_axes(mode, const):
    """Pads on the first and last axis of a 3-d tensor (torch's own pad handles neither
    reflect nor wrap there)."""
    feeds = {"x": rand(3, 4, 5), "pads": i64(2, 1, 1, 3), "axes": i64(0, -1)}
    node = N("Pad", ["x", "pads", "", "axes"], ["y"], mode=mode)
    check(node, feeds, {"y": F32}, 19, const)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_negative_pads_crop(mode):
    feeds = {"x": rand(3, 5), "pads": i64(-1, 2, 1, -2)}
    check(N("Pad", ["x", "pads"], ["y"], mode=mode), feeds, {"y": F32}, 19)


def test_pad_constant_value_at_run_time():
    feeds = {"x": rand(2, 3), "pads": i64(1, 0, 0, 2), "value": np.array(2.5, F32)}
    check(N("Pad", ["x", "pads", "value"], ["y"]), feeds, {"y": F32}, 13)


# ---------------------------------------------------------------------- TopK
@pytest.mark.parametrize("largest", [0, 1])
def test_topk_k_at_run_time(largest):
    node = N("TopK", ["x", "k"], ["v", "i"], axis=-1, largest=largest)
    check(node, {"x": rand(3, 6), "k": i64(4)}, {"v": F32, "i": I64}, 11)


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_ties_take_the_lower_index_first(largest):
    x = np.array([[1, 3, 3, 2, 3, 1], [0, 0, 0, 0, 0, 0]], F32)
    node = N("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)
    check(node, {"x": x, "k": i64(3)}, {"v": F32, "i": I64}, 11)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_max_min_of_an_empty_axis(op, keepdims):
    """ONNX: the reduction of nothing is the dtype's lowest (Max) or highest (Min) value."""
    node = N(op, ["x", "axes"], ["y"], keepdims=keepdims)
    check(node, {"x": np.zeros((2, 0, 4), F32), "axes": i64(1)}, {"y": F32}, 18)
