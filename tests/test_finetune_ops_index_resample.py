"""finetune's torch executor against onnxruntime for hwcc/train/ops/resample_ops.py: Resize
in each opset's form (scales or sizes, roi, axes), each coordinate transformation and
nearest mode it runs, Upsample, DepthToSpace and SpaceToDepth; the Resize settings it
refuses, refused by name; a fixed-batch Resize run at another batch.

The graph builder and the comparison are tests/test_finetune_ops_index.py's.
"""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import ATOL, RTOL, ort_per_sample
from onnx import helper
from test_finetune_ops_index import F32, check, model, rand

from hwcc.errors import HwccError
from hwcc.train.graph_module import to_torch, torch_outputs

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

N = helper.make_node
TRANSFORMS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
# name -> (scales, sizes) on a [2, 3, 6, 5] input: up, down, both, to sizes, to one row
TARGETS = {
    "up": ([1, 1, 2, 3], None),
    "down": ([1, 1, 0.5, 0.6], None),
    "mixed": ([1, 1, 1.5, 0.8], None),
    "sizes": (None, [2, 3, 9, 3]),
    "to_one": (None, [2, 3, 1, 7]),
}


def resize(target, opset=13, **attrs):
    """(nodes, inits) of a Resize of ``x`` to ``target`` (a TARGETS key) in opset ``opset``."""
    scales, sizes = TARGETS[target]
    inits = {"roi": np.zeros(0, F32)}
    if scales is not None:
        inits["scales"] = np.array(scales, F32)
        inputs = ["x", "roi", "scales"]
    else:
        inits["scales"] = np.zeros(0, F32)  # opset 11: scales must be there, and empty
        inits["sizes"] = np.array(sizes, np.int64)
        inputs = ["x", "roi", "scales", "sizes"] if opset == 11 else ["x", "", "", "sizes"]
        if opset > 11:
            inits = {"sizes": inits["sizes"]}
    if scales is not None and opset > 11:
        inputs, inits = ["x", "", "scales"], {"scales": inits["scales"]}
    return [N("Resize", inputs, ["y"], **attrs)], inits


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("nearest", NEAREST)
@pytest.mark.parametrize("transform", [*TRANSFORMS, "tf_half_pixel_for_nn"])
def test_resize_nearest(transform, nearest, target):
    nodes, inits = resize(
        target, mode="nearest", coordinate_transformation_mode=transform, nearest_mode=nearest
    )
    check(nodes, {"x": rand(2, 3, 6, 5)}, inits, {"y": F32}, 13, rtol=0, atol=0)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_resize_linear(transform, target):
    nodes, inits = resize(target, mode="linear", coordinate_transformation_mode=transform)
    check(nodes, {"x": rand(2, 3, 6, 5)}, inits, {"y": F32}, 13, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("target", ["up", "sizes"])
def test_resize_opset_11_roi_and_empty_scales(mode, target):
    nodes, inits = resize(target, 11, mode=mode)
    check(nodes, {"x": rand(2, 3, 6, 5)}, inits, {"y": F32}, 11, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.5, 0.4], [1, 1, 1.7, 2.5]])
def test_resize_opset_10_and_upsample(mode, scales):
    """Opset 10's Resize, Upsample of opset 9 (scales an input) and of opset 7 (an attribute)."""
    feeds, s = {"x": rand(2, 3, 6, 5)}, np.array(scales, F32)
    tol = {"rtol": 1e-5, "atol": 1e-6}
    check([N("Resize", ["x", "s"], ["y"], mode=mode)], feeds, {"s": s}, {"y": F32}, 10, **tol)
    if min(scales) >= 1:  # Upsample only enlarges
        check([N("Upsample", ["x", "s"], ["y"], mode=mode)], feeds, {"s": s}, {"y": F32}, 9, **tol)
        node = N("Upsample", ["x"], ["y"], mode=mode, scales=[float(v) for v in scales])
        check([node], feeds, {}, {"y": F32}, 7, **tol)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_opset_19_axes_and_half_pixel_symmetric(mode):
    for transform in ("half_pixel_symmetric", "half_pixel"):
        for name, value in (("scales", np.array([1.5, 0.6], F32)), ("sizes", np.array([4, 8]))):
            inputs = ["x", "", "scales"] if name == "scales" else ["x", "", "", "sizes"]
            node = N(
                "Resize",
                inputs,
                ["y"],
                mode=mode,
                axes=[-2, 3],
                coordinate_transformation_mode=transform,
            )
            check([node], {"x": rand(1, 2, 6, 5)}, {name: value}, {"y": F32}, 19, 1e-5, 1e-6)


def test_resize_1d_and_3d_nearest():
    node = N("Resize", ["x", "", "s"], ["y"], mode="nearest")
    check([node], {"x": rand(2, 7)}, {"s": np.array([1, 2.5], F32)}, {"y": F32}, 13, 0, 0)
    s = np.array([1, 1, 2, 0.5, 1.5], F32)
    check([node], {"x": rand(1, 2, 3, 4, 4)}, {"s": s}, {"y": F32}, 13, 0, 0)


def test_resize_at_a_fixed_batch_runs_any_batch():
    """Sizes that name the export's batch of 1 follow the batch the module is given."""
    graph = model(
        [N("Resize", ["x", "", "", "sizes"], ["y"], mode="linear")],
        {"x": rand(1, 2, 4, 4)},
        {"sizes": np.array([1, 2, 7, 9], np.int64)},
        {"y": F32},
        13,
    )
    x = rand(3, 2, 4, 4, seed=5)
    out = torch_outputs(graph, x, batch_size=3)[0]
    np.testing.assert_allclose(out, ort_per_sample(graph, x), rtol=RTOL, atol=ATOL)


def test_resize_passes_gradients():
    nodes, inits = resize("up", mode="linear")
    graph = model(nodes, {"x": rand(1, 1, 6, 5)}, inits, {"y": F32})
    x = torch.tensor(rand(1, 1, 6, 5), requires_grad=True)
    (y,) = to_torch(graph)(x)
    y.sum().backward()
    # Each output is a convex combination of inputs: the gradients sum to the output's size.
    assert float(x.grad.sum()) == pytest.approx(y.numel())


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"mode": "area"}, "mode='area' is not supported"),
        ({"coordinate_transformation_mode": "tf_crop"}, "mode='tf_crop' is not supported"),
        ({"keep_aspect_ratio_policy": "fit"}, "keep_aspect_ratio_policy"),
        ({"nearest_mode": "nearest"}, "nearest_mode='nearest'"),
    ],
)
def test_resize_refuses_what_it_does_not_run(attrs, message):
    graph = model(
        [N("Resize", ["x", "", "", "sizes"], ["y"], **attrs)],
        {"x": rand(1, 2, 4, 4)},
        {"sizes": np.array([1, 2, 8, 8], np.int64)},
        {"y": F32},
        19,
    )
    with pytest.raises(HwccError, match=r"node .*\(Resize\) in torch") as err:
        to_torch(graph)
    assert message in str(err.value)


# ---------------------------------------------------------------------- depth and space
@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    node = N("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)
    check([node], {"x": rand(2, 8, 3, 4)}, {}, {"y": F32}, 13, 0, 0)


@pytest.mark.parametrize("blocksize", [2, 3])
def test_space_to_depth(blocksize):
    node = N("SpaceToDepth", ["x"], ["y"], blocksize=blocksize)
    check([node], {"x": rand(2, 3, 6, 12)}, {}, {"y": F32}, 13, 0, 0)
