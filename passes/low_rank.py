"""Low-rank factorisation of Gemm, MatMul and Conv weights by truncated SVD.

Write a layer's weight as a matrix ``W`` of ``out × in`` (outputs by inputs) and take its
thin SVD ``W = U Σ Vᵀ`` (in float64, through the eigenproblem of the smaller Gram matrix:
see :func:`hwcc.passes.lib.low_rank_factor.factor`). Keeping the ``r`` largest singular values gives

    W ≈ W_r = U_r Σ_r V_rᵀ = A·B,    A = U_r·sqrt(Σ_r)  (out × r),   B = sqrt(Σ_r)·V_rᵀ  (r × in),

the closest rank-``r`` matrix to ``W`` in the Frobenius and spectral norms (Eckart–Young).
``Σ_r`` is split evenly, ``sqrt`` to each side, so that both factors have the same scale
(column ``i`` of ``A`` and row ``i`` of ``B`` both have norm ``sqrt(σ_i)``): neither factor
carries the whole dynamic range, which matters in fp32 and more so for a later
quantization. The layer becomes "apply ``B`` (in → r), then ``A`` (r → out)":

* Gemm ``Y = α·op(X)·op(Wg) + β·C``, ``op(Wg)`` the ``in × out`` matrix ``Wᵀ``: two Gemms,
  ``T = op(X)·Bᵀ`` (same ``transA``), then ``Y = α·T·Aᵀ + β·C``; the factors are stored in
  the original's layout (``transB`` kept), and the bias ``C`` goes on the second.
* MatMul ``Y = X·Wm`` (constant 2-D ``Wm = Wᵀ``): ``Y = (X·Bᵀ)·Aᵀ``; ``Y = Wm·X`` (``Wm = W``):
  ``Y = A·(B·X)``. Any batch dims of ``X`` broadcast as before.
* Conv with ``d`` filters of ``c × k_h × k_w`` and ``group = 1`` (Zhang et al., CVPR 2015):
  ``W`` is the weight reshaped to ``d × (c·k_h·k_w)``, so each output is a row of ``W`` times
  an input patch. Then ``W·patch = A·(B·patch)``: a Conv of ``r`` filters ``c × k_h × k_w``
  (rows of ``B``; same strides, pads, dilations, ``auto_pad``) followed by a Conv of ``d``
  filters ``1 × 1 × r`` (rows of ``A``) with the bias.

Cost. Weights go from ``out·in`` to ``r·(out + in)``; so do MACs, per output position:
a Conv from ``d·c·k²`` to ``r·(c·k² + d)``, a MAC ratio of

    d·c·k² / (r·(c·k² + d)) ≈ d / r      when c·k² ≫ d.

At ``r = min(out, in)`` (full rank) ``A·B = W`` up to rounding and the rewrite is exact;
since full-rank factors hold more weights than ``W``, the ``min_params_saving`` rule
keeps the pass from firing there unless asked to (``min_params_saving = -1``).

Error. With ``E = W − W_r = Σ_{i>r} σ_i u_i v_iᵀ`` the layer's output error on inputs
``X`` (rows are input vectors or patches) is ``‖X·Eᵀ‖_F² = Σ_{i>r} σ_i² ‖X·v_i‖²`` (the
``u_i`` are orthonormal): a sum of non-negative terms that loses terms as ``r`` grows, so
it never increases with the rank, whatever the inputs.

Each new node carries ``meta["low_rank"] = {"rank": r, "of": full}`` (a ``low_rank``
flag for cost models).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node
from hwcc.ir.search_space import Step, Unit
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.edits import (
    add_constant,
    constant_value,
    drop_unused_initializers,
    rejection_summary,
)
from hwcc.passes.lib.low_rank_factor import choose_rank, factor, param_counts

_ONNX = ("", "ai.onnx")
_OPS = ("Gemm", "MatMul", "Conv")


@register_pass
class LowRank(Pass):
    """Factor Gemm, MatMul and Conv weights into two thinner layers by truncated SVD.

    The rank kept is ``max(1, round(rank_ratio · min(out, in)))``, or the layer's entry in
    ``ranks``; ``layers`` limits the pass to the named nodes. ``LowRank(ranks={...})``
    gives per-layer ranks from Python (the ``ranks`` knob adds to and overrides them).

    Rewrite cases:

    1. ``Gemm`` with a constant ``B``, ``transA`` and ``transB`` 0 or 1, any ``alpha``,
       ``beta`` and bias ``C``: two Gemms, the bias, ``alpha`` and ``beta`` on the second.
    2. ``MatMul`` with a constant 2-D right operand (``X·W``, inputs of any rank): two
       MatMuls.
    3. ``MatMul`` with a constant 2-D left operand (``W·X``): two MatMuls.
    4. ``Conv`` (1-D, 2-D or 3-D) with a constant weight and ``group = 1``: a Conv of ``r``
       filters with the original window, then a 1×1 Conv with the bias. A 1×1 Conv is a
       per-pixel Gemm and is treated like one: it fires when the factors are smaller.

    Must not fire when:

    5. the Conv is grouped or depthwise (``group > 1``): each filter sees only its
       group's channels, so the filter bank is not one ``d × (c·k·k)`` matrix;
    6. the weight is not a constant initializer (a graph input, an overridable
       initializer, a computed value), or is not floating point; a MatMul whose weight is
       not 2-D, or whose two operands are both constant (fold_constants' job);
    7. the factors would not save at least ``min_params_saving`` of the layer's weights:
       ``r·(out + in) > (1 − min_params_saving)·out·in``. Full-rank factors always hold
       more weights than the original (``min(out,in)·(out+in) > out·in``), as do ranks
       above ``out·in/(out+in)``; a layer of one output or one input has nothing to
       save at any rank;
    8. the node already carries ``meta["low_rank"]`` (it is a factor of an earlier run).
    """

    name = "low_rank"
    searchable = search_default = True
    search_order = 30
    aliases = ("lowrank", "low-rank")
    exact = False
    knobs = (
        Knob(
            "rank_ratio",
            float,
            0.5,
            "rank kept, as a fraction of the full rank min(out, in); > 0",
            range=(0.0, 1.0),
        ),
        Knob(
            "min_params_saving",
            float,
            0.01,
            "fire only where the factors save at least this fraction of the layer's weights "
            "(-1: always, even at full rank)",
            range=(-1.0, 0.99),
        ),
        Knob(
            "ranks",
            dict,
            {},
            "per-layer ranks overriding rank_ratio: NODE=RANK,NODE=RANK",
            range=(1, None),
            item=int,
        ),
        Knob("layers", tuple, (), "factor only these nodes: NODE,NODE (blank: every candidate)"),
    )

    def __init__(self, ranks: Mapping[str, int] | None = None):
        self.ranks = dict(ranks or {})

    def units(self, graph: Graph) -> Iterator[Unit]:
        """Each layer this pass can factor (:func:`_match`): its steps keep rank ratios
        0.9, 0.8, … 0.1 of the full rank."""
        for node in graph.nodes:
            if (
                node.op_type not in _OPS
                or node.domain not in _ONNX
                or isinstance(_match(graph, node), str)
            ):
                continue
            steps = tuple(
                Step({"layers": (node.name,), "rank_ratio": r}, {"rank_ratio": r})
                for r in (round(1 - j / 10, 2) for j in range(1, 10))
            )
            yield Unit(f"rank of {node.name}", self.name, (node.name,), steps)

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        if opts["rank_ratio"] <= 0:
            raise HwccError("low_rank: rank_ratio must be > 0", "use a fraction in (0, 1]")
        ranks = {**self.ranks, **opts["ranks"]}
        only = list(opts["layers"])
        unknown = [n for n in [*ranks, *only] if not graph.has_node(n)]
        if unknown:
            raise HwccError(
                f"low_rank: no node named {', '.join(map(repr, unknown))}",
                "name layers by their node names (hwcc inspect lists them)",
            )
        names = [
            n.name
            for n in graph.nodes
            if n.op_type in _OPS and n.domain in _ONNX and (not only or n.name in only)
        ]
        if not names:
            return PassResult(graph, False, "the graph has no Gemm, MatMul or Conv to factor")
        g = graph.copy()
        done: dict[str, dict[str, int]] = {}
        rejected: dict[str, str] = {}
        for name in names:
            site = _match(g, g.node(name))
            if isinstance(site, str):
                rejected[name] = site
                continue
            plan = _plan(site, opts, ranks.get(name))
            if isinstance(plan, str):
                rejected[name] = plan
                continue
            _rewrite(g, site, plan["rank"], plan["of"])
            done[name] = plan
        details: dict[str, Any] = {"factorised": done, "rejected": rejected}
        if not done:
            return PassResult(
                graph, False, rejection_summary("no layer was factorised", rejected), details
            )
        return PassResult(g, True, None, details)


@dataclass
class _Site:
    """A layer that can be factorised: its weight as an ``out × in`` matrix."""

    node: Node
    form: str  # "conv", "gemm", "matmul_right" (X·W) or "matmul_left" (W·X)
    weight: str
    matrix: np.ndarray


def _match(g: Graph, node: Node) -> _Site | str:
    """The layer's weight matrix, or why it cannot be factorised."""
    if "low_rank" in node.meta:
        return "it is already a low-rank factor"
    if node.op_type == "MatMul":
        consts = [constant_value(g, t) for t in node.inputs[:2]]
        if all(c is not None for c in consts):
            return "both operands are constant (a constant to fold, not a layer)"
        side = 1 if consts[1] is not None else 0
        w = consts[side]
        if w is None:
            return "neither operand is a constant initializer"
        if w.ndim != 2:
            return f"its constant operand is {w.ndim}-D, not a 2-D weight matrix"
        form, matrix = ("matmul_right", w.T) if side == 1 else ("matmul_left", w)
    else:
        side = 1
        w = constant_value(g, node.inputs[1]) if len(node.inputs) > 1 else None
        if w is None:
            return "its weight is not a constant initializer"
        if node.op_type == "Conv":
            group = int(node.attr("group", 1))
            if group != 1:
                return (
                    f"it is a grouped convolution (group={group}):"
                    " its filters do not see every input channel"
                )
            form, matrix = "conv", w.reshape(w.shape[0], -1)
        else:
            form, matrix = "gemm", (w if node.attr("transB", 0) else w.T)
    if w.dtype.kind != "f":
        return f"its weight is {w.dtype}, not floating point"
    if _selection(matrix):
        return (
            "its weight only moves values (0s and 1s, at most one 1 per row and column, as "
            "the scatter of a pruned recurrent state): every rank dropped loses whole values"
        )
    return _Site(node, form, node.inputs[side], matrix)


def _selection(m: np.ndarray) -> bool:
    """Whether ``m`` is a 0/1 matrix with at most one 1 in each row and each column."""
    ones = m == 1
    return bool(
        np.all(ones | (m == 0)) and ones.sum(axis=0).max() <= 1 and ones.sum(axis=1).max() <= 1
    )


def _plan(site: _Site, opts: Mapping[str, Any], explicit: int | None) -> dict[str, int] | str:
    """The rank and weight counts of the factorisation, or why it saves too little."""
    out, inp = site.matrix.shape
    full = min(out, inp)
    rank = choose_rank(full, opts["rank_ratio"], explicit)
    before, after = param_counts(out, inp, rank)
    saving = 1.0 - after / before
    if saving < opts["min_params_saving"]:
        return (
            f"rank {rank} of {full} needs {after} weights against {before} "
            f"(saving {saving:.1%} < min_params_saving {opts['min_params_saving']:.1%})"
        )
    return {"rank": rank, "of": full, "params_before": before, "params_after": after}


def _rewrite(g: Graph, site: _Site, rank: int, full: int) -> None:
    """Replace the site's node by its two factors; the second writes the node's output."""
    node, dtype = site.node, site.matrix.dtype
    a, b = factor(site.matrix, rank)  # out × r, r × in
    ins, attrs = list(node.inputs), dict(node.attrs)
    flag = {"low_rank": {"rank": rank, "of": full}}
    g.erase_node(node, force=True)
    mid = g.unique_name(f"{node.name}_lowrank_out")

    def weight(suffix: str, array: np.ndarray) -> str:
        name = g.unique_name(f"{site.weight}_lowrank_{suffix}")
        add_constant(g, name, np.ascontiguousarray(array).astype(dtype))
        return name

    if site.form == "conv":
        shape = constant_value(g, site.weight).shape
        ones = [1] * (len(shape) - 2)
        first = ("Conv", [ins[0], weight("in", b.reshape((rank, *shape[1:])))], attrs)
        second = (
            "Conv",
            [mid, weight("out", a.reshape((shape[0], rank, *ones))), *ins[2:]],
            {"kernel_shape": ones},
        )
    elif site.form == "gemm":
        tb = int(attrs.get("transB", 0))
        first = (
            "Gemm",
            [ins[0], weight("in", b if tb else b.T)],
            {"transA": int(attrs.get("transA", 0)), "transB": tb},
        )
        second = (
            "Gemm",
            [mid, weight("out", a if tb else a.T), *ins[2:]],
            {
                "alpha": float(attrs.get("alpha", 1.0)),
                "beta": float(attrs.get("beta", 1.0)),
                "transB": tb,
            },
        )
    elif site.form == "matmul_right":
        first = ("MatMul", [ins[0], weight("in", b.T)], {})
        second = ("MatMul", [mid, weight("out", a.T)], {})
    else:
        first = ("MatMul", [weight("in", b), ins[1]], {})
        second = ("MatMul", [weight("out", a), mid], {})
    types = dict(node.attr_types) if site.form == "conv" else None
    g.add_node(
        first[0],
        first[1],
        [mid],
        first[2],
        name=f"{node.name}_lowrank",
        meta=flag,
        attr_types=types,
    )
    new = g.add_node(second[0], second[1], 1, second[2], name=node.name, meta={**node.meta, **flag})
    _take_output(g, node.outputs[0], new.outputs[0])
    drop_unused_initializers(g, [site.weight])


def _take_output(g: Graph, old: str, new: str) -> None:
    """Readers of the erased node's output ``old`` read ``new``; a graph output keeps its name."""
    g.replace_all_uses_with(old, new)
    if old in g.tensors and old not in g.outputs and g.producer(old) is None and not g.users(old):
        del g.tensors[old]
