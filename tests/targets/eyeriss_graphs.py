"""Graphs for the Eyeriss target's tests (tests/targets/test_eyeriss_*.py), loaded by hwcc.

:func:`_model` writes a model with ``onnx.helper`` (initializers from a dict of arrays),
:func:`_vi` a float value info; :func:`_conv_graph` is a one-Conv graph and :func:`_layer`
the analysed layer of a graph at a batch and activation density. ``PJ`` is the energy of a
MAC in eyeriss.toml, the one calibrated constant.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import hwcc
from hwcc.ir.workload import analyze
from hwcc.targets.base import scale_batch

__all__ = ["PJ", "_conv_graph", "_layer", "_model", "_vi"]


PJ = 2.8e-12  # eyeriss.toml pj_per_mac, the one calibrated constant (checked below)


def _model(nodes, inputs, outputs, inits):
    g = helper.make_graph(
        nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _conv_graph(C, H, M, R, stride=1, pad=0, groups=1, dilation=1, name="conv"):
    w = np.random.default_rng(0).normal(size=(M, C // groups, R, R)).astype(np.float32)
    node = helper.make_node(
        "Conv",
        ["x", "w"],
        ["y"],
        name=name,
        strides=[stride, stride],
        pads=[pad] * 4,
        group=groups,
        dilations=[dilation, dilation],
    )
    return hwcc.load(_model([node], [_vi("x", [1, C, H, H])], [_vi("y", None)], {"w": w}))


def _layer(graph, name, batch=1, act_density=None):
    return scale_batch(analyze(graph, act_density=act_density).layer(name), batch)
