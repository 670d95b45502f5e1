"""``hwcc.ir.verify``: random feeds for every real input with its dtype, fixed shapes
required, per-output errors and changed shapes reported by ``compare``, what
``run_onnx`` cannot run, and models given as files or graphs."""

from __future__ import annotations

import numpy as np
import pytest
from pass_infra_passes import ATOL, RTOL, FlipSign, mul_relu

from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import compare, random_feeds, run_onnx


# ---------------------------------------------------------------------- hwcc.ir.verify
def test_random_feeds_cover_every_real_input_with_its_dtype():
    g = Graph("inputs")
    g.add_input("f", dtypes.FLOAT, (2, 3))
    g.add_input("i", dtypes.INT64, (50,))
    g.add_input("b", dtypes.BOOL, (50,))
    g.add_input("h", dtypes.FLOAT16, ())
    g.add_initializer("w", np.ones(2, np.float32))
    g.inputs.append("w")
    feeds = random_feeds(g, seed=1)
    assert set(feeds) == {"f", "i", "b", "h"}
    assert feeds["f"].dtype == np.float32 and feeds["f"].shape == (2, 3)
    assert feeds["i"].dtype == np.int64 and 0 <= feeds["i"].min() and feeds["i"].max() < 4
    assert feeds["b"].dtype == np.bool_ and feeds["b"].any() and not feeds["b"].all()
    assert feeds["h"].dtype == np.float16 and feeds["h"].shape == ()
    again = random_feeds(g, seed=1)
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)
    assert not np.array_equal(feeds["f"], random_feeds(g, seed=2)["f"])


def test_random_feeds_need_fixed_shapes():
    g = Graph("dynamic")
    g.add_input("x", dtypes.FLOAT, ("N", 3))
    with pytest.raises(HwccError, match="dynamic shape") as err:
        random_feeds(g, seed=0)
    assert "--input-shape x:" in err.value.hint


def test_compare_reports_per_output_errors():
    g = mul_relu()
    wrong = FlipSign().call(g, PassContext()).graph
    v = compare(g, wrong, rtol=RTOL, atol=ATOL, n=3)
    assert not v.passed and v.samples == 3 and [o.name for o in v.outputs] == ["y"]
    feeds = {"x": np.ones((2, 3), np.float32)}
    (y,) = run_onnx(wrong, feeds)
    assert (y == 0).all()  # Relu(-w) on positive inputs
    exact = compare(g, g, rtol=0, atol=0, feeds=feeds)
    assert exact.passed and exact.max_abs_err == 0 and exact.samples == 1


def test_compare_flags_a_changed_shape():
    g = mul_relu()
    reshaped = g.copy()
    reshaped.add_initializer("flat", np.array([6], np.int64))
    reshaped.add_node("Reshape", ["i"], ["r"])
    reshaped.set_inputs(reshaped.node("relu"), ["r"])
    reshaped.set_inputs(reshaped.find("Reshape")[0], ["i", "flat"])
    onnx_io.infer_shapes(reshaped)
    v = compare(g, reshaped, rtol=RTOL, atol=ATOL)
    assert not v.passed and "shape changed to [6]" in v.summary()


def test_run_onnx_explains_what_it_cannot_run():
    g = mul_relu()
    g.add_node("Frobnicate", ["y"], ["z"], domain="com.example")
    g.opset_imports["com.example"] = 1
    g.outputs.append("z")
    g.tensors["z"].elem_type = dtypes.FLOAT
    with pytest.raises(HwccError, match="onnxruntime cannot load the model"):
        run_onnx(g, {"x": np.ones((2, 3), np.float32)})
    with pytest.raises(HwccError, match="no value given for model input"):
        run_onnx(mul_relu(), {})


def test_compare_takes_files_and_graphs(tmp_path):
    g = mul_relu()
    path = onnx_io.save(g, tmp_path / "m.onnx")
    v = compare(
        str(path), get_pass("eliminate_dead")(g, PassContext(verify=False)).graph, rtol=0, atol=0
    )
    assert v.passed and v.samples == 2


@pytest.mark.parametrize("value, want", [("1", 1), ("3", 3), ("", 0), ("0", 0), ("two", 0)])
def test_sessions_keep_to_the_thread_cap_of_the_process(monkeypatch, value, want):
    """A tuning job's worker runs under OMP_NUM_THREADS=1 (its one CPU): onnxruntime, which
    reads only its own setting, must not start a thread per core beside it."""
    from hwcc.ir.verify import Session, thread_cap

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert thread_cap() == want
    session = Session(mul_relu()).session
    assert session.get_session_options().intra_op_num_threads == want
