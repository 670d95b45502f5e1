"""Graphs and passes for the pass-infrastructure tests (tests/test_pass_infra_*.py): the
tolerances, a small Mul -> Identity -> Relu graph, a pass that rewrites it wrongly, and
one-off passes made from a function."""

from __future__ import annotations

import numpy as np

from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.transform import Pass, PassResult
from hwcc.passes.lib.edits import set_constant_input

RTOL, ATOL = 1e-5, 1e-5


def mul_relu() -> Graph:
    """x -> Mul(w) -> Identity -> Relu -> y."""
    g = Graph("mul_relu")
    g.add_input("x", dtypes.FLOAT, (2, 3))
    g.add_initializer("w", np.arange(1, 7, dtype=np.float32).reshape(2, 3))
    g.add_node("Mul", ["x", "w"], ["m"], name="mul")
    g.add_node("Identity", ["m"], ["i"], name="copy")
    g.add_node("Relu", ["i"], ["y"], name="relu")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


class FlipSign(Pass):
    """A wrong rewrite: negates the weight of the first Mul.

    1. Fires on any graph with a Mul by an initializer (and is wrong every time).
    """

    name = "flip_sign"

    def call(self, graph, ctx):
        g = graph.copy()
        mul = g.find("Mul")[0]
        set_constant_input(g, mul, 1, -g.initializer(mul.inputs[1]))
        return PassResult(g, True)


def simple_pass(name_: str, body, *, in_place: bool = False) -> Pass:
    """A one-off pass whose ``call`` is ``body(graph) -> PassResult``."""
    cls = type(
        name_,
        (Pass,),
        {
            "name": name_,
            "in_place": in_place,
            "__doc__": "Test.\n\n1. Case.",
            "call": lambda self, graph, ctx: body(graph),
        },
    )
    return cls()
