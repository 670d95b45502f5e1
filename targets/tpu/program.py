"""The TPU v1 program: the instruction listing of a priced graph, as the cost model runs it.

``tpu/program.txt`` is the program in the vocabulary of the TPU v1 paper (Jouppi et al.,
ISCA 2017, Section 2), one instruction per line, ``Name key=value ...``:

* ``Read_Host_Memory`` an activation from the host into the Unified Buffer (``ub=``);
* ``Read_Weights`` one weight tile from Weight Memory (``wm=``) into the weight FIFO;
* ``MatrixMultiply`` / ``Convolve`` ``rows`` rows of the Unified Buffer through the tile
  just loaded into the accumulators (``acc=``, an entry index; passes alternate between
  the two halves when they are double-buffered), adding to them unless ``accumulate=0``;
* ``Activate`` the accumulators (or, for a vector node, Unified Buffer values) through the
  functions ``fn`` (the nodes fused into that pass, as the cost model fuses them), into the
  Unified Buffer;
* ``Write_Host_Memory`` a result to the host.

The tiling is the cost model's (:meth:`TPU.multiplies`, :meth:`TPU.tiling`): for each
multiply, ``c`` accumulator passes, each streaming all ``T`` tiles again, so a layer has
``T·c`` ``Read_Weights``, its breakdown's ``tiles × passes``. Within a pass, the tiles of
one output-column block are multiplied one after the other (``K`` blocks accumulating) and
the block is activated. Nodes that run on the host are comments. Unified Buffer addresses
come from a first-fit allocator (256-byte aligned) that frees a buffer after its last
reader; Weight Memory holds each multiply's tiles one after the other.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

import numpy as np

from hwcc.ir import Graph, Node, dtypes
from hwcc.targets.base import LayerCost
from hwcc.targets.tpu.placement import FREE, FUSED, MATRIX, OPERANDS, RECURRENT, flag, stored_type

__all__ = ["Program"]

_ALIGN = 256
_NARROW = (dtypes.INT16, dtypes.UINT16)


def _quote(value: Any) -> str:
    return shlex.quote(str(value))


class _UnifiedBuffer:
    """First-fit allocation of the Unified Buffer, in 256-byte rows."""

    def __init__(self, size: float):
        self.size, self.used, self.peak = size, {}, 0

    def alloc(self, nbytes: int) -> int:
        n = max(_ALIGN, -(-nbytes // _ALIGN) * _ALIGN)
        addr = 0
        for a, b in sorted(self.used.items()):
            if addr + n <= a:
                break
            addr = max(addr, a + b)
        self.used[addr] = n
        self.peak = max(self.peak, addr + n)
        return addr

    def free(self, addr: int) -> None:
        self.used.pop(addr, None)


class Program:
    """The listing of one priced graph (see the module docstring)."""

    def __init__(self, target: Any, graph: Graph, pairs: list[tuple[Node, LayerCost]], batch: int):
        self.t, self.g, self.pairs, self.batch = target, graph, pairs, batch
        self.lines: list[str] = []
        self.ub = _UnifiedBuffer(target.ub_bytes)
        self.where: dict[str, int] = {}  # tensor -> its Unified Buffer address
        self.members: dict[int, set[str]] = {}
        self.on_host = set(graph.real_inputs())
        self.wm = 0  # next free Weight Memory byte
        self.tile_loads: dict[str, int] = {}
        self.const = {n for n, x in graph.tensors.items() if x.data is not None}
        for node, lc in pairs:
            if lc.layer.kind == "constant":
                self.const.update(node.outputs)
        self.last_use: dict[str, int] = {}
        for i, (node, _) in enumerate(pairs):
            for t in node.inputs:
                self.last_use[t] = i
        for t in graph.outputs:
            self.last_use[t] = len(pairs)
        self.fused: dict[str, list[Node]] = {}
        for node, lc in pairs:
            owner = flag(lc.layer, FUSED) if lc.on == target.name else None
            if owner is not None and node.op_type not in FREE:  # a free node only renames
                self.fused.setdefault(owner, []).append(node)

    # -- bookkeeping ---------------------------------------------------------------------
    def emit(self, kind: str, **ops: Any) -> None:
        self.lines.append(" ".join([f"{kind:<17}"] + [f"{k}={_quote(v)}" for k, v in ops.items()]))

    def nbytes(self, tensor: str) -> int:
        x = self.g.tensors.get(tensor)
        dims = [d for d in (x.shape or ()) if isinstance(d, int)] if x is not None else []
        # int8 unless the model keeps 16 bits
        width = 2 if stored_type(self.g, tensor) in _NARROW else 1
        return int(np.prod(dims, dtype=np.int64)) * self.batch * width

    def place(self, tensors: list[str], addr: int) -> None:
        for t in tensors:
            self.where[t] = addr
            self.members.setdefault(addr, set()).add(t)

    def alloc(self, tensor: str) -> int:
        addr = self.ub.alloc(self.nbytes(tensor))
        if addr + self.nbytes(tensor) > self.ub.size:
            self.lines.append(
                f"# Unified Buffer full: {tensor} spills to host memory (priced as t_spill)"
            )
        self.members[addr] = set()
        return addr

    def fetch(self, tensor: str) -> int:
        """The Unified Buffer address of ``tensor``, reading it from the host if needed."""
        if tensor not in self.where:
            addr = self.alloc(tensor)
            self.emit(
                "Read_Host_Memory",
                src=f"host:{tensor}",
                ub=f"0x{addr:06x}",
                bytes=self.nbytes(tensor),
            )
            self.place([tensor], addr)
        return self.where[tensor]

    def write_back(self, tensor: str) -> None:
        if tensor in self.where and tensor not in self.on_host:
            self.emit(
                "Write_Host_Memory",
                dst=f"host:{tensor}",
                ub=f"0x{self.where[tensor]:06x}",
                bytes=self.nbytes(tensor),
            )
            self.on_host.add(tensor)

    def release(self, step: int) -> None:
        for addr, names in list(self.members.items()):
            if names and all(self.last_use.get(t, -1) <= step for t in names):
                self.ub.free(addr)
                del self.members[addr]

    # -- the walk ------------------------------------------------------------------------
    def run(self) -> list[str]:
        for step, (node, lc) in enumerate(self.pairs):
            acts = [t for t in node.inputs if t and t not in self.const]
            if lc.layer.kind == "constant":
                continue
            if lc.on != self.t.name:
                for t in acts:
                    self.write_back(t)
                self.lines.append(f"# host ({lc.on}): {node.name} ({node.op_type}): {lc.cost.note}")
                self.on_host.update(node.outputs)
                continue
            ins = [self.fetch(t) for t in acts]
            if node.op_type in FREE or flag(lc.layer, FUSED) is not None:
                self.place(list(node.outputs), ins[0] if ins else self.alloc(node.outputs[0]))
            elif lc.layer.kind in MATRIX + RECURRENT:
                self.matrix(node, lc, [t for t in acts if t in self.operands(node)])
            else:
                self.vector(node, lc, acts, ins)
            for t in node.outputs:
                if self.g.is_graph_output(t):
                    self.write_back(t)
            self.release(step)
        return self.lines

    def operands(self, node: Node) -> set[str]:
        return {node.inputs[i] for i in OPERANDS.get(node.op_type, (0, 1)) if i < len(node.inputs)}

    def chain(self, node: Node) -> tuple[str, str, list[str]]:
        """The functions of ``node``'s Activate pass, its final tensor, and every tensor of
        the chain."""
        fused = self.fused.get(node.name, [])
        fn = "+".join(n.op_type for n in fused) or "Identity"
        tensors = list(node.outputs) + [t for n in fused for t in n.outputs]
        return fn, (fused[-1].outputs[0] if fused else node.outputs[0]), tensors

    def matrix(self, node: Node, lc: LayerCost, inputs: list[str]) -> None:
        fn, final, tensors = self.chain(node)
        out = self.alloc(final)
        self.place(tensors, out)
        ub_in = ",".join(f"0x{self.where[t]:06x}" for t in inputs) or "-"
        op = (
            "Convolve"
            if lc.layer.kind in MATRIX and lc.layer.kind not in ("gemm", "matmul")
            else "MatrixMultiply"
        )
        halves = 2 if self.t.params["accumulator_double_buffered"] else 1
        tile_bytes = self.t.rows * self.t.cols * max(8, lc.layer.weight_bits or 8) // 8
        bases: dict[str, int] = {}
        loads = 0
        for what, rows, k, ncol, groups in self.t.multiplies(lc.layer):
            count, passes = self.t.tiling(rows, k, ncol, groups)
            tiles = _tiles(self.t, k, ncol, groups)
            if len(tiles) != count:
                raise AssertionError(
                    f"{node.name}: listed {len(tiles)} tiles, the cost model counts {count}"
                )
            key = re.sub(r"step\d+$", "step", what)
            if key not in bases:  # each step of a recurrent layer reads the same weights
                bases[key], self.wm = self.wm, self.wm + count * tile_bytes
            extra = {"part": what} if what else {}
            row0 = 0
            for j, r in enumerate(passes):
                acc = (j % halves) * self.t.pass_rows
                at = {"pass": f"{j}/{len(passes)}"}
                for i, (grp, kr, nr, first, last) in enumerate(tiles):
                    span = {"k": kr, "n": nr, **({"groups": grp} if groups > 1 else {})}
                    self.emit(
                        "Read_Weights",
                        layer=node.name,
                        **extra,
                        tile=f"{i}/{count}",
                        **at,
                        **span,
                        bytes=tile_bytes,
                        wm=f"0x{bases[key] + i * tile_bytes:08x}",
                    )
                    self.emit(
                        op,
                        layer=node.name,
                        **extra,
                        tile=f"{i}/{count}",
                        **at,
                        rows=r,
                        row0=row0,
                        **span,
                        ub_in=ub_in,
                        acc=acc,
                        accumulate=int(not first),
                    )
                    loads += 1
                    if last:
                        self.emit(
                            "Activate",
                            layer=node.name,
                            **extra,
                            **at,
                            rows=r,
                            n=nr,
                            fn=fn,
                            acc=acc,
                            ub_out=f"0x{out:06x}",
                        )
                row0 += r
        self.tile_loads[node.name] = loads

    def vector(self, node: Node, lc: LayerCost, acts: list[str], ins: list[int]) -> None:
        fn, final, tensors = self.chain(node)
        out = self.alloc(final)
        self.place(tensors, out)
        self.emit(
            "Activate",
            layer=node.name,
            fn="+".join([node.op_type] + ([fn] if fn != "Identity" else [])),
            ub_in=",".join(f"0x{a:06x}" for a in ins) or "-",
            ub_out=f"0x{out:06x}",
            bytes=self.nbytes(final),
        )


def _tiles(target: Any, k: int, ncol: int, groups: int) -> list[tuple[str, str, str, bool, bool]]:
    """``(groups, K rows, N columns, first K block, last K block)`` of every weight tile,
    column block after column block (step 2 of the cost model)."""
    a, b = target.rows, target.cols
    kt, nt = math.ceil(k / a), math.ceil(ncol / b)
    if groups > 1 and kt == nt == 1:
        per = min(a // k, b // ncol)
        return [
            (
                f"{g0}:{min(groups, g0 + per)}",
                f"0:{k * (min(groups, g0 + per) - g0)}",
                f"0:{ncol * (min(groups, g0 + per) - g0)}",
                True,
                True,
            )
            for g0 in range(0, groups, per)
        ]
    return [
        (
            f"{g}:{g + 1}",
            f"{i * a}:{min(k, (i + 1) * a)}",
            f"{j * b}:{min(ncol, (j + 1) * b)}",
            i == 0,
            i == kt - 1,
        )
        for g in range(groups)
        for j in range(nt)
        for i in range(kt)
    ]
