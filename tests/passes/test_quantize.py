"""quantize: the three quantize passes under one name, by ``mode``. Each mode gives what its
pass gives, knobs reach the chosen pass, a knob of another mode is an error, and none of
the quantize passes fires where there is nothing to quantize."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hwcc
from hwcc.cli.apply_view import apply_by_hand
from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes
from hwcc.ir.transform import PassContext, get_pass
from hwcc.models import digits
from hwcc.passes.quantize import Quantize
from hwcc.testing import gemm_graph

MODES = ("int8", "kmeans", "fixed16")
# Every quantize pass: the alias in each mode, and each pass by its own name.
VARIANTS = [pytest.param("quantize", {"mode": m}, id=f"quantize-{m}") for m in MODES] + [
    pytest.param(f"quantize_{m}", {}, id=f"quantize_{m}") for m in MODES
]


def quantize(graph: Graph, ctx_data=None, pass_=None, verify=False, **knobs):
    ctx = PassContext(verify=verify, data=ctx_data, knobs={"quantize": knobs})
    return (pass_ or get_pass("quantize"))(graph, ctx)


def run(name: str, graph: Graph, **knobs):
    return get_pass(name)(graph, PassContext(verify=False, knobs={name: knobs}))


# ====================================================================== dispatch
@pytest.mark.parametrize(
    "mode, knobs",
    [
        ("kmeans", {"bits": 3, "zero_slot": True}),
        ("fixed16", {"layers": "/0/Conv,/6/Gemm"}),
        ("int8", {"samples": 8}),
    ],
)
def test_each_mode_gives_what_its_pass_gives(lenet5, train_x, mode, knobs):
    by_mode = quantize(lenet5, {"input": train_x}, mode=mode, **knobs)
    ctx = PassContext(verify=False, data={"input": train_x}, knobs={f"quantize_{mode}": knobs})
    direct = get_pass(f"quantize_{mode}")(lenet5, ctx)
    assert by_mode.modified and direct.modified and by_mode.details["mode"] == mode
    assert set(by_mode.details["layers"]) == set(direct.details["layers"])
    assert by_mode.details["sqnr_db"] == direct.details["sqnr_db"]
    a, b = by_mode.graph, direct.graph
    assert [n.op_type for n in a.nodes] == [n.op_type for n in b.nodes]
    assert a.initializers.keys() == b.initializers.keys()
    assert all(np.array_equal(a.initializer(k), b.initializer(k)) for k in a.initializers)
    assert all(n.meta == b.node(n.name).meta for n in a.nodes)


def test_constructor_arguments_reach_the_chosen_pass(lenet5):
    result = quantize(
        lenet5, pass_=Quantize(layers=["/6/Gemm"], layer_bits={"/6/Gemm": 3}), mode="kmeans"
    )
    assert set(result.details["layers"]) == {"/6/Gemm"}
    assert result.details["layers"]["/6/Gemm"]["bits"] == 3
    with pytest.raises(HwccError, match="'layer_bits' does not apply to mode=fixed16"):
        quantize(lenet5, pass_=Quantize(layer_bits={"/6/Gemm": 3}), mode="fixed16")


def test_int8_from_npz_through_apply_by_hand_knob_or_flag(tmp_path):
    g = hwcc.load("zoo:lenet300-digits")
    path = digits.write_npz("train", tmp_path / "calib.npz")  # has 'labels' too: ignored
    report = apply_by_hand(
        g,
        "quantize",
        {"mode": "int8", "data": str(path), "samples": "64"},
        verify=True,
        rtol=1e-4,
        atol=1e-5,
    )
    assert report.modified and report.ops_after["QuantizeLinear"] > 0
    assert report.result.details["calibration_data"] == "64 samples of the given data"
    # --data
    by_flag = apply_by_hand(
        g,
        "quantize",
        {"mode": "int8", "samples": "8"},
        data=str(path),
        verify=False,
        rtol=0,
        atol=0,
    )
    assert by_flag.result.details["calibration_data"] == "8 samples of the given data"


def test_kmeans_only_knobs_are_errors_in_other_modes(lenet5):
    for knob, value in (("zero_slot", True), ("codebook_bits", 16)):
        for mode in ("int8", "fixed16"):
            with pytest.raises(HwccError, match=f"'{knob}' does not apply to mode={mode}"):
                quantize(lenet5, mode=mode, **{knob: value})
    with pytest.raises(HwccError, match="cannot be 25"):
        apply_by_hand(
            lenet5,
            "quantize",
            {"mode": "kmeans", "codebook_bits": "25"},
            verify=False,
            rtol=0,
            atol=0,
        )


def test_knobs_for_another_mode_and_bad_names_are_errors(lenet5):
    with pytest.raises(HwccError, match="'bits' does not apply to mode=int8"):
        quantize(lenet5, mode="int8", bits=4)
    with pytest.raises(HwccError, match="'calibration' does not apply to mode=kmeans"):
        quantize(lenet5, mode="kmeans", calibration="entropy")
    with pytest.raises(HwccError, match="no Conv, Gemm or MatMul named 'conv9'"):
        quantize(lenet5, mode="kmeans", layers="conv9")
    with pytest.raises(HwccError, match="cannot be 9"):
        apply_by_hand(
            lenet5, "quantize", {"mode": "kmeans", "bits": "9"}, verify=False, rtol=0, atol=0
        )
    with pytest.raises(HwccError, match="'/8/Gemm' cannot be changed: it is not among the layers"):
        quantize(lenet5, mode="kmeans", layers="/0/Conv", layer_bits="/8/Gemm=3")
    with pytest.raises(HwccError, match="cannot read layer_bits"):
        quantize(lenet5, mode="kmeans", layer_bits="/0/Conv=eight")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # kmeans needs no data and warns about nothing
        assert quantize(lenet5, mode="kmeans", bits=8, layers="/8/Gemm").modified


# ====================================================================== must not fire
@pytest.mark.parametrize("name, knobs", VARIANTS)
def test_not_without_weighted_layers(name, knobs):
    g = Graph("relu")
    g.add_input("x", dtypes.FLOAT, (2, 3))
    g.add_node("Relu", ["x"], ["y"])
    g.outputs.append("y")
    result = run(name, g, **knobs)
    assert not result.modified and result.reason == "the graph has no Conv, Gemm or MatMul"


@pytest.mark.parametrize("name, knobs", VARIANTS)
def test_not_with_an_empty_layer_list(lenet5, name, knobs):
    result = run(name, lenet5, layers="", **knobs)
    assert not result.modified and result.graph is lenet5
    assert result.reason == "the layers list is empty"


@pytest.mark.parametrize("name, knobs", VARIANTS)
def test_not_for_runtime_weights(name, knobs):
    g = gemm_graph(np.ones((3, 4)))
    g.add_input("w_in", dtypes.FLOAT, (3, 4))
    g.set_input(g.node("fc"), 1, "w_in")
    result = run(name, g, **knobs)
    assert not result.modified
    assert "no Conv, Gemm or MatMul has constant float weights" in result.reason
    with pytest.raises(HwccError, match="cannot be changed"):
        run(name, g, layers="fc", **knobs)
