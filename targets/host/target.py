"""An embedded core as an accelerator's host, priced from energies per operation and byte.

An accelerator system runs what its chip cannot (pooling, element-wise layers, shape ops)
on a small core beside it; the chip writes its output maps to the DRAM they share, the core
reads them, computes, and writes its result back for the chip's next layer. This family
prices that core from the parameters of its TOML file (``targets/host/host-45nm.toml``,
each with its source), deterministically: nothing depends on the machine hwcc runs on.

Per layer, with ``ops = macs + ops`` of the workload view (a MAC, a compare or an add is one
instruction) and ``bytes = input_bytes + output_bytes + weight_bytes`` (every operand
read from DRAM once and the result written once: the core has no room to keep maps)::

    compute_s = ops / (ops_per_cycle · clock_hz)
    memory_s  = bytes / dram_bandwidth
    latency   = compute_s + memory_s          (an in-order core stalls on its loads)
    energy    = ops · E_op + bytes · E_DRAM(32 b) / 4

``E_op`` is the energy of a whole instruction (Horowitz, ISSCC 2014: ~70 pJ for an add on
a 45 nm processor, of which the add is 0.1 pJ), ``E_DRAM(32 b)`` = 640 pJ (EIE Table I).
A recurrent layer (LSTM, GRU, RNN) reads its weights at every one of its ``T`` time steps,
``bytes = input_bytes + output_bytes + T · weight_bytes``: each step needs the state the one
before wrote, so the steps cannot share one pass over the weights, and the core has no room
to keep ``gates · H · (I + H)`` of them between steps (ddddocr's bidirectional LSTM
holds 16.8 MB in fp32).
Views (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) are free: the next layer
reads the same buffer. A layer whose shapes the workload view could not read has no work
to price; it is refused with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir.workload import Layer
from hwcc.targets.base import Cost, CostContext, Target, register_family

__all__ = ["EmbeddedHost", "VIEWS"]

VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
RECURRENT = ("lstm", "gru", "rnn")  # workload kinds whose weights every time step reads


@register_family("embedded_cpu")
class EmbeddedHost(Target):
    """One embedded core: instruction energy per operation, DRAM energy per byte."""

    def __init__(self, name: str, spec: Mapping[str, Any], source=None):
        super().__init__(name, spec, source)
        p = self.params
        try:
            self.ops_per_s = float(p["clock_hz"]) * float(p["ops_per_cycle"])
            self.j_per_op = float(p["pj_per_op"]) * 1e-12
            self.j_per_byte = float(p["dram_pj_per_32b"]) * 1e-12 / 4
            self.bytes_per_s = float(p["dram_bandwidth_GBps"]) * 1e9
        except KeyError as e:
            raise HwccError(f"target {name}: missing parameter {e.args[0]!r} in [params]") from None
        if min(self.ops_per_s, self.bytes_per_s) <= 0 or min(self.j_per_op, self.j_per_byte) < 0:
            raise HwccError(f"target {name}: throughputs must be positive, energies not negative")

    def supports(self, layer: Layer) -> str | None:
        if not layer.known:
            return f"{layer.name}'s work is unknown ({layer.reason}): nothing to price it from"
        return None

    def cost_layer(self, layer: Layer, ctx: CostContext) -> Cost:
        if layer.op_type in VIEWS:
            return Cost(0.0, 0.0, {}, "free: a view of the same buffer")
        ops = layer.macs + layer.ops
        steps = (layer.seq_len or 1) if layer.kind in RECURRENT else 1
        moved = layer.input_bytes + layer.output_bytes + layer.weight_bytes * steps
        compute_s, memory_s = ops / self.ops_per_s, moved / self.bytes_per_s
        op_j, dram_j = ops * self.j_per_op, moved * self.j_per_byte
        breakdown = {
            "compute_s": compute_s,
            "memory_s": memory_s,
            "ops": float(ops),
            "dram_bytes": float(moved),
            "op_j": op_j,
            "dram_j": dram_j,
        }
        return Cost(compute_s + memory_s, op_j + dram_j, breakdown)
