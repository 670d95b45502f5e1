"""Level 3 of the kernel planner: onnxruntime's NCHWc layout, replayed on the fused ops.

Rules 4 to 10 of :mod:`.kernels`: which convolutions and pools run in the blocked NCHWc
layout (channels padded to a multiple of the block ``B``), which element-wise ops and
activations follow them there or fuse into them, where reorders go in and out of the
layout, and then which plain convs absorb the Add they feed. :class:`NchwcLayout` is a
part of the planner: it reads the planner's ops, shapes and activation parameters, and
leaves the layout in ``args``, ``uses`` and ``reorders``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwcc.ir import dtypes
from hwcc.targets.cpu.fusions import fused_activations
from hwcc.targets.cpu.specs import NCHWC_POOLS, STANDARD_DOMAINS, same_scope

if TYPE_CHECKING:
    from hwcc.targets.cpu.kernels import _Op

__all__ = ["NchwcLayout"]


@dataclass
class _Arg:
    """An NCHWc tensor: who makes it, its logical channels, its uses (all, and left in NCHW)."""

    producer: _Op
    channels: int
    start: int
    remaining: int


class NchwcLayout:
    """The NCHWc decisions of the planner (:class:`~hwcc.targets.cpu.kernels._Planner`),
    taken by :meth:`layout` after the level 1-2 fusions."""

    def layout(self) -> None:
        """Decide each op's layout (rules 4-8) and the reorders it needs (rules 6, 9)."""
        self.uses: dict[str, int] = {}
        for op in self.ops:
            for t in op.inputs:
                self.uses[t] = self.uses.get(t, 0) + 1
        for t in self.g.outputs:
            t = self.resolve(t)
            self.uses[t] = self.uses.get(t, 0) + 1
        self.args: dict[str, _Arg] = {}
        self.reorder_in: dict[str, _Op] = {}
        self.reorders: list[tuple[_Op, str, str]] = []  # (op, "in"/"out", tensor)
        if not self.block:
            return
        for op in self.ops:
            node = op.head
            if op.kind == "conv" and self.conv_eligible(op):
                self.to_nchwc(op, direct=op.nchw_in)
                self.new_arg(op, op.output, self.shape(op.output)[1])
            elif op.kind == "generic" and node.domain in STANDARD_DOMAINS:
                self.layout_generic(op)
            elif op.kind == "contrib" and op.group.kind in fused_activations("nchwc"):
                self.layout_generic(op)  # QuickGelu: an activation run on NCHWc tensors
        for t, arg in self.args.items():
            if arg.remaining > 0:
                self.reorders.append((arg.producer, "out", t))

    def new_arg(self, op: _Op, t: str, channels: int, producer: _Op | None = None) -> None:
        n = self.uses.get(t, 0)
        self.args[t] = _Arg(producer or op, channels, n, n)
        op.padded.add(t)

    def to_nchwc(self, op: _Op, direct: bool = False) -> None:
        op.nchwc = True
        x = op.inputs[0]
        if direct:
            return
        if x in self.args:
            self.args[x].remaining -= 1
            op.padded.add(x)
        elif x not in self.reorder_in:
            self.reorder_in[x] = op
            self.reorders.append((op, "in", x))
            op.padded.add(x)
        else:
            op.padded.add(x)

    def conv_eligible(self, op: _Op) -> bool:
        node, B = op.head, self.block
        w = node.inputs[1]
        if (
            self.dtype(w) != dtypes.FLOAT
            or len(self.shape(w)) != 4
            or self.dtype(op.inputs[0]) != dtypes.FLOAT
        ):
            return False
        m, cg = self.shape(w)[:2]
        groups = int(node.attr("group", 1))
        if groups > 1 and cg == 1 and m == groups:
            return m % 4 == 0  # depthwise: padded, in whole vectors of 4
        if groups > 1:
            return not (m % B or cg % B or (m // groups) % B)
        op.nchw_in = cg < B
        return op.nchw_in or cg % 4 == 0

    def layout_generic(self, op: _Op) -> None:
        node, B, name, ins = op.head, self.block, op.head.op_type, op.inputs
        raw = node.inputs
        if op.group is not None:  # a contrib kernel of several nodes: its own name and inputs
            name, raw = op.group.kind, op.group.inputs
        one_output = len([o for o in node.outputs if o]) == 1
        if name in NCHWC_POOLS and one_output and len(self.shape(ins[0])) == 4:
            x = ins[0]
            reorderable = not name.startswith("Global") or x in self.args or x in self.g.inputs
            if self.shape(x)[1] % B == 0 and self.dtype(x) == dtypes.FLOAT and reorderable:
                self.to_nchwc(op)
                self.new_arg(op, op.output, self.shape(op.output)[1])
            return
        all_nchwc = ins and all(t in self.args for t in ins)
        if not all_nchwc or len(ins) != len([t for t in raw if t]):
            return
        args = [self.args[t] for t in ins]
        if name in ("Add", "Sum", "Mul"):
            if len({a.channels for a in args}) != 1 or len({self.shape(t) for t in ins}) != 1:
                return
            for a in args:
                a.remaining -= 1
            if name in ("Add", "Sum") and len(ins) == 2:
                for n in (0, 1):
                    conv = args[n].producer
                    if (
                        conv.kind == "conv"
                        and args[n].start == 1
                        and not conv.act
                        and not conv.sum_input
                    ):
                        conv.sum_input = ins[n ^ 1]
                        conv.padded.add(ins[n ^ 1])
                        conv.members.append(node)
                        op.kind = "fused"
                        self.new_arg(conv, op.output, args[0].channels)
                        return
            op.nchwc = True
            op.padded.update(ins)
            self.new_arg(op, op.output, args[0].channels)
        elif name in fused_activations("nchwc") and len(ins) == 1:
            args[0].remaining -= 1
            conv = args[0].producer
            fusable = name in fused_activations("conv")
            if conv.kind == "conv" and args[0].start == 1 and not conv.act and fusable:
                conv.act, conv.act_params = name, self.act_params(node)
                conv.members.append(node)
                op.kind = "fused"
                self.new_arg(conv, op.output, args[0].channels)
                return
            op.nchwc = True
            op.padded.update(ins)
            self.new_arg(op, op.output, args[0].channels)
        elif name == "BatchNormalization" and len(ins) == 1:
            args[0].remaining -= 1
            op.kind, op.nchwc, op.bias = "bn_conv", True, True
            op.padded.add(ins[0])
            self.new_arg(op, op.output, args[0].channels)
        elif (
            name == "Concat"
            and int(node.attr("axis", 0)) == 1
            and all(a.channels % B == 0 for a in args)
        ):
            for a in args:
                a.remaining -= 1
            op.nchwc = True
            op.padded.update(ins)
            self.new_arg(op, op.output, sum(a.channels for a in args))

    def conv_add(self) -> None:
        """Level 3 after NCHWc: a plain conv (bias, no activation, single use) absorbs the
        ``Add`` it feeds (the first of the Add's inputs that qualifies) and its activation."""
        made = {op.output: op for op in self.ops}
        for op in self.ops:
            node = op.head
            if (
                op.kind != "generic"
                or op.nchwc
                or node.op_type != "Add"
                or node.domain not in STANDARD_DOMAINS
            ):
                continue
            ins = op.inputs
            if (
                len(ins) != 2
                or len([t for t in node.inputs if t]) != 2
                or len({self.shape(t) for t in ins}) != 1
            ):
                continue
            for n in (0, 1):
                conv = made.get(ins[n])
                if (
                    conv is not None
                    and conv.kind == "conv"
                    and not conv.nchwc
                    and not conv.act
                    and conv.bias
                    and not conv.sum_input
                    and self.uses.get(ins[n]) == 1
                    and len(self.shape(ins[n])) == 4
                    and same_scope(conv.head, node)
                ):
                    conv.sum_input, op.kind = ins[1 - n], "fused"
                    conv.members.append(node)
                    conv.output = op.output
                    act = self.sole_user(op.output)
                    nxt = made.get(act.outputs[0]) if act is not None and act.outputs else None
                    if (
                        nxt is not None
                        and nxt.kind == "generic"
                        and act.op_type in fused_activations("conv")
                        and not nxt.nchwc
                        and same_scope(act, node)
                    ):
                        conv.act, conv.act_params = act.op_type, self.act_params(act)
                        nxt.kind = "fused"
                        conv.members.append(act)
                        conv.output = act.outputs[0]
                    break
