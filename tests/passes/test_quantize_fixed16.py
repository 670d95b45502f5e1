"""quantize_fixed16: 16-bit dynamic fixed point, one format per layer. Formats by hand,
structure and numbers on the same graphs, accuracy on the digits test split, and where the
pass must not fire."""

from __future__ import annotations

import numpy as np
import pytest

import hwcc
from hwcc.formats import fixed_point as _fixed_point
from hwcc.ir import Graph, workload
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import run_onnx
from hwcc.testing import shared_weight_graph, weight_of


def fixed16(graph: Graph, ctx_data=None, verify=False, **knobs):
    ctx = PassContext(verify=verify, data=ctx_data, knobs={"quantize_fixed16": knobs})
    return get_pass("quantize_fixed16")(graph, ctx)


@pytest.mark.parametrize(
    "lo,hi,f",
    [
        (-1.0, 1.0, 14),
        (-1.0, 0.5, 15),
        (0.0, 0.0, 15),
        (-0.5000001, 0.0, 16),
        (-3.0, 100.0, 8),
        (0.0, 1e-3, 24),
    ],
)
def test_frac_bits_fit_the_range(lo, hi, f):
    assert _fixed_point.frac_bits(lo, hi) == f
    q = np.round(np.array([lo, hi]) * 2.0**f)
    assert q.min() >= -32768 and q.max() <= 32767
    if hi or lo:  # one more fraction bit would overflow
        q1 = np.round(np.array([lo, hi]) * 2.0 ** (f + 1))
        assert q1.min() < -32768 or q1.max() > 32767


def test_fixed16_zoo_values_sqnr_and_outputs(
    lenet5, train_x, tmp_path, digits_accuracy, digits_logits
):
    result = fixed16(lenet5, {"input": train_x}, verify=True)
    for name, info in result.details["layers"].items():
        w0, w = weight_of(lenet5, name), weight_of(result.graph, name).astype(np.float64)
        f = info["weight_frac_bits"]
        steps = w * 2.0**f
        # multiples of 2^-f
        assert np.array_equal(steps, np.round(steps)) and np.abs(steps).max() <= 32768
        assert np.abs(w - w0).max() <= 2.0 ** -(f + 1)  # round to nearest
        assert info["sqnr_db"] > 75
        meta = result.graph.node(name).meta
        assert meta["weight_bits"] == 16 and meta["act_bits"] == 16
        assert meta["fixed_point"] == {
            "total_bits": 16,
            "weight_frac_bits": f,
            "act_frac_bits": info["act_frac_bits"],
            "out_frac_bits": info["out_frac_bits"],
        }
    # The input pixels lie in [0, 1]: 14 fraction bits (1.0·2^15 would overflow).
    assert result.details["layers"]["/0/Conv"]["act_frac_bits"] == 14
    ref, out = digits_logits(lenet5), digits_logits(result.graph)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    assert digits_accuracy(result.graph, tmp_path, "fx") == digits_accuracy(lenet5, tmp_path, "f")
    flags = {x.name: x.flags for x in workload.analyze(result.graph).layers}
    assert "fixed_point" in flags["/0/Conv"]


def test_fixed16_without_data_leaves_activations_unset():
    g = hwcc.load("zoo:resnet-digits")
    result = fixed16(g)
    assert result.details["calibration_data"] is None
    for name, info in result.details["layers"].items():
        assert info["act_frac_bits"] is None and "act_bits" not in result.graph.node(name).meta
        assert info["sqnr_db"] > 70
    again = fixed16(result.graph)
    assert not again.modified  # already 16-bit fixed point, already annotated


def test_fixed16_shared_weight_stays_shared():
    rng = np.random.default_rng(0)
    g = shared_weight_graph(rng.normal(size=(6, 6)).astype(np.float32))
    result = fixed16(g)
    assert [n.inputs[1] for n in result.graph.find("MatMul")] == ["w", "w"]
    x = rng.normal(size=(1, 6)).astype(np.float32)
    wq = result.graph.initializer("w")
    np.testing.assert_allclose(
        run_onnx(result.graph, {"x": x})[0], x @ wq @ wq, rtol=1e-5, atol=1e-5
    )
