"""Lower 3×3 stride-1 convolutions to Winograd F(2×2, 3×3) in standard ONNX ops.

Lavin & Gray (2016): for a 4×4 input tile ``d`` and a 3×3 filter ``g`` the 2×2 output tile
of their correlation is

    Y = Aᵀ [ U ⊙ V ] A,     U = G g Gᵀ,   V = Bᵀ d B,

with ``Bᵀ``, ``G``, ``Aᵀ`` in :mod:`hwcc.passes.lib.winograd_math`. Tiles overlap: tile
``(t_h, t_w)`` starts at input row ``2·t_h`` and column ``2·t_w``. Summed over input
channels, the element-wise product at each of the 16 positions ``(ξ, ν)`` is a matrix
product, ``M[ξν] = U[ξν] · V[ξν]`` with ``U[ξν]`` of ``M × C`` and ``V[ξν]`` of
``C × tiles``. So a Conv of ``M`` filters over ``C`` channels, output ``P × Q``, becomes

1. ``Pad`` by the Conv's pads, plus one row (column) at the end when ``P`` (``Q``) is odd,
   to ``(2·T_h + 2) × (2·T_w + 2)`` with ``T_h = ⌈P/2⌉``, ``T_w = ⌈Q/2⌉``;
2. the input transform, one axis at a time (``d B`` applies ``Bᵀ`` along the width of the
   tile, ``Bᵀ (d B)`` then along its height): a ``Gather`` on the width with the constant
   index ``idx[j, t] = 2t + j`` (``4 × T_w``) lays out the 4 columns of every tile;
   ``Split`` + ``Add``/``Sub`` per row of ``Bᵀ`` + ``Concat`` apply ``Bᵀ`` along that new
   axis; the same on the height gives ``V`` as ``[N, C, 4, T_h, 4, T_w]``. A Gather is
   pure data movement, one node per axis, and no convolution. ``Bᵀ`` has entries 0 and
   ±1, so applying it is additions, as on real hardware (a MatMul by ``Bᵀ⊗Bᵀ`` would be
   priced as 256 MACs per tile and channel that no implementation does);
3. ``Transpose``/``Reshape`` to ``[16, C, N·T_h·T_w]`` and one batched ``MatMul`` with the
   offline ``U`` (an initializer ``[16, M, C]``, computed in float64): ``16·M·C`` MACs
   per tile, the only multiplies, against ``36·M·C`` for the direct 2×2 outputs;
4. the inverse transform ``Aᵀ m A``, again ``Split`` + ``Add``/``Sub`` + ``Concat`` per axis,
   then ``Transpose``/``Reshape`` to ``[N, M, 2·T_h, 2·T_w]``;
5. a ``Slice`` back to ``P × Q`` when the tiles overhang, and an ``Add`` of the bias.

The MatMul carries ``meta["winograd"] = {"F": "2x2,3x3", "mults_per_output": 4, "of":
conv, "lowered": True}``: the workload view prices it at ``16·M·C·tiles`` MACs, which for
even ``P, Q`` is ``9·M·C·P·Q / 2.25``, the direct Conv's count divided by 2.25.

With ``mode=annotate`` the same Convs stay Convs and only gain ``meta["winograd"]`` (with
``"lowered": False``): for targets whose own kernels run Winograd (cuDNN picks it for 3×3
stride-1 layers), where a cost model divides the Conv's multiplies by 2.25 and an explicit
lowering would only add kernel launches. The graph's numbers do not change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node, dtypes
from hwcc.ir.search_space import Step, Unit
from hwcc.ir.transform import Knob, Pass, PassContext, PassResult, register_pass
from hwcc.passes.lib.edits import (
    add_constant,
    constant_value,
    drop_unused_initializers,
    rejection_summary,
)
from hwcc.passes.lib.winograd_math import AT, BT, additions, filter_transform, tiles

_ONNX = ("", "ai.onnx")
_MIN_OPSET = 13  # Split with its sizes as an input
_FLOATS = (dtypes.FLOAT, dtypes.DOUBLE)


@register_pass
class Winograd(Pass):
    """Lower 3×3 stride-1 Convs to Winograd F(2×2, 3×3): 2.25× fewer multiplies.

    Rewrite cases:

    1. ``Conv`` 2-D, 3×3 kernel, stride 1, dilation 1, ``group = 1``, constant float
       weight, any pads (explicit or ``auto_pad``), with or without a bias, even or odd
       output sizes, any batch size (a symbolic batch too): lowered to Pad, Gather,
       Split/Add/Sub/Concat, Transpose/Reshape, one MatMul flagged ``winograd``, and back.

    Must not fire when:

    2. the stride is not 1: tiles of stride 2 would compute four times the outputs needed;
    3. the kernel is not 3×3 (1×1 has nothing to save; 5×5 needs F(2×2, 5×5), other
       matrices);
    4. the Conv is dilated: the 4×4 tile no longer holds the filter's window;
    5. the Conv is grouped or depthwise: the channel sum is per group, not the one MatMul
       over all channels this lowering writes;
    6. the weight is not a constant initializer, or the weight or input is not float32 or
       float64, or the Conv is not 2-D;
    7. the input's channels, height or width are not known integers (the tiling is fixed
       when the pass runs), or the model's opset is below 13;
    8. the tiles overhang so much that they would multiply more than the direct Conv
       (``16·⌈P/2⌉·⌈Q/2⌉ >= 9·P·Q``, e.g. a 1×1 output).

    With ``mode=annotate``:

    9. the Convs of case 1 keep their node and gain ``meta["winograd"]`` (``lowered``
       false); cases 2-8 are refused alike.
    """

    name = "winograd"
    searchable = True
    search_order = 40
    knobs = (
        Knob(
            "mode",
            str,
            "lower",
            "lower: write F(2x2,3x3) in ONNX ops; annotate: flag the Conv for "
            "targets whose kernels do Winograd themselves",
            choices=("lower", "annotate"),
        ),
        Knob("layers", tuple, (), "lower only these Convs: NODE,NODE (blank: every candidate)"),
    )

    def units(self, graph: Graph) -> Iterator[Unit]:
        """Each Conv this pass can lower (:func:`_match`: 3×3, stride 1, no dilation or
        groups, constant weights), with one step: lowered to F(2×2, 3×3)."""
        for node in graph.nodes:
            if (
                node.op_type != "Conv"
                or node.domain not in _ONNX
                or isinstance(_match(graph, node), str)
            ):
                continue
            step = Step({"layers": (node.name,), "mode": "lower"}, {"form": "F(2x2,3x3)"})
            yield Unit(f"winograd of {node.name}", self.name, (node.name,), (step,))

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        opts = self.options(ctx)
        only = list(opts["layers"])
        unknown = [n for n in only if not graph.has_node(n)]
        if unknown:
            raise HwccError(
                f"winograd: no node named {', '.join(map(repr, unknown))}",
                "name layers by their node names (hwcc inspect lists them)",
            )
        convs = [
            n.name
            for n in graph.nodes
            if n.op_type == "Conv" and n.domain in _ONNX and (not only or n.name in only)
        ]
        if not convs:
            return PassResult(graph, False, "the graph has no Conv")
        g = graph.copy()
        annotate = opts["mode"] == "annotate"
        lowered, rejected = [], {}
        for name in convs:
            site = _match(g, g.node(name))
            if isinstance(site, str):
                rejected[name] = site
                continue
            if annotate:
                site.node.meta["winograd"] = _flag(site.node, lowered=False)
            else:
                _lower(g, site)
            lowered.append(name)
        details: dict[str, Any] = {
            "annotated" if annotate else "lowered": lowered,
            "rejected": rejected,
        }
        if not lowered:
            return PassResult(
                graph, False, rejection_summary("no Conv could be lowered", rejected), details
            )
        return PassResult(g, True, None, details)


@dataclass
class _Site:
    """A Conv to lower, with its resolved geometry."""

    node: Node
    weight: np.ndarray  # [M, C, 3, 3]
    height: int
    width: int
    pads: tuple[int, int, int, int]  # top, left, bottom, right

    @property
    def out_hw(self) -> tuple[int, int]:
        top, left, bottom, right = self.pads
        return self.height + top + bottom - 2, self.width + left + right - 2


def _match(g: Graph, conv: Node) -> _Site | str:
    """The Conv's geometry, or why it cannot be lowered (cases 2-8)."""
    w = constant_value(g, conv.inputs[1]) if len(conv.inputs) > 1 else None
    if w is None:
        return "its weight is not a constant initializer"
    if w.ndim != 4:
        return f"it is a {w.ndim - 2}-D convolution, not 2-D"
    if tuple(w.shape[2:]) != (3, 3):
        return f"its kernel is {w.shape[2]}x{w.shape[3]}: F(2x2,3x3) is for 3x3 filters"
    if any(s != 1 for s in conv.attr("strides") or [1, 1]):
        return f"its strides are {list(conv.attr('strides'))}: Winograd tiles need stride 1"
    if any(d != 1 for d in conv.attr("dilations") or [1, 1]):
        return (
            f"it is dilated {list(conv.attr('dilations'))}: the 4x4 tile does not hold the window"
        )
    group = int(conv.attr("group", 1))
    if group != 1:
        return f"it is a grouped convolution (group={group}): the channel sum is per group"
    x = g.tensors[conv.inputs[0]]
    if (
        w.dtype.kind != "f"
        or dtypes.onnx_type_of(w.dtype) not in _FLOATS
        or x.elem_type not in _FLOATS
    ):
        return "its weight or input is not float32 or float64"
    if x.shape is None or len(x.shape) != 4 or not all(isinstance(d, int) for d in x.shape[1:]):
        return f"its input's channels, height and width are not all known ({x.shape})"
    if g.opset_imports.get("", g.opset_imports.get("ai.onnx", 0)) < _MIN_OPSET:
        return f"the model's opset is below {_MIN_OPSET}"
    site = _Site(conv, w, int(x.shape[2]), int(x.shape[3]), _pads(conv))
    p, q = site.out_hw
    if 16 * tiles(p) * tiles(q) >= 9 * p * q:
        return (
            f"its {p}x{q} output leaves the 2x2 tiles so empty"
            " that they multiply more than the Conv"
        )
    return site


def _pads(conv: Node) -> tuple[int, int, int, int]:
    """Top, left, bottom, right padding; ``auto_pad`` SAME_* is one on each side for a
    3×3 stride-1 Conv (total ``k − 1 = 2``, split evenly either way)."""
    auto = conv.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return 1, 1, 1, 1
    if auto == "VALID":
        return 0, 0, 0, 0
    top, left, bottom, right = conv.attr("pads") or [0, 0, 0, 0]
    return int(top), int(left), int(bottom), int(right)


class _Builder:
    """Adds the nodes and constants of one lowering, named after the Conv."""

    def __init__(self, g: Graph, conv: Node, dtype: np.dtype):
        self.g, self.prefix, self.dtype = g, f"{conv.name}/winograd", dtype
        self._consts: dict[str, str] = {}

    def const(self, key: str, array: np.ndarray) -> str:
        if key not in self._consts:
            name = self.g.unique_name(f"{self.prefix}/{key}")
            add_constant(
                self.g, name, array if array.dtype.kind == "i" else array.astype(self.dtype)
            )
            self._consts[key] = name
        return self._consts[key]

    def ints(self, key: str, values: list[int]) -> str:
        return self.const(key, np.array(values, dtype=np.int64))

    def op(
        self,
        op_type: str,
        inputs: list[str],
        attrs: dict | None = None,
        *,
        outputs: int = 1,
        meta: dict | None = None,
    ) -> Any:
        node = self.g.add_node(
            op_type, inputs, outputs, attrs, meta=meta, name=f"{self.prefix}/{op_type.lower()}"
        )
        return node.outputs[0] if outputs == 1 else list(node.outputs)


def _lower(g: Graph, site: _Site) -> None:
    """Write the Winograd form of ``site``'s Conv and route its readers to it."""
    conv, w = site.node, site.weight
    m, c = w.shape[:2]
    (p, q), (top, left, bottom, right) = site.out_hw, site.pads
    th, tw = tiles(p), tiles(q)
    b = _Builder(g, conv, w.dtype)
    x = conv.inputs[0]
    pads = [0, 0, top, left, 0, 0, bottom + 2 * th - p, right + 2 * tw - q]
    if any(pads):
        x = b.op("Pad", [x, b.ints("pads", pads)])
    x = b.op("Gather", [x, b.const("columns", _windows(tw))], {"axis": 3})  # [N, C, Hp, 4, Tw]
    x = _apply(b, x, BT, axis=3)
    x = b.op("Gather", [x, b.const("rows", _windows(th))], {"axis": 2})  # [N, C, 4, Th, 4, Tw]
    x = _apply(b, x, BT, axis=2)
    x = b.op("Transpose", [x], {"perm": [2, 4, 1, 0, 3, 5]})  # [ξ, ν, C, N, Th, Tw]
    v = b.op("Reshape", [x, b.ints("v_shape", [16, c, -1])])
    flag = {"winograd": _flag(conv, lowered=True)}
    prod = b.op("MatMul", [b.const("U", filter_transform(w)), v], meta=flag)  # [16, M, N·Th·Tw]
    y = b.op("Reshape", [prod, b.ints("m_shape", [4, 4, m, -1, th, tw])])
    y = _apply(b, _apply(b, y, AT, axis=0), AT, axis=1)  # [2, 2, M, N, Th, Tw]
    y = b.op("Transpose", [y], {"perm": [3, 2, 4, 0, 5, 1]})  # [N, M, Th, 2, Tw, 2]
    y = b.op("Reshape", [y, b.ints("y_shape", [-1, m, 2 * th, 2 * tw])])
    if (2 * th, 2 * tw) != (p, q):
        y = b.op(
            "Slice", [y, b.ints("starts", [0, 0]), b.ints("ends", [p, q]), b.ints("axes", [2, 3])]
        )
    bias = conv.inputs[2] if len(conv.inputs) > 2 else ""
    if bias:
        value = constant_value(g, bias)
        shaped = (
            b.const("bias", value.reshape(m, 1, 1))
            if value is not None
            else b.op("Reshape", [bias, b.ints("bias_shape", [m, 1, 1])])
        )
        y = b.op("Add", [y, shaped])
    g.replace_all_uses_with(conv.outputs[0], y)
    g.erase_node(conv)
    drop_unused_initializers(g, [t for t in conv.inputs[1:] if t])


def _flag(conv: Node, *, lowered: bool) -> dict[str, Any]:
    return {"F": "2x2,3x3", "mults_per_output": 4, "of": conv.name, "lowered": lowered}


def _windows(count: int) -> np.ndarray:
    """``idx[j, t] = 2t + j``: element ``j`` of each of ``count`` overlapping tiles."""
    return (np.arange(4)[:, None] + 2 * np.arange(count)[None, :]).astype(np.int64)


def _apply(b: _Builder, x: str, matrix: np.ndarray, axis: int) -> str:
    """``matrix`` (0/±1 entries, 4 columns) applied along ``axis`` of length 4 of ``x``."""
    parts = b.op("Split", [x, b.ints("split", [1, 1, 1, 1])], {"axis": axis}, outputs=4)
    rows = []
    for plus, minus in additions(matrix):
        terms = [parts[j] for j in plus]
        acc = terms[0] if terms else b.op("Neg", [parts[minus.pop(0)]])
        for t in terms[1:]:
            acc = b.op("Add", [acc, t])
        for j in minus:
            acc = b.op("Sub", [acc, parts[j]])
        rows.append(acc)
    return b.op("Concat", rows, {"axis": axis})
