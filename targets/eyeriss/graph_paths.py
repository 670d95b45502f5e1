"""Where each layer's output goes: the ReLUs Eyeriss fuses and the density it writes.

The chip's ReLU module sits on the output path, so a ReLU right after a convolution or FC
layer costs nothing; the tensor then written to DRAM is run-length coded at the density of
its first consumer's input (looking past layout-only nodes, which are addressing only).
"""

from __future__ import annotations

from hwcc.ir import Graph
from hwcc.ir.workload import Workload

__all__ = ["LAYOUT", "STANDARD", "output_paths"]

LAYOUT = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Concat")
STANDARD = ("", "ai.onnx")


def output_paths(
    graph: Graph, work: Workload, runs_here: set[str]
) -> tuple[dict[str, float], set[str]]:
    """For each conv/FC node in ``runs_here``: the density of the tensor it writes (its first
    consumer's ``act_density``, looking past a fused ReLU and layout-only nodes), and the
    ReLUs fused into them."""
    users: dict[str, list] = {}
    for node in graph.nodes:
        for t in node.inputs:
            users.setdefault(t, []).append(node)
    layers = {x.name: x for x in work.layers}
    density: dict[str, float] = {}
    fused: set[str] = set()
    for node in graph.nodes:
        if node.name not in runs_here or not node.outputs:
            continue
        out = node.outputs[0]
        after = users.get(out, [])
        if len(after) == 1 and after[0].op_type == "Relu" and after[0].domain in STANDARD:
            fused.add(after[0].name)
            out = after[0].outputs[0]
        seen, frontier = set(), list(users.get(out, []))
        while frontier:
            nxt = frontier.pop(0)
            if nxt.name in seen:
                continue
            if nxt.op_type in LAYOUT and nxt.domain in STANDARD:
                seen.add(nxt.name)
                frontier.extend(users.get(nxt.outputs[0], []))
                continue
            density[node.name] = layers[nxt.name].act_density
            break
    return density, fused
