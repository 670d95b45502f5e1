"""The cpu target's planner against onnxruntime's Conv fusions that depend on how an
exporter wrote the graph: a constant scale or shift after a Conv folds into it only as
the second operand and with one value per channel (a scalar too, for a scale), and
``x · HardSigmoid(x)`` with α = 1/6 becomes a HardSwish fused into the Conv. Each case is
compared with the kernels onnxruntime's own optimizer keeps, on graphs where the rule must
fire and where it must not. Not replayed: a per-channel Mul with the constant first, which
onnxruntime runs as a depthwise 1x1 NCHWc conv of its own (planned as a Mul kernel)."""

from __future__ import annotations

import numpy as np
import pytest
from cpu_helpers import _ort_kernels, const, model, plan_kernel_keys, vi
from onnx import helper, numpy_helper

import hwcc
from hwcc.targets.base import load_target

C = 16


@pytest.fixture(scope="module")
def block():
    return load_target("cpu").table.block


def _same(m, block) -> list[tuple]:
    planned = plan_kernel_keys(hwcc.load(m), block)
    assert planned == _ort_kernels(m.SerializeToString())
    return planned


def _affine(op, shape, first=False, c=C):
    """Conv -> op(constant of ``shape``) -> Relu -> Conv."""
    k = numpy_helper.from_array(np.full(shape, 1.5, np.float32), "k")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["t"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node(op, ["k", "t"] if first else ["t", "k"], ["u"], name="aff"),
        helper.make_node("Relu", ["u"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w", "b"], ["y"], name="c2", pads=[1, 1, 1, 1]),
    ]
    inits = [const("w", c, c, 3, 3), const("b", c), k]
    return model(nodes, [vi("x", [1, c, 6, 6])], [vi("y", [1, c, 6, 6])], inits)


@pytest.mark.parametrize(
    "op,shape", [("Mul", ()), ("Mul", (C, 1, 1)), ("Add", (1, C, 1, 1)), ("Add", (C, 1, 1))]
)
def test_constant_second_per_channel_folds_into_the_conv(op, shape, block):
    kernels = _same(_affine(op, shape), block)
    assert not any(k[0] in (":Mul", ":Add") for k in kernels)


@pytest.mark.parametrize(
    "op,shape,first",
    [("Mul", (), True), ("Mul", (1,), False), ("Mul", (1, 1, 1, 1), False), ("Add", (), False)]
    + [("Add", (C, 1, 1), True)],
)
def test_constant_first_or_per_tensor_stays_a_kernel(op, shape, first, block):
    kernels = _same(_affine(op, shape, first), block)
    assert sum(k[0].endswith(op) for k in kernels) == 1


def _hard_swish(alpha=1 / 6, beta=0.5, shared=False, c=C):
    """Conv -> x · HardSigmoid(x) -> Conv, as the exact cleanup writes a hard-swish."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["t"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("HardSigmoid", ["t"], ["s"], name="hs", alpha=alpha, beta=beta),
        helper.make_node("Mul", ["t", "s"], ["u"], name="mul"),
        helper.make_node("Conv", ["u", "w", "b"], ["y"], name="c2", pads=[1, 1, 1, 1]),
    ]
    outs = [vi("y", [1, c, 6, 6])] + ([vi("s", [1, c, 6, 6])] if shared else [])
    inits = [const("w", c, c, 3, 3), const("b", c)]
    return model(nodes, [vi("x", [1, c, 6, 6])], outs, inits)


@pytest.mark.parametrize("c", [C, 3, 12])
def test_x_times_hard_sigmoid_fuses_as_hard_swish(c, block):
    kernels = _same(_hard_swish(c=c), block)
    assert [k[1] for k in kernels if "Conv" in k[0]].count("HardSwish") == 1


@pytest.mark.parametrize("kw", [{"alpha": 0.2}, {"beta": 0.4}, {"shared": True}], ids=str)
def test_x_times_hard_sigmoid_must_not_fuse(kw, block):
    kernels = _same(_hard_swish(**kw), block)
    assert "HardSwish" not in [k[1] for k in kernels]


def test_dynamic_int8_matmul_is_planned_and_timed_as_onnxruntime_runs_it(block):
    """quantize_dynamic's DynamicQuantizeMatMul is one kernel in onnxruntime and in the plan
    (with the Gemm before it), and its one-kernel model keeps exactly that kernel."""
    from hwcc.ir.onnx_io import to_proto
    from hwcc.ir.transform import PassContext, get_pass
    from hwcc.ir.workload import analyze
    from hwcc.targets.cpu.kernel_model import kernel_graph
    from hwcc.targets.cpu.kernels import plan_kernels

    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["m"], name="fc2"),
        helper.make_node("Add", ["m", "b2"], ["y"], name="bias"),
    ]
    inits = [const("w1", 128, 96), const("b1", 128), const("w2", 128, 64), const("b2", 64)]
    m = model(nodes, [vi("x", [4, 96])], [vi("y", [4, 64])], inits)
    q = get_pass("quantize_dynamic")(hwcc.load(m), PassContext(verify=False)).graph
    data = to_proto(q).SerializeToString()
    planned = plan_kernel_keys(q, block)
    assert planned == _ort_kernels(data)
    assert [k[0] for k in planned].count("com.microsoft:DynamicQuantizeMatMul") == 2
    for k in plan_kernels(q, analyze(q), block).kernels:
        if k.spec["op"] == "com.microsoft.DynamicQuantizeMatMul":
            one = to_proto(kernel_graph(k.spec, block), value_info=False).SerializeToString()
            assert [op for op, *_ in _ort_kernels(one)] == ["com.microsoft:DynamicQuantizeMatMul"]
