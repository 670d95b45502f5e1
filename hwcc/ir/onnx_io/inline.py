"""Inlining an ``If``'s branch into its graph, at the level of the ONNX protos.

Used by :mod:`hwcc.ir.workload_flow` to price an ``If`` as the branch it takes: the
branch's nodes take the ``If``'s place, named behind it (``/m/If.then/conv``), its
outputs renamed to the ``If``'s outputs, its local names made unique in the outer graph,
its initializers and value infos moved out; subgraphs nested in the branch keep reading
the renamed outer names.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import onnx
from onnx import AttributeProto, helper

__all__ = ["branch_prefix", "inline_branches"]


def branch_prefix(if_name: str, which: str) -> str:
    """The name prefix of the nodes inlined from ``if_name``'s ``which`` branch."""
    return f"{if_name}.{which}/"


def inline_branches(mg: onnx.GraphProto, choice: Mapping[str, str]) -> dict[str, str]:
    """Replace, in ``mg``, each ``If`` named in ``choice`` by the nodes of its chosen branch
    (``"then"`` or ``"else"``); returns inlined node name -> ``"<If name>.<branch>"``."""
    taken = _names(mg)
    nodes: list[onnx.NodeProto] = []
    scopes: dict[str, str] = {}
    for n in mg.node:
        if n.name in choice:
            inner = _branch_nodes(mg, n, choice[n.name], taken)
            scopes.update({x.name: f"{n.name}.{choice[n.name]}" for x in inner})
            nodes.extend(inner)
        else:
            nodes.append(n)
    del mg.node[:]
    mg.node.extend(nodes)
    return scopes


def _names(mg: onnx.GraphProto) -> set[str]:
    """Every tensor and node name of the top-level graph."""
    names = {i.name for i in mg.input} | {i.name for i in mg.initializer}
    names |= {v.name for v in mg.value_info} | {o.name for o in mg.output}
    for n in mg.node:
        names.update(n.output)
        names.add(n.name)
    return names


def _unique(base: str, taken: set[str]) -> str:
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}__{i}"
    taken.add(name)
    return name


def _branch_nodes(
    mg: onnx.GraphProto, node: onnx.NodeProto, which: str, taken: set[str]
) -> list[onnx.NodeProto]:
    """The nodes of ``node``'s ``which`` branch, renamed to live in ``mg``: node names
    behind the If's, branch outputs renamed to the If's outputs (an ``Identity`` where a
    branch output is not computed in the branch, or is given twice), local names that
    clash with the outer graph's made unique; initializers and value infos moved out."""
    (branch,) = [a.g for a in node.attribute if a.name == f"{which}_branch"]
    prefix = branch_prefix(node.name, which)
    produced = [t for n in branch.node for t in n.output if t]
    local = set(produced) | {i.name for i in branch.initializer}
    rename: dict[str, str] = {}
    tail: list[onnx.NodeProto] = []
    for src, dst in zip(branch.output, node.output):
        if not dst:
            continue
        if src.name in produced and src.name not in rename:
            rename[src.name] = dst
        else:
            tail.append(
                helper.make_node(
                    "Identity", [src.name], [dst], name=_unique(f"{prefix}output:{dst}", taken)
                )
            )
    for t in sorted(local - set(rename)):
        rename[t] = _unique(f"{prefix}{t}", taken) if t in taken else t
        taken.add(rename[t])
    for init in branch.initializer:
        moved = copy.deepcopy(init)
        moved.name = rename[init.name]
        mg.initializer.append(moved)
    declared = {v.name for v in mg.value_info}
    for vi in branch.value_info:
        if vi.name in rename and rename[vi.name] not in declared:
            moved = copy.deepcopy(vi)
            moved.name = rename[vi.name]
            mg.value_info.append(moved)
    out = []
    for i, n in enumerate(branch.node):
        m = copy.deepcopy(n)
        m.name = _unique(f"{prefix}{n.name.lstrip('/') or f'{n.op_type}_{i}'}", taken)
        out.append(m)
    for m in out + tail:
        _rename_in_node(m, rename)
    return out + tail


def _rename_in_node(n: onnx.NodeProto, rename: Mapping[str, str]) -> None:
    for i, t in enumerate(n.input):
        if t in rename:
            n.input[i] = rename[t]
    for i, t in enumerate(n.output):
        if t in rename:
            n.output[i] = rename[t]
    for a in n.attribute:
        if a.type == AttributeProto.GRAPH:
            _rename_refs(a.g, rename)
        elif a.type == AttributeProto.GRAPHS:
            for sg in a.graphs:
                _rename_refs(sg, rename)


def _rename_refs(sg: onnx.GraphProto, rename: Mapping[str, str]) -> None:
    """Outer-scope names a nested subgraph reads, renamed (ONNX forbids a subgraph to
    shadow an outer name, so none of its own names is in ``rename``)."""
    for n in sg.node:
        _rename_in_node(n, rename)
    for o in sg.output:
        if o.name in rename:
            o.name = rename[o.name]
