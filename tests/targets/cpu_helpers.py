"""Helpers for the cpu target's tests (tests/targets/test_cpu_*.py).

:class:`FakeMeasure` stands in for the timer and :func:`fake_target` is the cpu target on
a table of its fake measurements (``FP`` is that table's fingerprint), so that every cost
can be worked out on paper. :func:`model`, :func:`vi` and :func:`const` write ONNX models,
:func:`conv_bn_relu` and :func:`gemm` are the small ones the tests price. :func:`_gemm_spec`
is the kernel spec of a one-row Gemm; :func:`_ort_kernels` lists the kernels onnxruntime's
optimizer keeps of a model.
"""

from __future__ import annotations

import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from hwcc.ir.workload import analyze
from hwcc.targets.base import load_target
from hwcc.targets.cpu.kernels import plan_kernels
from hwcc.targets.cpu.table import KernelTable

__all__ = [
    "FP",
    "MB",
    "FakeMeasure",
    "_gemm_spec",
    "_ort_kernels",
    "const",
    "conv_bn_relu",
    "fake_target",
    "gemm",
    "model",
    "vi",
]


MB = 1 << 20


class FakeMeasure:
    """Stands in for the timer: ``fn(spec) -> (hot_s, cold_s)``; records what it measured."""

    def __init__(self, fn=lambda spec: (10e-6, 30e-6)):
        self.fn, self.calls = fn, []

    def __call__(self, specs):
        self.calls.extend(specs)
        return [self.fn(s) for s in specs]

    @property
    def kernels(self):
        return self.calls


FP = {
    "cpu": "test cpu",
    "cores": 2,
    "onnxruntime": ort.__version__,
    "threads": 1,
    "nchwc_block": 16,
    "l2_bytes": MB,
    "l3_bytes": 32 * MB,
    "protocol": 0,
}


def fake_target(tmp_path, fn=lambda spec: (10e-6, 30e-6), block=16, session_s=5e-6):
    """The cpu target on a table of fake measurements, with a fixed session overhead."""
    measure = FakeMeasure(fn)
    table = KernelTable(
        {**FP, "nchwc_block": block}, measure, step=8, block=block, path=tmp_path / "t.json"
    )
    table.extra["session"] = {"a_s": session_s, "b_s_per_byte": 0.0}
    t = load_target("cpu")
    t.use_table(table)
    return t, measure


def model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def const(name, *shape, value=None):
    arr = (
        np.full(shape, value, np.float32)
        if value is not None
        else np.random.default_rng(0).standard_normal(shape)
    )
    return numpy_helper.from_array(arr.astype(np.float32), name)


def conv_bn_relu(cin=3, cout=16, hw=8):
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    inits = [
        const("w", cout, cin, 3, 3),
        const("s", cout),
        const("b", cout),
        const("m", cout),
        const("v", cout, value=1.0),
    ]
    return model(nodes, [vi("x", [1, cin, hw, hw])], [vi("y", [1, cout, hw, hw])], inits)


def gemm(k, m, act=None):
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g" if act else "y"], name="fc", transB=1)]
    if act:
        nodes.append(helper.make_node(act, ["g"], ["y"], name="act"))
    return model(nodes, [vi("x", [1, k])], [vi("y", [1, m])], [const("w", m, k), const("b", m)])


def _gemm_spec(k, m):
    return {
        "op": "Gemm",
        "N": 1,
        "K": k,
        "M": m,
        "transA": 0,
        "transB": 1,
        "alpha": 1.0,
        "beta": 1.0,
        "bias": True,
        "b_const": True,
        "act": "",
        "act_params": [],
    }


def _ort_kernels(model_bytes: bytes) -> list[tuple]:
    """(op, activation, weight shape, has Sum) of each node onnxruntime keeps."""
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.optimized_model_filepath, so.log_severity_level, so.intra_op_num_threads = (
            f"{tmp}/o.onnx",
            3,
            1,
        )
        ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        m = onnx.load(so.optimized_model_filepath)
    shapes = {i.name: tuple(i.dims) for i in m.graph.initializer}
    out = []
    for n in m.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        conv = n.op_type in ("Conv", "FusedConv")
        out.append(
            (
                f"{n.domain}:{n.op_type}",
                attrs.get("activation", b"").decode(),
                shapes.get(n.input[1]) if conv else None,
                conv and len([i for i in n.input if i]) > 3,
            )
        )
    return sorted(out, key=repr)


def plan_kernel_keys(g, block: int) -> list[tuple]:
    """(op, activation, weight shape, has Sum) of each kernel the planner predicts, in
    :func:`_ort_kernels`'s form and order."""
    domains = {"nchwc": "com.microsoft.nchwc", "com.microsoft": "com.microsoft"}
    out = []
    for k in plan_kernels(g, analyze(g), block).kernels:
        s, (dom, _, name) = k.spec, k.spec["op"].rpartition(".")
        conv = name in ("Conv", "FusedConv")
        w = (s["M"], s["C"] // s["group"], *s["k"]) if conv else None
        out.append(
            (f"{domains.get(dom, dom)}:{name}", s.get("act", ""), w, conv and bool(s["sum"]))
        )
    return sorted(out, key=repr)
