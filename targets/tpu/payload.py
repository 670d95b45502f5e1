"""The TPU v1 payload: int8 weights and an instruction listing that agrees with the price.

``tpu/weights.npz`` holds, for the ``i``-th matrix layer the TPU runs (``layers[i]`` names
it), the integers its weights are stored as in the QDQ model the quantize_int8 pass writes
(the ``DequantizeLinear`` in front of the layer: ``w = (q − zero_point)·scale`` along
``axis``), in the model's layout: ``L{i:02d}.weight`` (int8), ``.weight_scale``,
``.weight_zero_point``, ``.weight_axis``, and the int32 bias with its scale when it has one.
Recurrent layers name their operands ``W`` and ``R`` instead of ``weight``; QLinear ops
give their weight, scale and zero point inputs.

``tpu/program.txt`` is the instruction listing of the layers the TPU runs
(:mod:`hwcc.targets.tpu.program`, where its vocabulary is described).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node
from hwcc.targets.base import CostContext
from hwcc.targets.tpu.placement import MATRIX, OPERANDS, RECURRENT
from hwcc.targets.tpu.program import Program

__all__ = ["write_tpu_payload"]

_ROLES = {"LSTM": {1: "W", 2: "R"}, "GRU": {1: "W", 2: "R"}, "RNN": {1: "W", 2: "R"}}
_QLINEAR = {"QLinearConv": (3, 4, 5), "QLinearMatMul": (3, 4, 5)}  # weight, scale, zero point


def _int_weight(g: Graph, node: Node, index: int) -> dict[str, np.ndarray] | None:
    """The stored integers of one weight operand, with scale, zero point and axis."""
    if node.op_type in _QLINEAR and index == _QLINEAR[node.op_type][0]:
        w, s, z = (node.inputs[i] for i in _QLINEAR[node.op_type])
        q, scale, zero = g.initializer(w), g.initializer(s), g.initializer(z)
        axis = 0
    else:
        name = node.inputs[index]
        dq = g.producer(name)
        if dq is None:
            q = g.initializer(name)
            return None if q is None or q.dtype.kind not in "iu" else {"": q}
        if dq.op_type != "DequantizeLinear":
            return None
        q, scale = g.initializer(dq.inputs[0]), g.initializer(dq.inputs[1])
        zero = g.initializer(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] else None
        axis = int(dq.attr("axis", 1))
    if q is None or scale is None or q.dtype.kind not in "iu":
        return None
    out = {"": q, "_scale": scale, "_axis": np.int64(axis)}
    if zero is not None:
        out["_zero_point"] = zero
    return out


def _layer_weights(g: Graph, node: Node, const: set[str]) -> dict[str, np.ndarray]:
    """Every constant operand of a matrix node, and its bias, by role name."""
    out: dict[str, np.ndarray] = {}
    for i in OPERANDS.get(node.op_type, (0, 1)):
        if i < len(node.inputs) and node.inputs[i] in const:
            role = _ROLES.get(node.op_type, {}).get(i, "weight")
            found = _int_weight(g, node, i)
            out.update({role + k: v for k, v in (found or {}).items()})
    bias = {"Conv": 2, "Gemm": 2, "QLinearConv": 8}.get(node.op_type)
    found = (
        _int_weight(g, node, bias)
        if bias is not None and bias < len(node.inputs) and node.inputs[bias]
        else None
    )
    out.update({"bias" + k: v for k, v in (found or {}).items() if k in ("", "_scale")})
    return out


def write_tpu_payload(
    target: Any, graph: Graph, folder: Path, ctx: CostContext | None
) -> dict[str, str]:
    """Write ``tpu/weights.npz`` and ``tpu/program.txt`` (module docstring); returns the files."""
    ctx = ctx or CostContext()
    out = Path(folder) / target.family
    out.mkdir(parents=True, exist_ok=True)
    cost = target.price(graph, ctx)
    pairs = list(zip(graph.nodes, cost.layers))
    if any(n.name != lc.layer.name for n, lc in pairs):
        raise AssertionError("the cost's layers are not the graph's nodes in order")
    body = Program(target, graph, pairs, ctx.batch)
    arrays: dict[str, np.ndarray] = {}
    names = []
    for node, lc in pairs:
        if lc.on == target.name and lc.layer.kind in MATRIX + RECURRENT:
            found = _layer_weights(graph, node, body.const)
            if "weight" not in found and "W" not in found:
                raise HwccError(
                    f"TPU payload: {node.name} ({node.op_type}) runs on the TPU but its integer "
                    "weights were not found (behind a DequantizeLinear, or a QLinear operand)",
                    "quantize it with the quantize_int8 pass",
                )
            key = f"L{len(names):02d}."
            arrays.update({key + k: v for k, v in found.items()})
            names.append(node.name)
    arrays["layers"] = np.array(names, dtype=np.str_)
    np.savez(out / "weights.npz", **arrays)
    lines = body.run()
    head = [
        f"# TPU v1 program: model {graph.name}, target {target.name}, batch {ctx.batch}",
        f"# matrix unit {target.rows}x{target.cols}; Weight Memory tiles of "
        f"{target.rows * target.cols} B (int8); accumulator passes of at most "
        f"{target.pass_rows} rows; Unified Buffer {int(target.ub_bytes)} B",
        "# instructions of Jouppi et al., ISCA 2017, Section 2; operands key=value, "
        "sizes in bytes;",
        "# wm= Weight Memory byte address, ub= Unified Buffer byte address, acc= accumulator entry",
        *(
            f"# {key}weight: {name}"
            for key, name in ((f"L{i:02d}.", n) for i, n in enumerate(names))
        ),
    ]
    tail = [
        f"# end: {sum(1 for x in lines if not x.startswith('#'))} instructions, "
        f"{sum(body.tile_loads.values())} weight tile loads, Unified Buffer peak {body.ub.peak} B"
    ]
    (out / "program.txt").write_text("\n".join(head + lines + tail) + "\n")
    fam = target.family
    return {
        f"{fam}/weights.npz": "int8 weights, scales and zero points of the "
        f"{len(names)} matrix layers run on the TPU (the model's QDQ initializers)",
        f"{fam}/program.txt": "TPU v1 instruction listing "
        f"({sum(body.tile_loads.values())} weight tile loads; host nodes as comments)",
    }
