"""The six workloads of the TPU paper as int8 QDQ graphs, from their published shapes.

Jouppi et al., "In-Datacenter Performance Analysis of a Tensor Processing Unit", ISCA 2017,
Table 1: layer counts by kind (FC, conv, vector, pool), weights and batch size. Each graph
is built from those numbers (uniform layer widths chosen to give the published weight
count); weights are ones, activations int8 behind DequantizeLinear, as the TPU runs them.
The tests and the bench price the same graphs against the paper's measured TOPS.

``Net`` builds such graphs layer by layer; ``BUILDERS`` maps each workload's name to a
function returning its graph.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as TP
from onnx import helper
from onnx import numpy_helper as nh

import hwcc

__all__ = ["Net", "qlinear_fc", "stack", "alphago", "inception", "BUILDERS"]


class Net:
    """An int8 QDQ graph under construction: int8 weights and activations behind
    DequantizeLinear."""

    def __init__(self):
        self.nodes, self.inits, self.inputs, self.n = [], [], [], 0
        self.s, self.z = self.const(np.array(0.05, np.float32)), self.const(np.array(0, np.int8))

    def fresh(self, prefix):
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, array):
        name = self.fresh("c")
        self.inits.append(nh.from_array(array, name))
        return name

    def op(self, op_type, inputs, name=None, **attrs):
        """Add a node (named ``name`` or a fresh name); returns its output tensor's name."""
        name = name or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [f"{name}_y"], name=name, **attrs))
        return f"{name}_y"

    def input(self, shape, elem=TP.INT8):
        name = self.fresh("in")
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return self.op("DequantizeLinear", [name, self.s, self.z]) if elem == TP.INT8 else name

    def requant(self, x):
        return self.op(
            "DequantizeLinear", [self.op("QuantizeLinear", [x, self.s, self.z]), self.s, self.z]
        )

    def weight(self, shape):
        return self.op("DequantizeLinear", [self.const(np.ones(shape, np.int8)), self.s, self.z])

    def fc(self, x, k, n, act="Relu", name=None):
        y = self.op("MatMul", [x, self.weight((k, n))], name=name)
        return self.op(act, [y]) if act else y

    def conv(self, x, c, m, k, act="Relu", group=1, name=None):
        y = self.op(
            "Conv",
            [x, self.weight((m, c // group, k, k))],
            name=name,
            pads=[k // 2] * 4,
            group=group,
        )
        return self.op(act, [y]) if act else y

    def graph(self, *outputs):
        outs = [helper.make_empty_tensor_value_info(o) for o in outputs]
        g = helper.make_graph(self.nodes, "net", self.inputs, outs, self.inits)
        return hwcc.load(
            helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
        )


def qlinear_fc(rows, k, n):
    """One QLinearMatMul ``y[rows, n] = x[rows, k] · W[k, n]``, uint8 × int8, named ``fc``."""
    net = Net()
    x = net.fresh("x")
    net.inputs.append(helper.make_tensor_value_info(x, TP.UINT8, [rows, k]))
    uz = net.const(np.array(0, np.uint8))
    w = net.const(np.ones((k, n), np.int8))
    return net.graph(net.op("QLinearMatMul", [x, net.s, uz, w, net.s, net.z, net.s, uz], name="fc"))


def stack(n_fc, d, batch, n_vec=0):
    net = Net()
    x = net.input([batch, d])
    state = net.input([batch, d]) if n_vec else None
    for i in range(n_fc):
        x = net.fc(x, d, d, "Sigmoid" if n_vec and i % 2 else "Tanh" if n_vec else "Relu")
        for _ in range((i + 1) * n_vec // n_fc - i * n_vec // n_fc):
            x = net.op("Mul", [x, state])
        x = net.requant(x)
    return net.graph(x)


def alphago(batch=8, k=256):
    net = Net()
    x = net.requant(net.conv(net.input([batch, 48, 19, 19]), 48, k, 5))
    for _ in range(13):
        x = net.requant(net.conv(x, k, k, 3))
    x = net.requant(net.conv(x, k, k, 1))
    return net.graph(net.conv(x, k, 1, 1))


def inception(batch=32, c=124, hw=23, d=1295):
    net = Net()
    x = net.input([batch, c, hw, hw])
    for i in range(72):
        x = net.conv(x, c, c, 3)
        if (i + 1) * 13 // 72 > i * 13 // 72:
            x = net.op("MaxPool", [x], kernel_shape=[3, 3], pads=[1] * 4)
        x = net.requant(x)
    x = net.requant(net.fc(net.op("Flatten", [x]), c * hw * hw, d))
    for _ in range(3):
        x = net.requant(net.fc(x, d, d))
    return net.graph(x)


BUILDERS = {
    "MLP0": lambda: stack(5, 2000, 200),
    "MLP1": lambda: stack(4, 1118, 168),
    "LSTM0": lambda: stack(24, 1472, 64, 34),
    "LSTM1": lambda: stack(37, 959, 96, 19),
    "CNN0": alphago,
    "CNN1": inception,
}
