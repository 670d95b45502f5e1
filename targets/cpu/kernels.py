"""The kernels onnxruntime's CPU provider runs for a graph, predicted from the graph.

nn-Meter (Zhang et al., MobiSys 2021) predicts latency per *kernel* as the runtime fuses
and executes it, not per ONNX node. This module replays, on an :class:`~hwcc.ir.Graph`,
the rewrites onnxruntime applies at ``ORT_ENABLE_ALL`` on x86 and returns one
:class:`Kernel` per executed kernel, each with a spec (a JSON-ready dict, the lookup-table
key) and the nodes it covers. The rules below were read off onnxruntime's optimizer
(``conv_bn_fusion``, ``conv_activation_fusion``, ``gemm_activation_fusion``,
``matmul_add_fusion``, ``nchwc_transformer``) and checked against the optimized models
this build writes (``SessionOptions.optimized_model_filepath``); the tests compare the two.

Level 1-2 fusions (per node, on single-use chains that are not graph outputs):

1. ``Identity`` and ``Dropout`` are removed (a ``Dropout`` that makes a graph output, or
   whose mask is read, stays).
2. ``Conv`` absorbs a following ``BatchNormalization``, ``Add`` or ``Mul`` whose second
   operand is a constant of one value per output channel (``[M, 1, 1]``, ``[1, M, 1, 1]``;
   a scalar for ``Mul`` only; they fold into its weights and bias), then one activation
   (``FusedConv``): those the installed onnxruntime fuses, asked of it
   (:func:`.fusions.fused_activations`; ``Relu, Sigmoid, Tanh, LeakyRelu, HardSigmoid,
   Clip`` in every release, ``HardSwish`` in recent ones, which onnxruntime also makes of
   ``x · HardSigmoid(x)`` with ``α = 1/6, β = 1/2``).
3. ``MatMul`` (2-D second input) + ``Add`` becomes ``Gemm`` (:func:`.extended.matmul_add`),
   with a ``Reshape`` before and after when the first input is not 2-D; a ``Gemm`` not
   followed by such a ``Reshape`` absorbs one activation (``FusedGemm``; again as the
   build says).
3b. Transformer blocks: ``Gelu``, ``SkipLayerNormalization`` and ``FusedMatMul`` (a MatMul
   with its scalar scales), replayed by :mod:`.extended`.

Level 3, the NCHWc layout (block ``B`` channels; 16 with AVX-512, 8 with AVX2; 0 turns it
off). Tensors in NCHWc are zero-padded to a multiple of ``B`` channels, so a kernel's cost
is a staircase in channel count with steps of ``B``:

4. A float 2-D ``Conv`` with constant weights runs as ``nchwc.Conv`` when: ``groups == 1``
   and ``C < B`` (read in NCHW directly) or ``C`` a multiple of 4 (padded); depthwise with
   ``M`` a multiple of 4 (padded); other grouped convs when ``C/g``, ``M/g`` and ``M`` are
   multiples of ``B``. The output channel count ``M`` is padded whatever it is.
5. ``MaxPool``, ``AveragePool`` run in NCHWc when their channel count is a multiple of
   ``B``; ``GlobalMaxPool``, ``GlobalAveragePool`` too, but only on a tensor that already is
   NCHWc or is a graph input.
6. An NCHWc kernel whose input is not NCHWc gets a ``ReorderInput`` (one per tensor).
7. ``Add``/``Sum`` of two NCHWc tensors fuses into a producing single-use NCHWc conv that
   has no activation yet (its "Sum" input); ``Mul`` and unfused ``Add`` run on the padded
   NCHWc tensors.
8. The activations the build runs on NCHWc tensors (``Relu, Sigmoid, Tanh, HardSigmoid``,
   and in recent releases ``Clip``, ``HardSwish``, ``Gelu``; asked of it like rule 2)
   fuse into the single-use, not yet activated conv before them when rule 2's list has
   them, else run on the padded tensor; ``BatchNormalization`` on an
   NCHWc tensor becomes a depthwise 1x1 ``nchwc.Conv``; ``Concat`` on channels stays NCHWc
   when every input's channel count is a multiple of ``B``.
9. An NCHWc tensor read by anything else, or that is a graph output, gets one
   ``ReorderOutput``.
10. Then a plain conv (not NCHWc, with a bias, no activation, single use) absorbs the
    ``Add`` of two equal 4-D tensors it feeds (the Add's first input that qualifies) and
    the activation after it (``FusedConv`` with a "Z" input).

Fusions 1-3 and 10 join only nodes of one graph: the nodes of an ``If``'s taken branch
(inlined for pricing by :mod:`hwcc.ir.workload_flow`, tagged ``meta["scope"]``) fuse among
themselves, never with the nodes around the ``If``, as onnxruntime optimizes a branch
as a graph of its own.

Rules 4-10 are replayed by :mod:`.nchwc`, and each kernel's spec and bytes are built by
:mod:`.specs`. Not replayed (their nodes are priced unfused, as single kernels): the
attention fusion (``Attention``, which needs the pre-LayerNorm pattern of BERT exports),
LayerNorm from its ``ReduceMean`` parts, a ``Transpose`` folded into ``FusedMatMul``,
``Transpose``/``Resize`` in NCHWc, quantized-op fusions, a per-channel ``Mul`` with the
constant first (a depthwise 1x1 NCHWc conv in onnxruntime, a ``Mul`` here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwcc.ir import Graph, Node, dtypes
from hwcc.ir.workload import Workload
from hwcc.targets.cpu import extended
from hwcc.targets.cpu.fusions import fused_activations
from hwcc.targets.cpu.nchwc import NchwcLayout
from hwcc.targets.cpu.specs import (
    STANDARD_DOMAINS,
    Clock,
    Kernel,
    op_kernel,
    reorder_kernel,
    same_scope,
    spec_key,
)

__all__ = ["Kernel", "Plan", "plan_kernels", "spec_key"]

_ELIMINATED = ("Identity", "Dropout")


@dataclass
class Plan:
    """The kernels of a graph and what became of every node.

    Attributes:
        kernels: in execution order.
        removed: node name -> why it costs nothing (fused, removed, constant).
        input_bytes: bytes of the graph inputs; output_bytes: of the graph outputs.
        activation_bytes: the most bytes of activations live at once (:class:`.specs.Clock`).
    """

    kernels: list[Kernel]
    removed: dict[str, str]
    input_bytes: int = 0
    output_bytes: int = 0
    activation_bytes: int = 0

    @property
    def working_set(self) -> int:
        """Distinct bytes one inference touches: weights, graph inputs, and the activations'
        buffers, which onnxruntime reuses (the most bytes live at once)."""
        weights = sum(k.weight_bytes for k in self.kernels)
        return self.input_bytes + weights + self.activation_bytes


@dataclass
class _Op:
    """A node after the level 1-2 fusions, with its NCHWc decision."""

    head: Node
    members: list[Node]
    kind: str  # conv | gemm | generic
    inputs: list[str]
    output: str
    act: str = ""
    act_params: list[float] = field(default_factory=list)
    bias: bool = False
    nchwc: bool = False
    nchw_in: bool = False
    sum_input: str = ""
    padded: set[str] = field(default_factory=set)  # tensors read/written in NCHWc
    group: extended.Group | None = None  # kind "contrib": the transformer fusion it runs


class _Planner(NchwcLayout):
    """Replays onnxruntime's rewrites on a graph: :meth:`fuse` (levels 1-2), :meth:`layout`
    (NCHWc), :meth:`conv_add` (level 3 after NCHWc), in that order."""

    def __init__(self, g: Graph, work: Workload, block: int):
        self.g, self.block = g, block
        self.layers = {x.name: x for x in work.layers}
        self.const = {n for n, t in g.tensors.items() if t.data is not None}
        for node in g.nodes:
            if self.layers[node.name].kind == "constant":
                self.const.update(o for o in node.outputs if o)
        self.removed: dict[str, str] = {}
        self.alias: dict[str, str] = {}
        self.ops: list[_Op] = []

    # ------------------------------------------------------------ helpers
    def shape(self, t: str) -> tuple[int, ...]:
        s = self.g.tensors[t].shape
        if s is None or any(not isinstance(d, int) for d in s):
            raise ValueError(f"shape of {t!r} unknown")
        return tuple(s)

    def dtype(self, t: str) -> int:
        return self.g.tensors[t].elem_type or dtypes.FLOAT

    def value(self, t: str) -> np.ndarray | None:
        data = self.g.tensors[t].data if t in self.g.tensors else None
        if data is None and (p := self.g.producer(t)) is not None and p.op_type == "Constant":
            v = p.attr("value")
            data = v if isinstance(v, np.ndarray) else None
        return data

    def resolve(self, t: str) -> str:
        while t in self.alias:
            t = self.alias[t]
        return t

    def data_inputs(self, node: Node) -> list[str]:
        return [self.resolve(t) for t in node.inputs if t and t not in self.const]

    # ------------------------------------------------------------ level 1-2
    def fuse(self) -> None:
        g = self.g
        for node in g.nodes:
            if self.layers[node.name].kind == "constant":
                self.removed[node.name] = "constant: folded before run time"
            elif (
                node.op_type in _ELIMINATED
                and node.domain in STANDARD_DOMAINS
                and node.inputs
                and self.removable(node)
            ):
                self.alias[node.outputs[0]] = node.inputs[0]
                self.removed[node.name] = f"{node.op_type}: removed by onnxruntime"
        self.users: dict[str, list[Node]] = {}
        for node in g.nodes:
            if node.name not in self.removed:
                for t in {self.resolve(t) for t in node.inputs if t}:
                    self.users.setdefault(t, []).append(node)
        self.gemm_add: dict[str, Node] = {}  # MatMul -> the bias Add it runs as a Gemm with
        for node in g.nodes:
            if node.name not in self.removed and node.domain in STANDARD_DOMAINS:
                if node.op_type == "MatMul" and (add := extended.matmul_add(self, node)):
                    self.gemm_add[node.name] = add
        gemm = {n.name for n in self.gemm_add.values()} | set(self.gemm_add)
        self.groups = extended.find_groups(self, gemm)
        taken: set[str] = set()
        for node in g.nodes:
            if node.name in self.removed or node.name in taken:
                continue
            op = self.start(node)
            taken.update(m.name for m in op.members)
            self.ops.append(op)

    def removable(self, node: Node) -> bool:
        """Identity goes unless it joins a graph input to a graph output; Dropout unless it
        makes a graph output or its mask is read."""
        out = [o for o in node.outputs if o and (self.g.users(o) or self.g.is_graph_output(o))]
        to_output = any(self.g.is_graph_output(o) for o in out)
        if node.op_type == "Identity":
            return not (to_output and node.inputs[0] in self.g.inputs)
        return not to_output and out == [node.outputs[0]]

    def sole_user(self, t: str) -> Node | None:
        users = self.users.get(t, [])
        if (
            len(users) != 1
            or self.g.is_graph_output(t)
            or any(self.g.is_graph_output(a) for a, b in self.alias.items() if b == t)
        ):
            return None
        return users[0]

    def start(self, node: Node) -> _Op:
        ins = self.data_inputs(node)
        out = node.outputs[0] if node.outputs else ""
        std = node.domain in STANDARD_DOMAINS
        if (group := self.groups.get(node.name)) is not None:
            ins = [self.resolve(t) for t in group.inputs if t and t not in self.const]
            members = [n for n in group.nodes if n is not node]
            op = _Op(node, members, "contrib", ins, group.output, group=group)
        elif (
            std and node.op_type == "Conv" and len(node.inputs) > 1 and node.inputs[1] in self.const
        ):
            bias = len(node.inputs) > 2 and bool(node.inputs[2])
            op = _Op(node, [], "conv", ins[:1], out, bias=bias)
            self.absorb(op, per_channel=True, acts=fused_activations("conv"))
        elif std and node.op_type == "Gemm":
            op = _Op(node, [], "gemm", ins, out, bias=len(node.inputs) > 2 and bool(node.inputs[2]))
            self.absorb(op, per_channel=False, acts=fused_activations("gemm"))
        elif std and node.op_type == "MatMul" and node.name in self.gemm_add:
            op = _Op(node, [], "gemm", ins, out, bias=True)
            add = self.gemm_add[node.name]
            op.members.append(add)
            op.output = add.outputs[0]
            if len(self.shape(node.inputs[0])) == 2:  # else a Reshape follows the Gemm
                self.absorb(op, per_channel=False, acts=fused_activations("gemm"))
        else:
            op = _Op(node, [], "generic", ins, out)
        return op

    def absorb(self, op: _Op, *, per_channel: bool, acts: tuple[str, ...]) -> None:
        """Fold a single-use chain of constant BN/Add/Mul (convs) and one activation."""
        while True:
            if "HardSwish" in acts and (pair := self.hard_swish(op)) is not None:
                op.act, op.act_params = "HardSwish", []
                op.members.extend(pair)
                op.output = pair[1].outputs[0]
                return
            nxt = self.sole_user(op.output)
            if nxt is None or nxt.domain not in STANDARD_DOMAINS or not same_scope(nxt, op.head):
                return
            rest = [t for t in nxt.inputs[1:] if t]
            constant = all(t in self.const for t in rest)
            if per_channel and nxt.op_type == "BatchNormalization" and constant:
                op.bias = True
            elif (
                per_channel and nxt.op_type in ("Add", "Mul") and self.channel_const(nxt, op.output)
            ):
                op.bias = op.bias or nxt.op_type == "Add"
            elif nxt.op_type in acts and constant:
                op.act, op.act_params = nxt.op_type, self.act_params(nxt)
                op.members.append(nxt)
                op.output = nxt.outputs[0]
                return
            else:
                return
            op.members.append(nxt)
            op.output = nxt.outputs[0]

    def hard_swish(self, op: _Op) -> tuple[Node, Node] | None:
        """``x · HardSigmoid(x)`` with α = 1/6, β = 1/2 on ``op``'s output: the HardSwish
        onnxruntime fuses from the two (then into the layer before, like rule 2's)."""
        t = op.output
        users = self.users.get(t, [])
        if len(users) != 2 or self.g.is_graph_output(t):
            return None
        hsig = next((u for u in users if u.op_type == "HardSigmoid"), None)
        mul = next((u for u in users if u.op_type == "Mul"), None)
        if hsig is None or mul is None or not all(same_scope(u, op.head) for u in users):
            return None
        if any(u.domain not in STANDARD_DOMAINS for u in users):
            return None
        alpha, beta = self.act_params(hsig)
        ins = sorted(self.resolve(x) for x in mul.inputs)
        if not (math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5):
            return None
        if ins != sorted([t, hsig.outputs[0]]) or self.sole_user(hsig.outputs[0]) is not mul:
            return None
        return hsig, mul

    def channel_const(self, node: Node, t: str) -> bool:
        """onnxruntime's Conv + Mul/Add fusions: the constant is the second input and holds
        one value per output channel (``[M, 1, 1]`` or ``[1, M, 1, 1]`` for a 2-D conv), or
        for a Mul a scalar; a constant first, or a ``[1]`` or ``[1, 1, 1, 1]``, stays a
        kernel of its own."""
        if len(node.inputs) != 2 or self.resolve(node.inputs[0]) != t:
            return False
        if node.inputs[1] not in self.const:
            return False
        s, out = self.shape(node.inputs[1]), self.shape(t)
        if not s:
            return node.op_type == "Mul"
        axis = {len(out): 1, len(out) - 1: 0}.get(len(s))
        if axis is None:
            return False
        return s[axis] == out[1] and all(d == 1 for i, d in enumerate(s) if i != axis)

    def act_params(self, node: Node) -> list[float]:
        if node.op_type == "LeakyRelu":
            return [float(node.attr("alpha", 0.01))]
        if node.op_type == "HardSigmoid":
            return [float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))]
        if node.op_type == "Clip":
            vals = [self.value(t) if t else None for t in list(node.inputs[1:3]) + [""] * 2][:2]
            lo = float(vals[0]) if vals[0] is not None else -3.4028234663852886e38
            hi = float(vals[1]) if vals[1] is not None else 3.4028234663852886e38
            return [lo, hi]
        return []


def plan_kernels(graph: Graph, work: Workload, block: int) -> Plan:
    """The kernels onnxruntime runs for ``graph`` and what became of each node.

    Args:
        graph: a shape-inferred graph.
        work: its workload (:func:`hwcc.ir.workload.analyze`), for constant detection.
        block: the NCHWc block size of this machine (0: no NCHWc layout).

    Returns:
        The :class:`Plan`.

    Raises:
        ValueError: a shape needed to build a kernel is unknown.
    """
    p = _Planner(graph, work, block)
    p.fuse()
    p.layout()
    p.conv_add()
    out: list[Kernel] = []
    removed = dict(p.removed)
    pending = {id(op): [] for op in p.ops}
    for op, kind, t in p.reorders:
        pending[id(op)].append((reorder_kernel(p, op, kind, t), t))
    clock = Clock(p)
    for op in p.ops:
        if op.kind == "fused":
            continue
        members = tuple(m.name for m in op.members)
        for m in members:
            removed[m] = f"fused into {op.head.name}"
        reorders = pending[id(op)]
        out.extend(clock(k, [t], t) for k, t in reorders if k.spec["op"] == "nchwc.ReorderInput")
        reads = [*op.inputs, op.sum_input] if op.sum_input else op.inputs
        if op.kind == "contrib":
            out.append(clock(extended.group_kernel(p, op, members), reads, op.output))
        elif op.kind == "gemm" and len(a := p.shape(op.head.inputs[0])) != 2:
            into, back = extended.reshape_kernels(p, op.head.name, a, p.shape(op.output)[-1])
            x = op.inputs[0]
            out.append(clock(into, [x], x))
            out.append(clock(op_kernel(p, op, members), reads, op.output))
            out.append(clock(back, [op.output], op.output))
        else:
            out.append(clock(op_kernel(p, op, members), reads, op.output))
        out.extend(clock(k, [t], t) for k, t in reorders if k.spec["op"] == "nchwc.ReorderOutput")
    in_bytes = sum(p.g.tensors[t].data is None and _nbytes(p, t) or 0 for t in graph.real_inputs())
    out_bytes = sum(_nbytes(p, p.resolve(t)) for t in graph.outputs)
    activations = clock.finish([p.resolve(t) for t in graph.outputs])
    return Plan(out, removed, in_bytes, out_bytes, activations)


def _nbytes(p: _Planner, t: str) -> int:
    return math.prod(p.shape(t)) * dtypes.BYTES.get(p.dtype(t), 4)
