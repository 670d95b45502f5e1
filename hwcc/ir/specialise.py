"""Specialising a model to its fixed input shapes: every shape known, shape arithmetic folded.

Exporters write models for any input size: ``Shape → Gather → Unsqueeze → Concat →
Reshape`` chains, ``Range`` and ``ConstantOfShape`` over a dimension read at run time.
onnx's shape inference leaves many of these tensors unknown (``unk__1×64×384``, or no
rank at all), and every cost model needs the shape of what it prices. Once the inputs
are fixed, onnxruntime knows every shape: :func:`probe_shapes` runs the model once with
the tensors onnx could not size exposed as outputs and records what they were, and
:func:`specialise` then folds the shape arithmetic into constants (``fold_constants``,
exactly, verified in onnxruntime), after which onnx's own inference sizes the rest and
keeps doing so after every transform.

A shape that depends on the input *values* (``NonZero``, a ``TopK`` whose ``k`` is
computed from the data) is the shape of the inputs the probe ran on: the user's first
sample where there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from hwcc.errors import HwccError
from hwcc.ir import Graph, onnx_io
from hwcc.ir.dtypes import onnx_type_of
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.transform import PassContext
from hwcc.ir.verify import Session, random_feeds

__all__ = ["Specialised", "probe_shapes", "specialise", "unsized"]

SHAPE_PASSES = ("fold_constants", "eliminate_dead")


@dataclass(frozen=True)
class Specialised:
    """What :func:`specialise` did.

    Attributes:
        graph: the specialised graph (the input itself when nothing was unknown).
        probed: how many tensors got their shape from onnxruntime.
        folded: how many nodes folding removed.
        left: tensors whose shape is still unknown (their producers run in a subgraph).
    """

    graph: Graph
    probed: int
    folded: int
    left: tuple[str, ...]

    @property
    def notice(self) -> str | None:
        """One line for the user, or None when there was nothing to do."""
        if not self.probed:
            return None if not self.folded else f"{self.folded} nodes of shape arithmetic folded"
        text = (
            f"{self.probed} tensor shapes onnx's shape inference left unknown were read from "
            f"onnxruntime at the fixed input shapes, and {self.folded} nodes of shape "
            "arithmetic folded into constants"
        )
        if self.left:
            text += f"; still unknown: {', '.join(self.left[:5])}"
        return text


def unsized(graph: Graph) -> list[str]:
    """Tensors produced by the graph's nodes whose shape is not fully known, in node order."""
    return [
        o
        for n in graph.nodes
        for o in n.outputs
        if o and not graph.tensor(o).is_static and "type_proto" not in graph.tensor(o).meta
    ]


def probe_shapes(graph: Graph, feeds: Mapping[str, np.ndarray], names: list[str]) -> int:
    """Set the shapes (and element types) of ``names`` to what onnxruntime computes on ``feeds``.

    Returns:
        How many tensors were given a shape.

    Raises:
        HwccError: onnxruntime cannot run the model on ``feeds``.
    """
    if not names:
        return 0
    model = onnx_io.to_proto(graph)
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    session = Session(model)
    values = dict(zip(session.output_names, session.run(feeds)))
    sized = 0
    for name in names:
        value = values.get(name)
        if value is None or not isinstance(value, np.ndarray):
            continue
        t = graph.tensor(name)
        t.shape = tuple(int(d) for d in value.shape)
        if not t.elem_type:
            t.elem_type = onnx_type_of(value.dtype)
        t.meta["shape_from"] = "onnxruntime"
        sized += 1
    return sized


def _computes_shapes(graph: Graph) -> bool:
    """Whether the graph reads shapes at run time (``Shape``, ``Size``): exporters' shape
    arithmetic, which a kernel rebuilt alone would be fed zeros for."""
    return any(n.op_type in ("Shape", "Size") for n in graph.nodes)


def specialise(
    graph: Graph, feeds: Mapping[str, np.ndarray] | None = None, seed: int = 0
) -> Specialised:
    """``graph`` with every shape known and its shape arithmetic folded, when it needs it.

    A graph whose shapes onnx's inference already knows and that reads no shape at run
    time is returned as it is. Otherwise the unknown shapes are probed in onnxruntime on
    ``feeds`` (one sample of the user's inputs; random ones when None) and the graph is
    folded (``fold_constants``, ``eliminate_dead``, verified).

    Raises:
        HwccError: an input is still dynamic, or onnxruntime cannot run the model.
    """
    names = unsized(graph)
    if not names and not _computes_shapes(graph):
        return Specialised(graph, 0, 0, ())
    dynamic = [n for n in graph.real_inputs() if not graph.tensor(n).is_static]
    if dynamic:
        raise HwccError(
            f"input(s) {', '.join(dynamic)} have dynamic shapes, so the model's other shapes "
            "cannot be known",
            "fix them with --input-shape NAME:DIMS",
        )
    graph = graph.copy()
    probed = 0
    if names:
        feeds = dict(feeds) if feeds is not None else random_feeds(graph, seed)
        probed = probe_shapes(graph, feeds, names)
    folded = PassManager(list(SHAPE_PASSES), PassContext(seed=seed, verify=True)).run(graph).graph
    return Specialised(folded, probed, len(graph) - len(folded), tuple(unsized(folded)))
