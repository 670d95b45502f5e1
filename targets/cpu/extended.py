"""onnxruntime's level-2 ("extended") fusions of transformer blocks, replayed on a graph.

Part of the kernel planner (:mod:`.kernels`). Exported transformers are written in plain
ONNX ops that onnxruntime's CPU provider runs as a few contrib kernels; pricing the plain
ops mispredicts both ways: the zoo's transformer encoder runs 20 % *slower* with the
fusions on (its ``SkipLayerNormalization`` kernels cost more than the ``Add`` and
``LayerNormalization`` they replace), and small kernels that disappear into one another
cost their dispatch no more. The rules, read off onnxruntime's optimizer (``gelu_fusion``,
``skip_layer_norm_fusion``, ``matmul_scale_fusion``, ``matmul_add_fusion``) and checked
against the optimized models this build writes (tests/targets/test_cpu_onnxruntime.py):

1. **Gelu** (``com.microsoft.Gelu``): ``Div(x, √2)``, then ``Erf``, ``Add(1)``, and
   ``Mul`` by ``x`` and by ``0.5`` in either order, each a single-use link (a
   ``Mul(x, 1/√2)`` in place of the ``Div`` is left unfused by this build).
2. **SkipLayerNormalization** (``com.microsoft``): a ``LayerNormalization`` whose input is a
   single-use ``Add`` of two 3-D tensors of one shape, optionally with a single-use bias
   ``Add`` (a constant 1-D of the last dim) on either input of it; the Adds make no graph
   output. It runs after the level-1 MatMul + Add fusion, which takes bias Adds first.
3. **FusedMatMul** (``com.microsoft``): a ``MatMul`` absorbs a single-use ``Mul`` or
   ``Div`` by a scalar constant that follows it, and such a scale on either input (the
   scale node goes only when the MatMul was its last reader).
4. **QuickGelu** (``com.microsoft``; SiLU/swish, YOLO's activation): ``Mul(x, σ(x))``, or
   ``Mul(x, σ(αx))`` with a single-use ``Mul`` by a scalar constant ``α``; the ``Sigmoid``
   single-use and not a graph output. It runs on NCHWc tensors where the build says so
   (:func:`.fusions.fused_activations`), like the activations of rule 8 in :mod:`.kernels`.

A MatMul + bias Add whose first input is not 2-D runs as a ``Gemm`` between two
``Reshape`` kernels (``Kernel.moves``); see :func:`matmul_add`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc.ir import Node
from hwcc.targets.cpu.specs import STANDARD_DOMAINS, Kernel, spec_inputs

__all__ = ["Group", "find_groups", "group_kernel", "matmul_add", "reshape_kernels"]

_SQRT2 = math.sqrt(2.0)


@dataclass
class Group:
    """Nodes onnxruntime runs as one contrib kernel.

    Attributes:
        kind: ``Gelu``, ``SkipLayerNormalization``, ``FusedMatMul`` or ``QuickGelu``.
        nodes: the nodes fused, the kernel's own node (LayerNorm, MatMul, last Mul) among
            them (the planner makes the first it meets in graph order the head).
        core: the node whose attributes and data inputs the kernel keeps.
        inputs: the kernel's inputs, in its own order ("" for absent).
        output: the tensor it writes.
        alpha: FusedMatMul's scale.
    """

    kind: str
    nodes: list[Node]
    core: Node
    inputs: list[str]
    output: str
    alpha: float = 1.0


def _std(node: Node | None, *ops: str) -> bool:
    return node is not None and node.domain in STANDARD_DOMAINS and node.op_type in ops


def _scalar(p: Any, t: str) -> float | None:
    """The value of a one-element float constant ``t``, or None."""
    if not t or t not in p.const:
        return None
    v = p.value(t)
    if v is None or v.size != 1 or v.dtype.kind not in "fiu":
        return None
    return float(np.asarray(v).ravel()[0])


def _other(node: Node, t: str, p: Any) -> str:
    """The input of a binary ``node`` that is not ``t``."""
    a, b = node.inputs[0], node.inputs[1]
    return b if p.resolve(a) == t else a


def matmul_add(p: Any, node: Node) -> Node | None:
    """The ``Add`` a ``MatMul`` fuses with into a ``Gemm`` (level 1), or None.

    The MatMul's second input is 2-D and it has one reader, an ``Add`` (not a graph
    output). The Add's other input (constant or not) is the Gemm's C: for a 2-D first
    input ``[N, K]``, of shape ``(M,)``, ``(1, M)``, ``(N, 1)`` or ``(N, M)``; for any
    other rank (a ``[B, S, K]`` activation), only ``(M,)``, and onnxruntime reshapes the
    input to 2-D around the Gemm.
    """
    if len(p.shape(node.inputs[1])) != 2:
        return None
    add = p.sole_user(node.outputs[0])
    if not _std(add, "Add") or add.meta.get("scope") != node.meta.get("scope"):
        return None
    other = [t for t in add.inputs if p.resolve(t) != node.outputs[0]]
    if len(other) != 1 or p.dtype(other[0]) != p.dtype(node.outputs[0]):
        return None
    a, m = p.shape(node.inputs[0]), p.shape(node.inputs[1])[1]
    bias = p.shape(other[0])
    if len(a) == 2:
        ok = bias in ((m,), (1, m), (a[0], 1), (a[0], m))
    else:
        ok = bias == (m,)
    return add if ok else None


def find_groups(p: Any, gemm_adds: set[str]) -> dict[str, Group]:
    """Node name -> its :class:`Group`, for every fusion of the module's rules 1-3.

    Args:
        p: the planner (shapes, constants, single users, aliases).
        gemm_adds: names of the MatMuls and bias Adds the level-1 MatMul + Add fusion takes.
    """
    out: dict[str, Group] = {}

    def claim(group: Group) -> None:
        scopes = {n.meta.get("scope") for n in group.nodes}  # an If's branch fuses alone
        if len(scopes) == 1 and not any(n.name in out or n.name in gemm_adds for n in group.nodes):
            for n in group.nodes:
                out[n.name] = group

    for node in p.g.nodes:  # level 2, in onnxruntime's order: Gelu, then SkipLayerNorm
        if node.name not in p.removed and (g := _gelu(p, node)) is not None:
            claim(g)
    for node in p.g.nodes:
        if node.name not in p.removed and (g := _quick_gelu(p, node)) is not None:
            claim(g)
    for node in p.g.nodes:
        if node.name not in p.removed and (g := _skip_layer_norm(p, node, gemm_adds)) is not None:
            claim(g)
    for node in p.g.nodes:
        skip = node.name in p.removed or node.name in out or node.name in gemm_adds
        if not skip and _std(node, "MatMul"):
            if (g := _matmul_scale(p, node, out, gemm_adds)) is not None:
                claim(g)
    return out


def _gelu(p: Any, first: Node) -> Group | None:
    if not _std(first, "Div"):  # this build leaves Mul(x, 1/√2) unfused
        return None
    x, s = first.inputs[0], _scalar(p, first.inputs[1])
    if s is None or abs(s - _SQRT2) > 1e-3:
        return None
    x = p.resolve(x)
    erf = p.sole_user(first.outputs[0])
    add = p.sole_user(erf.outputs[0]) if _std(erf, "Erf") else None
    if not _std(add, "Add") or _scalar(p, _other(add, erf.outputs[0], p)) != 1.0:
        return None
    mul = p.sole_user(add.outputs[0])
    if not _std(mul, "Mul"):
        return None
    factor = p.resolve(_other(mul, add.outputs[0], p))
    if factor == x:  # x * (1 + erf) * 0.5
        half = p.sole_user(mul.outputs[0])
        if not _std(half, "Mul") or _scalar(p, _other(half, mul.outputs[0], p)) != 0.5:
            return None
        nodes, out = [first, erf, add, mul, half], half.outputs[0]
    else:  # (0.5 * x) * (1 + erf)
        half = p.g.producer(factor)
        if (
            not _std(half, "Mul")
            or p.sole_user(factor) is not mul
            or p.resolve(_other(half, x, p)) == x
            or _scalar(p, _other(half, x, p)) != 0.5
        ):
            return None
        nodes, out = [half, first, erf, add, mul], mul.outputs[0]
    return Group("Gelu", nodes, first, [x], out)


def _quick_gelu(p: Any, sig: Node) -> Group | None:
    if not _std(sig, "Sigmoid") or (mul := p.sole_user(sig.outputs[0])) is None:
        return None
    if not _std(mul, "Mul") or len(mul.inputs) != 2:
        return None
    x, nodes, alpha = p.resolve(sig.inputs[0]), [sig, mul], 1.0
    scale = p.g.producer(x)
    if _std(scale, "Mul") and p.sole_user(x) is sig:
        for a, b in (scale.inputs[:2], scale.inputs[1::-1]):
            if (v := _scalar(p, b)) is not None and len(p.shape(b)) <= 1:  # [] or [1]
                x, alpha, nodes = p.resolve(a), v, [scale, sig, mul]
                break
    if p.resolve(_other(mul, sig.outputs[0], p)) != x:
        return None
    return Group("QuickGelu", nodes, sig, [x], mul.outputs[0], alpha)


def _skip_layer_norm(p: Any, ln: Node, gemm_adds: set[str]) -> Group | None:
    if not _std(ln, "LayerNormalization"):
        return None
    add1 = p.g.producer(p.resolve(ln.inputs[0]))
    if not _std(add1, "Add") or not _first_add(p, add1, ln):
        return None
    for i in (0, 1):  # formats 1 and 2: a bias Add on the first, then the second input
        add2 = p.g.producer(p.resolve(add1.inputs[i]))
        if add2 is not None and add2.name not in gemm_adds and _bias_add(p, add2, add1):
            x, skip = add2.inputs[0], add1.inputs[1 - i]
            ins = [x, skip] if i == 0 else [add1.inputs[0], x]
            ins += [_input(ln, 1), _input(ln, 2), add2.inputs[1]]
            return Group("SkipLayerNormalization", [add2, add1, ln], ln, ins, ln.outputs[0])
    ins = [add1.inputs[0], add1.inputs[1], _input(ln, 1), _input(ln, 2)]
    return Group("SkipLayerNormalization", [add1, ln], ln, ins, ln.outputs[0])


def _input(node: Node, i: int) -> str:
    return node.inputs[i] if len(node.inputs) > i else ""


def _first_add(p: Any, add: Node, reader: Node) -> bool:
    """The residual Add: one reader, two 3-D inputs of one known shape."""
    if p.sole_user(add.outputs[0]) is not reader or len(add.inputs) != 2:
        return False
    shapes = [p.g.tensors[t].shape for t in add.inputs]
    return all(s is not None and len(s) == 3 for s in shapes) and shapes[0] == shapes[1]


def _bias_add(p: Any, add: Node, reader: Node) -> bool:
    """A bias Add: one reader, a 3-D input plus a constant 1-D of its last dim."""
    if not _std(add, "Add") or p.sole_user(add.outputs[0]) is not reader:
        return False
    a, b = (p.g.tensors[t].shape for t in add.inputs[:2])
    return (
        add.inputs[1] in p.const
        and a is not None
        and len(a) == 3
        and b is not None
        and tuple(b) == (a[2],)
    )


def _matmul_scale(p: Any, mm: Node, taken: dict, gemm_adds: set[str]) -> Group | None:
    alpha, nodes, ins = 1.0, [mm], list(mm.inputs[:2])
    for i, t in enumerate(mm.inputs[:2]):
        src = p.g.producer(p.resolve(t))
        if src is None or src.name in taken or not _std(src, "Mul", "Div"):
            continue
        scale, kept = _scale(p, src)
        if scale is None or not p.g.tensors[kept].shape:
            continue
        alpha *= scale
        ins[i] = kept
        if p.sole_user(src.outputs[0]) is mm:  # removed only when the MatMul was its last reader
            nodes.append(src)
    out, after = mm.outputs[0], p.sole_user(mm.outputs[0])
    if after is not None and after.name not in taken and _std(after, "Mul", "Div"):
        scale, kept = _scale(p, after)
        if scale is not None and p.resolve(kept) == out:
            alpha *= scale
            nodes.append(after)
            out = after.outputs[0]
    if alpha == 1.0 and len(nodes) == 1 and out == mm.outputs[0]:
        return None
    return Group("FusedMatMul", nodes, mm, ins, out, alpha)


def _scale(p: Any, node: Node) -> tuple[float | None, str]:
    """(scale, the scaled input) of a Mul or Div by a scalar constant, or (None, "")."""
    a, b = node.inputs[0], node.inputs[1]
    if node.op_type == "Div":
        s = _scalar(p, b)
        return (1.0 / s, a) if s else (None, "")
    for scale_t, x in ((b, a), (a, b)):
        s = _scalar(p, scale_t)
        if s is not None and len(p.g.tensors[scale_t].shape or ()) <= len(
            p.g.tensors[x].shape or ()
        ):
            return s, x
    return None, ""


def group_kernel(p: Any, op: Any, members: tuple[str, ...]) -> Kernel:
    """The contrib kernel of the planner's ``op`` (its ``group``), with its tensors padded
    where it runs in NCHWc; the spec in the shape of :mod:`.specs`' generic ones."""
    group = op.group
    inputs, shape = spec_inputs(p, op, group.inputs)
    while inputs and inputs[-1] is None:
        inputs.pop()
    attrs: dict[str, Any] = {}
    if group.kind == "SkipLayerNormalization":
        attrs["epsilon"] = float(group.core.attr("epsilon", 1e-5))
    elif group.kind in ("FusedMatMul", "QuickGelu"):
        attrs["alpha"] = float(np.float32(group.alpha))
    spec = {
        "op": "com.microsoft." + group.kind,
        "inputs": inputs,
        "outputs": [[p.dtype(group.output), shape(group.output)]],
        "attrs": attrs,
    }
    sizes = [4 * math.prod(i[2]) for i in inputs if i]
    consts = sum(z for i, z in zip([i for i in inputs if i], sizes) if i[0] != "x")
    out = 4 * math.prod(shape(group.output))
    return Kernel(op.head.name, members, spec, consts, sum(sizes) - consts, out)


def reshape_kernels(p: Any, head: str, a: tuple[int, ...], m: int) -> tuple[Kernel, Kernel]:
    """The two ``Reshape`` kernels onnxruntime puts around a Gemm whose first input ``a`` is
    not 2-D: ``a`` to ``[prod(a[:-1]), K]``, and the ``[.., M]`` result back."""
    n, k = math.prod(a[:-1]), a[-1]
    opset = {"opset": p.g.opset_imports[""]} if "" in p.g.opset_imports else {}

    def reshape(src: list[int], dst: list[int]) -> Kernel:
        spec = {
            "op": "Reshape",
            "inputs": [["x", 1, src], ["c", 7, [len(dst)], dst]],
            "outputs": [[1, dst]],
            "attrs": {},
            **opset,
        }
        size = 4 * math.prod(src)
        return Kernel(head, (), spec, 0, size, size, moves=True)

    return reshape(list(a), [n, k]), reshape([n, m], [*a[:-1], m])
