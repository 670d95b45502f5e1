"""Testing passes: small graphs to rewrite, and the check that a rewrite kept the numbers.

A pass test builds a graph, runs the pass, and checks structure and numbers on the same
graph. This module holds what those tests share:

* builders of one- and two-layer graphs (:func:`conv_graph`, :func:`gemm_graph`,
  :func:`matmul_graph`, :func:`shared_weight_graph`), made through the IR's own verbs,
  weights drawn from a seeded normal distribution so that a test is the same on every
  run; :func:`onnx_graph` for what the IR cannot build directly (a legacy model whose
  initializers are also graph inputs), made with ``onnx.helper`` and loaded;
* :func:`assert_equivalent`: the original and the rewritten model through onnxruntime on
  the same inputs, every output compared with explicit tolerances, and the rewritten
  model checked by ``onnx.checker``;
* small helpers: :func:`finish` (a hand-built graph's outputs and shapes),
  :func:`op_counts`, :func:`weight_of`, and :func:`with_batch`.

Example::

    from hwcc.ir.transform import PassContext, get_pass
    from hwcc.testing import assert_equivalent, conv_graph

    g = conv_graph(cin=4, cout=8, relu=True)
    result = get_pass("winograd")(g, PassContext(verify=False))
    assert_equivalent(g, result.graph, rtol=1e-4, atol=1e-5)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.ir.verify import Feeds, Verification, compare

__all__ = [
    "assert_equivalent",
    "conv_graph",
    "finish",
    "gemm_graph",
    "matmul_graph",
    "onnx_graph",
    "op_counts",
    "shared_weight_graph",
    "weight_of",
    "with_batch",
]

Dim = int | str


# ---------------------------------------------------------------------- the check
def assert_equivalent(
    original: Graph,
    transformed: Graph,
    inputs: Feeds | Sequence[Feeds] | None = None,
    *,
    rtol: float,
    atol: float,
    check_model: bool = True,
    n: int = 2,
    seed: int = 0,
) -> Verification:
    """Assert that ``transformed`` computes what ``original`` does, in onnxruntime.

    Both models run on the same inputs (onnxruntime's CPU provider, its own graph
    optimisations off) and every output of the original is compared, element by element,
    as ``|transformed − original| <= atol + rtol·|original|`` (:func:`hwcc.ir.verify.compare`).

    Args:
        original: the model before the rewrite.
        transformed: the model after it; it keeps the original's output names.
        inputs: one input set (name -> array) or several; by default ``n`` sets of random
            inputs (:func:`hwcc.ir.verify.random_feeds`, seeds ``seed, seed + 1, ...``).
        rtol: relative tolerance.
        atol: absolute tolerance.
        check_model: also check ``transformed`` with ``onnx.checker`` (full check).
        n: how many random input sets, when ``inputs`` is not given.
        seed: the first seed of the random inputs.

    Returns:
        The comparison, for tests that look at the errors it measured.

    Raises:
        AssertionError: an output differs beyond the tolerances (the message has the
            worst errors of each output), or the rewritten model is not valid ONNX.
    """
    if check_model:
        onnx.checker.check_model(onnx_io.to_proto(transformed), full_check=True)
    v = compare(original, transformed, rtol=rtol, atol=atol, feeds=inputs, n=n, seed=seed)
    assert v.passed, v.summary()
    return v


# ---------------------------------------------------------------------- readers
def op_counts(graph: Graph) -> Counter:
    """Op type -> how many nodes of that type ``graph`` has."""
    return Counter(n.op_type for n in graph.nodes)


def weight_of(graph: Graph, node: str, index: int = 1) -> np.ndarray:
    """The constant value of input ``index`` of the node named ``node`` (its weights)."""
    return graph.initializer(graph.node(node).inputs[index])


def with_batch(graph: Graph, batch: int) -> Graph:
    """A copy of ``graph`` whose inputs and outputs have ``batch`` on their first axis,
    shapes inferred again (a zoo model of batch 1, to run a whole data split at once)."""
    g = graph.copy()
    for name in [*g.real_inputs(), *g.outputs]:
        g.tensors[name].shape = (batch,) + tuple(g.tensors[name].shape[1:])
    onnx_io.infer_shapes(g)
    return g


# ---------------------------------------------------------------------- builders
def conv_graph(
    *,
    batch: Dim = 2,
    cin: int = 4,
    cout: int = 6,
    size: Dim | Sequence[Dim] = 8,
    kernel: int = 3,
    rank: int = 2,
    group: int | None = None,
    bias: bool = True,
    relu: bool = False,
    dtype: Any = np.float32,
    seed: int = 0,
    **attrs: Any,
) -> Graph:
    """``x -> Conv 'conv' [-> Relu 'relu'] -> y``, weights ``w`` and bias ``b`` random normal.

    Args:
        batch: the input's batch (a name for a dynamic one).
        cin: input channels.
        cout: output channels.
        size: the input's spatial size: one value for every axis, or one per axis.
        kernel: the kernel's size on every spatial axis.
        rank: spatial axes (1 for Conv1d, 2, 3).
        group: the Conv's ``group`` attribute; ``None`` leaves it unset unless ``attrs``
            has it.
        bias: give the Conv a bias.
        relu: a Relu after the Conv (the Conv then writes ``c``).
        dtype: the element type of the input and the weights.
        seed: the seed of the weights (drawn ``w`` first, then ``b``).
        **attrs: more Conv attributes (``pads``, ``strides``, ``auto_pad``, ...).
    """
    rng = np.random.default_rng(seed)
    one = isinstance(size, (int, str))
    spatial = (size,) * rank if one else tuple(size)
    node_attrs = {"group": group, **attrs} if group is not None else dict(attrs)
    groups = node_attrs.get("group", 1)
    g = Graph("conv")
    g.add_input("x", dtypes.onnx_type_of(np.dtype(dtype)), (batch, cin) + spatial)
    g.add_initializer(
        "w", rng.normal(size=(cout, cin // groups) + (kernel,) * len(spatial)).astype(dtype)
    )
    inputs = ["x", "w"]
    if bias:
        g.add_initializer("b", rng.normal(size=cout).astype(dtype))
        inputs.append("b")
    g.add_node("Conv", inputs, ["c" if relu else "y"], node_attrs, name="conv")
    if relu:
        g.add_node("Relu", ["c"], ["y"], name="relu")
    return finish(g, "y")


def gemm_graph(
    weight: np.ndarray | None = None,
    *,
    m: int = 2,
    k: int = 4,
    n: int = 3,
    trans_a: int | None = None,
    trans_b: int | None = 1,
    bias_shape: tuple[int, ...] | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    relu: bool = False,
    seed: int = 0,
    names: tuple[str, str, str] = ("x", "w", "b"),
    node: str = "fc",
    graph_name: str = "gemm",
) -> Graph:
    """``x -> Gemm(w[, b]) 'fc' [-> Relu 'relu'] -> y``.

    Args:
        weight: the weights (float32); random normal of the shape ``k``, ``n`` and
            ``trans_b`` give when omitted (then ``k`` comes from it when given).
        m: rows of the input (``k × m`` with ``trans_a``).
        k: the reduction length.
        n: outputs.
        trans_a: Gemm's ``transA``; ``None`` leaves the attribute unset (0).
        trans_b: Gemm's ``transB``; ``None`` leaves it unset (0).
        bias_shape: the shape of a random bias ``C``; ``None`` for none.
        alpha: Gemm's ``alpha``; ``None`` leaves it unset (1).
        beta: Gemm's ``beta``; ``None`` leaves it unset (1).
        relu: a Relu after the Gemm (the Gemm then writes ``g``).
        seed: the seed of the random weights (drawn first) and bias.
        names: the input's, the weights' and the bias' tensor names.
        node: the Gemm's name.
        graph_name: the graph's name.
    """
    rng = np.random.default_rng(seed)
    x, w, b = names
    if weight is None:
        weight = rng.normal(size=(n, k) if trans_b else (k, n))
    else:
        k = weight.shape[1] if trans_b else weight.shape[0]
    g = Graph(graph_name)
    g.add_input(x, dtypes.FLOAT, (k, m) if trans_a else (m, k))
    g.add_initializer(w, np.asarray(weight).astype(np.float32))
    inputs = [x, w]
    if bias_shape is not None:
        g.add_initializer(b, rng.normal(size=bias_shape).astype(np.float32))
        inputs.append(b)
    attrs = {
        key: value
        for key, value in (
            ("transA", trans_a),
            ("transB", trans_b),
            ("alpha", alpha),
            ("beta", beta),
        )
        if value is not None
    }
    g.add_node("Gemm", inputs, ["g" if relu else "y"], attrs, name=node)
    if relu:
        g.add_node("Relu", ["g"], ["y"], name="relu")
    return finish(g, "y")


def matmul_graph(
    *,
    x_shape: tuple[int, ...] = (2, 5, 24),
    w_shape: tuple[int, ...] = (24, 16),
    left: bool = False,
    seed: int = 0,
) -> Graph:
    """``x·W`` (or ``W·x`` with ``left``) ``-> y``, the MatMul named ``mm`` and ``W`` a
    random normal constant."""
    rng = np.random.default_rng(seed)
    g = Graph("matmul")
    g.add_input("x", dtypes.FLOAT, x_shape)
    g.add_initializer("W", rng.normal(size=w_shape).astype(np.float32))
    g.add_node("MatMul", ["W", "x"] if left else ["x", "W"], ["y"], name="mm")
    return finish(g, "y")


def shared_weight_graph(weight: np.ndarray) -> Graph:
    """``x -> MatMul 'mm1' -> MatMul 'mm2' -> y``, both reading the one tensor ``w``
    (``weight``, square: ``n × n`` for an input ``[1, n]``)."""
    g = Graph("shared")
    g.add_input("x", dtypes.FLOAT, (1, weight.shape[0]))
    g.add_initializer("w", weight)
    g.add_node("MatMul", ["x", "w"], ["h"], name="mm1")
    g.add_node("MatMul", ["h", "w"], ["y"], name="mm2")
    return finish(g, "y")


def onnx_graph(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, Sequence[Dim]],
    outputs: Mapping[str, Sequence[Dim]],
    *,
    initializers: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
    ir_version: int = 8,
    name: str = "g",
) -> Graph:
    """A model written with ``onnx.helper``, loaded: for what the IR's verbs do not build
    (an initializer that is also a graph input, as every one is before IR version 4).

    Args:
        nodes: the nodes (``onnx.helper.make_node``).
        inputs: graph input name -> shape, float32, in order (list an initializer here to
            make it a graph input too).
        outputs: graph output name -> shape, float32.
        initializers: name -> value.
        opset: the default domain's opset version.
        ir_version: the model's IR version.
        name: the graph's name.
    """

    def info(n: str, shape: Sequence[Dim]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(shape))

    graph = helper.make_graph(
        list(nodes),
        name,
        [info(n, s) for n, s in inputs.items()],
        [info(n, s) for n, s in outputs.items()],
        initializer=[numpy_helper.from_array(v, n) for n, v in (initializers or {}).items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version
    )
    return onnx_io.load(model)


def finish(graph: Graph, *outputs: str) -> Graph:
    """``graph`` with ``outputs`` made graph outputs and its shapes inferred: the last step
    of building a graph by hand."""
    graph.outputs.extend(outputs)
    onnx_io.infer_shapes(graph)
    return graph
