"""The ``cpu`` target against onnxruntime: the kernels it plans are the ones onnxruntime's
optimizer keeps (zoo models, the bench's random-width variants, each kernel model alone),
and its predicted latency against onnxruntime's, measured for real on this machine with a
fresh table (fidelity; slow).
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from cpu_helpers import _ort_kernels, plan_kernel_keys

import hwcc
from hwcc.ir.workload import analyze
from hwcc.targets.base import load_target
from hwcc.targets.cpu.kernel_model import kernel_graph
from hwcc.targets.cpu.kernels import plan_kernels
from hwcc.targets.cpu.target import CpuTarget


def _bench():
    """The width-variant generator of bench/cpu_fidelity.py, loaded from its file."""
    path = Path(__file__).resolve().parents[2] / "bench" / "cpu_fidelity.py"
    spec = importlib.util.spec_from_file_location("hwcc_bench_cpu_fidelity", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------- against onnxruntime
def _plan_kernels(g, block: int) -> list[tuple]:
    return plan_kernel_keys(g, block)


@pytest.fixture(scope="module")
def block():
    return load_target("cpu").table.block


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.mark.parametrize("name", ["lenet5-digits", "mobilenet-digits", "resnet-digits"])
def test_kernels_match_onnxruntime_zoo(name, block):
    from hwcc.models import zoo

    data = zoo.model_path(name).read_bytes()
    assert _plan_kernels(hwcc.load(onnx.load_from_string(data)), block) == _ort_kernels(data)


def test_kernels_match_onnxruntime_width_variants(block, bench):
    """Random channel counts cross every NCHWc rule (multiples of 4, of 16, C < 16)."""
    for name, data in bench.variants(12, seed=3, families=bench.FAMILIES_QUICK):
        assert _plan_kernels(hwcc.load(onnx.load_from_string(data)), block) == _ort_kernels(data), (
            name
        )


@pytest.mark.slow
def test_kernels_match_onnxruntime_large_variants(block, bench):
    for name, data in bench.variants(10, seed=5):
        assert _plan_kernels(hwcc.load(onnx.load_from_string(data)), block) == _ort_kernels(data), (
            name
        )


def test_kernel_models_run_as_written(block):
    """Each kernel model holds exactly its kernel after onnxruntime's optimizer."""
    from hwcc.models import zoo

    g = hwcc.load(zoo.model_path("resnet-digits"))
    seen = set()
    for k in plan_kernels(g, analyze(g), block).kernels:
        if k.spec["op"] in seen:
            continue
        seen.add(k.spec["op"])
        data = hwcc.ir.onnx_io.to_proto(
            kernel_graph(k.spec, block), value_info=False
        ).SerializeToString()
        with tempfile.TemporaryDirectory() as tmp:
            so = ort.SessionOptions()
            so.optimized_model_filepath, so.log_severity_level = f"{tmp}/o.onnx", 3
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
            nodes = onnx.load(so.optimized_model_filepath).graph.node
        assert [
            f"{n.domain}.{n.op_type}".lstrip(".").replace("com.microsoft.nchwc", "nchwc")
            for n in nodes
        ] == [k.spec["op"]]


# ---------------------------------------------------------------------- fidelity
def _fidelity(bench, n, families, report_line, label, rounds=20):
    """Run the bench's comparison on ``n`` width variants with a fresh table.

    ``error`` is the prediction at the machine's speed of the moment (a fixed reference
    kernel timed beside each model, see ``bench/cpu_fidelity.py``); the raw error and the
    noise floor (the same model timed twice) are reported too.
    """
    base = load_target("cpu")
    target = CpuTarget(
        "cpu", {**base.spec, "params": {**base.params, "rounds": rounds}}, base.source
    )
    with tempfile.TemporaryDirectory() as cache:
        old = os.environ.get("XDG_CACHE_HOME")
        os.environ["XDG_CACHE_HOME"] = cache  # a fresh table, measured now
        try:
            result = bench.evaluate(bench.variants(n, seed=0, families=families), target)
        finally:
            if old is None:
                os.environ.pop("XDG_CACHE_HOME")
            else:
                os.environ["XDG_CACHE_HOME"] = old
    s = result["summary"]
    report_line(
        f"cpu fidelity ({label}, {n} width variants): {s['error_within_10pct']:.0%} within +-10 % "
        f"(raw {s['raw_error_within_10pct']:.0%}), median |error| {s['error_median_abs']:.1%} "
        f"(raw {s['raw_error_median_abs']:.1%}), p90 {s['error_p90_abs']:.1%}; "
        f"noise floor (same model timed twice): median {s['noise_median_abs']:.1%} "
        f"(raw {s['raw_noise_median_abs']:.1%}), "
        f"p90 {s['noise_p90_abs']:.1%}"
    )
    return s


# timed on a shared machine: a claim measured in the slow suite and bench/, not a CI gate
@pytest.mark.slow
def test_fidelity_digits_width_variants(bench, report_line):
    """8 random-width variants of the digits models: >= 80 % within +-10 % of onnxruntime."""
    s = _fidelity(bench, 8, bench.FAMILIES_QUICK, report_line, "digits")
    assert s["error_within_10pct"] >= 0.8


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason="not met reliably: 77 % of 30 variants within +-10 % (bench, seed 0, with "
    "a noise floor of 97 %), 50-67 % on seed 7's, 80 % asked; ResNet-18 at 64x64 is predicted "
    "about 10 % low and MobileNet V2 at 64x64 about 8 % high",
)
def test_fidelity_30_width_variants(bench, report_line):
    """30 variants: digits models, MobileNet V2 and ResNet-18 at 64x64 (about 8 min)."""
    s = _fidelity(bench, 30, bench.FAMILIES, report_line, "digits + 64x64")
    assert s["error_within_10pct"] >= 0.8
    assert math.isfinite(s["error_median_abs"])


@pytest.mark.parametrize("kind", ["conv", "gemm"])
def test_fused_activations_match_onnxruntime(kind, block):
    """Every candidate activation between two convs (two Gemms), at a shape of its own:
    the planned kernels are onnxruntime's, whichever activations this build fuses."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from hwcc.targets.cpu.fusions import CANDIDATES

    rng = np.random.default_rng(1)
    for act in CANDIDATES:
        shape, w = ([1, 16, 10, 10], (16, 16, 3, 3)) if kind == "conv" else ([4, 24], (24, 24))
        op = "Conv" if kind == "conv" else "Gemm"
        attrs = {"pads": [1, 1, 1, 1]} if kind == "conv" else {}
        extra = ["lo", "hi"] if act == "Clip" else []
        nodes = [
            helper.make_node(op, ["x", "w", "b"], ["t"], **attrs),
            helper.make_node(act, ["t", *extra], ["u"]),
            helper.make_node(op, ["u", "w", "b"], ["y"], **attrs),
        ]
        inits = [
            numpy_helper.from_array(rng.standard_normal(w).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(w[0]).astype(np.float32), "b"),
            numpy_helper.from_array(np.array(0, np.float32), "lo"),
            numpy_helper.from_array(np.array(6, np.float32), "hi"),
        ]
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        graph = helper.make_graph(nodes, act, [x], [y], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
        data = model.SerializeToString()
        assert _plan_kernels(hwcc.load(model), block) == _inlined(_ort_kernels(data)), act


def _inlined(kernels: list[tuple]) -> list[tuple]:
    """onnxruntime's kernels with an unfused ``HardSwish`` as the planner lists it: one
    kernel, where onnxruntime runs its function body (``HardSigmoid`` then ``Mul``). The
    table times a one-node ``HardSwish`` model, which onnxruntime runs as the same two
    kernels, so the price is the same; only the listing differs."""
    out = list(kernels)
    pair = [(":HardSigmoid", "", None, False), (":Mul", "", None, False)]
    if all(k in out for k in pair):
        for k in pair:
            out.remove(k)
        out = sorted([*out, (":HardSwish", "", None, False)], key=repr)
    return out
