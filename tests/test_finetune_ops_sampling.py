"""The torch executor's signal, sampling and pooling ops against onnxruntime, one graph
each with explicit tolerances: DFT and STFT, the window functions (against ONNX's
reference, which onnxruntime lacks), GridSample, AffineGrid, cubic and cropping Resize,
DeformConv, LpPool and dilated pooling, MaxPool's indices and MaxUnpool, ConvTranspose
to an output shape, Col2Im and CenterCropPad.

Torch runs on one thread (the ``one_thread`` fixture in tests/conftest.py); the graph
builder and the check are in tests/finetune_graphs.py."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import check_against_ort, typed_model
from onnx import helper
from onnx.reference import ReferenceEvaluator

from hwcc.ir import onnx_io
from hwcc.train.graph_module import to_torch

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

N = helper.make_node
RNG = np.random.default_rng(11)


def _f(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _signal_cases():
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    return {
        "dft_onesided": (
            [N("DFT", ["x", "", "ax"], ["y"], onesided=1)],
            {"x": _f(2, 8, 1), "ax": i64(1)},
            20,
        ),
        "dft_inverse": ([N("DFT", ["x"], ["y"], inverse=1, axis=1)], {"x": _f(2, 6, 2)}, 17),
        "stft": (
            [N("STFT", ["x", "step", "w"], ["y"])],
            {"x": _f(1, 32, 1), "step": i64(4), "w": np.hanning(8).astype(np.float32)},
            17,
        ),
        "grid_sample": (
            [N("GridSample", ["x", "g"], ["y"], padding_mode="border", align_corners=1)],
            {"x": _f(1, 2, 4, 5), "g": RNG.uniform(-1.2, 1.2, (1, 3, 3, 2)).astype(np.float32)},
            16,
        ),
        "affine_grid": (
            [N("AffineGrid", ["t", "size"], ["y"])],
            {"t": _f(2, 2, 3), "size": i64(2, 1, 3, 4)},
            20,
        ),
        "lp_pool": (
            [
                N(
                    "LpPool",
                    ["x"],
                    ["y"],
                    kernel_shape=[2, 2],
                    dilations=[2, 1],
                    pads=[1, 0, 0, 1],
                    p=3,
                )
            ],
            {"x": _f(1, 2, 6, 5)},
            18,
        ),
        "avg_pool_dilated_ceil": (
            [
                N(
                    "AveragePool",
                    ["x"],
                    ["y"],
                    kernel_shape=[2, 2],
                    dilations=[2, 2],
                    strides=[2, 2],
                    ceil_mode=1,
                )
            ],
            {"x": _f(1, 2, 7, 6)},
            19,
        ),
        "center_crop_pad": (
            [N("CenterCropPad", ["x", "s"], ["y"])],
            {"x": _f(3, 5), "s": i64(4, 2)},
            18,
        ),
        "col2im": (
            [N("Col2Im", ["x", "img", "blk"], ["y"], strides=[1, 2], pads=[1, 0, 1, 0])],
            {"x": _f(1, 4, 18), "img": i64(5, 6), "blk": i64(2, 2)},
            18,
        ),
    }


@pytest.mark.parametrize("case", list(_signal_cases()))
def test_signal_and_sampling_ops_match_onnxruntime(case):
    nodes, feeds, opset = _signal_cases()[case]
    check_against_ort(nodes, feeds, {}, {"y": np.float32}, opset=opset, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "attrs",
    [
        {"mode": "cubic"},
        {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1},
        {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
        {"mode": "nearest", "keep_aspect_ratio_policy": "not_larger"},
        {"mode": "linear", "antialias": 1},
        {"mode": "cubic", "antialias": 1, "exclude_outside": 1},
    ],
    ids=["cubic", "cubic_exclude", "tf_crop", "keep_aspect", "antialias", "antialias_cubic"],
)
def test_resize_modes_match_onnxruntime(attrs):
    roi = np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2], np.float32)
    node = N("Resize", ["x", "roi", "", "sizes"], ["y"], extrapolation_value=-2.0, **attrs)
    feeds = {"x": _f(1, 2, 4, 5), "roi": roi, "sizes": np.array([1, 2, 7, 3], np.int64)}
    check_against_ort([node], feeds, {}, {"y": np.float32}, opset=19, rtol=1e-4, atol=1e-5)


def _pool_cases():
    w = _f(2, 3, 3, 3)
    return {
        "conv_transpose_output_shape": (
            [N("ConvTranspose", ["x", "w"], ["y"], strides=[3, 2], output_shape=[10, 8])],
            {"x": _f(1, 2, 3, 3), "w": w},
            {"y": np.float32},
        ),
        "conv_transpose_same_lower": (
            [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_LOWER")],
            {"x": _f(1, 2, 3, 4), "w": w},
            {"y": np.float32},
        ),
        "max_pool_indices": (
            [
                N(
                    "MaxPool",
                    ["x"],
                    ["y", "i"],
                    kernel_shape=[2, 3],
                    pads=[1, 0, 0, 2],
                    storage_order=1,
                )
            ],
            {"x": _f(2, 3, 5, 6)},
            {"y": np.float32, "i": np.int64},
        ),
        "max_unpool": (
            [
                N("MaxPool", ["x"], ["p", "i"], kernel_shape=[2, 2], strides=[2, 2]),
                N("MaxUnpool", ["p", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
            ],
            {"x": _f(1, 2, 4, 4)},  # a larger output_shape: onnxruntime and ONNX disagree
            {"y": np.float32},
        ),
        "dropout_mask": (
            [N("Dropout", ["x"], ["y", "mask"])],
            {"x": _f(2, 3)},
            {"y": np.float32, "mask": np.bool_},
        ),
    }


@pytest.mark.parametrize("case", list(_pool_cases()))
def test_pooling_and_transposed_convolution_match_onnxruntime(case):
    nodes, feeds, outs = _pool_cases()[case]
    check_against_ort(nodes, feeds, {}, outs, opset=13, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
def test_windows_match_onnx_reference(op, periodic):
    """onnxruntime does not run the window ops: ONNX's reference implementation judges."""
    feeds = {"n": np.array(10, np.int64)}
    graph = typed_model([N(op, ["n"], ["y"], periodic=periodic)], feeds, {}, {"y": np.float32}, 17)
    (ref,) = ReferenceEvaluator(onnx_io.to_proto(graph)).run(None, feeds)
    (out,) = to_torch(graph)(**feeds)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6, atol=1e-7)


def test_deform_conv_matches_onnxruntime():
    node = N(
        "DeformConv",
        ["x", "w", "off", "b", "m"],
        ["y"],
        pads=[1, 0, 1, 1],
        strides=[1, 2],
        group=2,
        offset_group=2,
    )
    feeds = {"x": _f(1, 4, 5, 6), "w": _f(6, 2, 2, 2), "b": _f(6)}
    feeds["off"] = _f(1, 2 * 2 * 4, 6, 3)
    feeds["m"] = RNG.random((1, 2 * 4, 6, 3)).astype(np.float32)
    check_against_ort([node], feeds, {}, {"y": np.float32}, opset=19, rtol=1e-4, atol=1e-5)


def test_col2im_in_three_dimensions_matches_onnxruntime():
    node = N("Col2Im", ["x", "img", "blk"], ["y"], strides=[1, 2, 1], pads=[0, 1, 0, 1, 0, 0])
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    feeds = {"x": _f(1, 2 * 8, 4 * 2 * 2), "img": i64(4, 4, 3), "blk": i64(2, 2, 2)}
    check_against_ort([node], feeds, {}, {"y": np.float32}, opset=18, rtol=1e-5, atol=1e-6)


def test_batch_normalization_in_training_mode_matches_onnxruntime():
    node = N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1)
    feeds = {"x": _f(3, 2, 4), "s": _f(2), "b": _f(2), "m": _f(2), "v": np.abs(_f(2))}
    outs = {"y": np.float32, "rm": np.float32, "rv": np.float32}
    check_against_ort([node], feeds, {}, outs, opset=15, rtol=1e-5, atol=1e-6)
