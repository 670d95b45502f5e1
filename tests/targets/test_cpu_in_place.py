"""Kernels onnxruntime runs in place: an activation whose input buffer dies at it writes
its output over that buffer. The planner marks those kernels (``"inplace"`` in the spec),
leaves out every case where the buffer lives on or belongs to the caller, and the timer
runs a marked kernel with its output bound to its input."""

from __future__ import annotations

import numpy as np
import pytest
from cpu_helpers import const, model, vi
from onnx import helper

import hwcc
from hwcc.ir.onnx_io import to_proto
from hwcc.ir.workload import analyze
from hwcc.targets.cpu.kernel_model import kernel_graph
from hwcc.targets.cpu.kernels import plan_kernels
from hwcc.targets.cpu.measure import Timer

SHAPE = [1, 8, 6, 6]


def _specs(nodes, outputs=("y",), inits=()):
    """Each node's kernel spec, by the node's name, its output's in capitals (block 0)."""
    proto = model(nodes, [vi("x", SHAPE)], [vi(o, SHAPE) for o in outputs], inits)
    g = hwcc.load(proto)
    return {k.head: k.spec for k in plan_kernels(g, analyze(g), 0).kernels}


def _node(op, ins, out, **attrs):
    return helper.make_node(op, ins, [out], name=out.upper(), **attrs)


@pytest.mark.parametrize("act", ["Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Clip"])
def test_an_activation_whose_input_dies_at_it_runs_in_place(act):
    specs = _specs(
        [_node("Add", ["x", "x"], "a"), _node(act, ["a"], "r"), _node("Mul", ["r", "c"], "y")],
        inits=[const("c", 1, 8, 1, 1)],
    )
    assert specs["R"].get("inplace") is True
    assert "inplace" not in specs["A"] and "inplace" not in specs["Y"]  # arithmetic never


def test_an_activation_does_not_run_in_place_where_the_buffer_lives_on():
    add = _node("Add", ["x", "x"], "a")
    # on the graph input: the caller's buffer
    assert "inplace" not in _specs([_node("Relu", ["x"], "y")])["Y"]
    # its input read again later
    specs = _specs([add, _node("Relu", ["a"], "r"), _node("Add", ["r", "a"], "y")])
    assert "inplace" not in specs["R"]
    # its output a graph output
    assert "inplace" not in _specs([add, _node("Relu", ["a"], "y")])["Y"]
    # its input a view of another tensor (a Reshape of the graph input)
    shape = helper.make_tensor("s", 7, [4], SHAPE)
    specs = _specs(
        [
            _node("Reshape", ["x", "s"], "v"),
            _node("Relu", ["v"], "r"),
            _node("Add", ["r", "r"], "y"),
        ],
        inits=[shape],
    )
    assert "inplace" not in specs["R"]


def test_the_timer_runs_an_in_place_kernel_over_its_input():
    specs = _specs(
        [_node("Add", ["x", "x"], "a"), _node("Relu", ["a"], "r"), _node("Add", ["r", "r"], "y")]
    )
    spec = specs["R"]
    data = to_proto(kernel_graph(spec, 0), value_info=False).SerializeToString()
    timer = Timer(1, 1 << 16, 0, rounds=1, hot=1, cold=1)
    sess, binding, [(ov, value)] = timer._bound(data, in_place=True)
    ov.update_inplace(value)
    sess.run_with_iobinding(binding)
    (out,) = binding.get_outputs()
    assert out.data_ptr() == ov.data_ptr()  # one buffer
    np.testing.assert_allclose(out.numpy(), np.maximum(value, 0), rtol=0, atol=0)
    ((hot, cold),) = timer([spec])
    assert 0 <= hot < 0.01 and 0 <= cold < 0.01  # a 288-float Relu: about nothing
