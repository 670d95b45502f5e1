"""A kernel spec (:mod:`.specs`) written as a one-kernel ONNX model, to be timed alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hwcc.ir import Graph, dtypes

__all__ = ["kernel_graph"]

_DOMAINS = {"nchwc": "com.microsoft.nchwc", "com.microsoft": "com.microsoft"}


def _split_op(op: str) -> tuple[str, str]:
    """``nchwc.Conv`` -> (``com.microsoft.nchwc``, ``Conv``)."""
    domain, _, name = op.rpartition(".")
    return _DOMAINS.get(domain, domain), name


def kernel_graph(spec: dict[str, Any], block: int) -> Graph:
    """The one-kernel model of ``spec`` as an IR graph, in the form onnxruntime runs it.

    NCHWc kernels are written directly in the ``com.microsoft.nchwc`` domain with blocked
    inputs and outputs (``[N, C_padded, H, W]``), so the model holds no layout reorders
    that the whole network would not run. Weights are random: latency does not depend
    on their values (dense kernels, no zero skipping).
    """
    g, rng = Graph("kernel"), np.random.default_rng(0)
    domain, name = _split_op(spec["op"])
    if domain:
        g.opset_imports[domain] = 1

    def const(tname: str, shape: Sequence[int], etype: int = dtypes.FLOAT, values=None) -> str:
        dt = dtypes.numpy_dtype(etype)
        if values is not None:
            arr = np.asarray(values, dtype=dt).reshape(shape)
        elif dt.kind == "f":
            arr = (rng.standard_normal(shape) * 0.05).astype(dt)
        else:
            arr = np.zeros(shape, dt)
        g.add_initializer(tname, arr, etype)
        return tname

    def output(tname: str, shape: Sequence[int], etype: int = dtypes.FLOAT) -> str:
        t = g.tensor(tname)
        t.elem_type, t.shape = etype, tuple(shape)
        g.outputs.append(tname)
        return tname

    n = spec.get("N", 1)
    if name in ("Conv", "FusedConv"):
        c, m, grp = spec["C"], spec["M"], spec["group"]
        g.add_input("x", dtypes.FLOAT, [n, c, *spec["x"]])
        ins = ["x", const("w", [m, c // grp, *spec["k"]]), const("b", [m]) if spec["bias"] else ""]
        if spec["sum"]:
            g.add_input("z", dtypes.FLOAT, [n, m, *spec["y"]])
            ins.append("z")
        attrs = {
            "kernel_shape": spec["k"],
            "strides": spec["strides"],
            "pads": spec["pads"],
            "dilations": spec["dilations"],
            "group": grp,
        }
        if spec["act"]:
            attrs["activation"] = spec["act"]
            if spec["act_params"]:
                attrs["activation_params"] = [float(v) for v in spec["act_params"]]
        while not ins[-1]:
            ins.pop()
        g.add_node(name, ins, ["y"], attrs, domain=domain)
        output("y", [n, m, *spec["y"]])
    elif name in ("Gemm", "FusedGemm"):
        k, m = spec["K"], spec["M"]
        g.add_input("a", dtypes.FLOAT, [k, n] if spec["transA"] else [n, k])
        b_shape = [m, k] if spec["transB"] else [k, m]
        b = const("b", b_shape) if spec["b_const"] else g.add_input("b", dtypes.FLOAT, b_shape).name
        attrs = {x: spec[x] for x in ("transA", "transB", "alpha", "beta")}
        if spec["act"]:
            attrs["activation"] = spec["act"]
            for key, v in zip(("activation_alpha", "activation_beta"), spec["act_params"]):
                attrs[key] = float(v)
        ins = ["a", b] + ([const("c", [m])] if spec["bias"] else [])
        g.add_node(name, ins, ["y"], attrs, domain=domain)
        output("y", [n, m])
    elif name in ("ReorderInput", "ReorderOutput"):
        c, cp = spec["C"], -(-spec["C"] // block) * block
        into = name == "ReorderInput"
        g.add_input("x", dtypes.FLOAT, [n, c if into else cp, *spec["x"]])
        attrs = {"channels_last": 0} if into else {"channels": c, "channels_last": 0}
        g.add_node(name, ["x"], ["y"], attrs, domain=domain)
        output("y", [n, cp if into else c, *spec["x"]])
    else:
        ins = []
        for i, entry in enumerate(spec["inputs"]):
            if entry is None:
                ins.append("")
            elif entry[0] == "x":
                ins.append(g.add_input(f"in{i}", entry[1], entry[2]).name)
            else:
                values = entry[3] if entry[0] == "c" else None
                ins.append(const(f"c{i}", entry[2], entry[1], values))
        if "opset" in spec:
            g.opset_imports[""] = spec["opset"]
        outs = [output(f"out{i}", o[1], o[0]) if o else "" for i, o in enumerate(spec["outputs"])]
        g.add_node(name, ins, outs, dict(spec["attrs"]), domain=domain)
    return g
