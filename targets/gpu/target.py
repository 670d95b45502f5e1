"""A GPU priced as one roofline per kernel, or from a table measured on the device.

Every layer the workload view prices is one kernel (a cuBLAS/cuDNN call, as onnxruntime's
CUDA provider issues them), timed as

    latency  = launches · t_launch + max(compute, memory)
    compute  = 2·MACs' / R_mac(p) + ops / R_cuda(p)
    memory   = bytes / (B · η)
    bytes    = weights · reads + input activations + output activations   (at their bit widths)
    energy   = P · latency

with ``p`` the layer's precision, ``R`` peak rates from the datasheet, ``B`` the peak
DRAM bandwidth, ``η`` the achievable fraction of it, ``P`` the board power and
``t_launch`` the per-kernel launch overhead (all in the target's TOML, each with its
source). The assumptions:

1. Precision. ``p`` follows the wider of the weight and activation widths: > 32 bits is
   fp64, > 16 fp32, > 8 fp16 (bf16 alike), else int8. A chip without a native path for
   ``p`` runs it at the rate of the next wider type it has (Maxwell computes fp16 and
   int8 in fp32), and the cost's note says so.
2. Tensor cores. MACs of convolutions, Gemm/MatMul and recurrent layers run at the
   tensor-core rate for ``p`` where the chip has one (V100: fp16; H100: fp16/bf16,
   int8), else at the CUDA-core rate. Dense (not 2:4 sparse) rates throughout. fp32 runs
   on CUDA cores (cuBLAS's default math mode, no TF32). Other ops (pooling, element-wise,
   normalisation) always run on CUDA cores.
3. Winograd. A 3×3 convolution flagged ``winograd`` (``node.meta["winograd"]``, set by
   the Winograd pass) does 2.25× fewer multiplies, F(2×2, 3×3): MACs' = MACs / 2.25.
   Its transforms and memory traffic are not modelled apart.
4. Sparsity does not help. cuBLAS and cuDNN run dense kernels: zero weights and zero
   activations are read and multiplied like any other (``weight_density`` and
   ``act_density`` are ignored).
5. Memory. Weights are read from DRAM once per kernel and activations once in, once out:
   perfect on-chip reuse within a kernel, none between kernels (no L2 residency is
   credited, which errs slow for small layers whose activations stay in L2). ``η`` is the
   same for every layer. A recurrent layer reads its weights once per time step.
6. Launches. One per kernel; a recurrent layer launches one per time step and direction.
   Pure views (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Shape, Size)
   launch nothing and cost nothing. Host synchronisation and host-device copies of the
   graph's inputs and outputs are not included.
7. Energy is the board power times the time, idle and launch time included: an upper
   bound when the GPU is mostly waiting.

When onnxruntime's CUDA provider is present, this machine's GPU is the target's chip
(its name contains the TOML's ``device_match``) and a table measured on this very device
exists (:mod:`hwcc.targets.gpu.profile`), layers found in it take their measured time (plus one
launch) instead, and the target's provenance is ``measured``; other layers keep the
roofline. ``describe()["cost_source"]`` says which applies and why.
"""

from __future__ import annotations

from typing import Any

from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.workload import MAC_KINDS, Layer
from hwcc.targets.base import Cost, CostContext, Target, register_family
from hwcc.targets.gpu import profile as gpu_profile

__all__ = ["GpuTarget", "PRECISIONS", "precision_of"]

PRECISIONS = ("int8", "fp16", "fp32", "fp64")  # narrow to wide
_CONV_KINDS = ("conv", "depthwise_conv", "grouped_conv")
_RECURRENT = ("lstm", "gru", "rnn")
WINOGRAD_MUL_SAVING = 2.25  # F(2x2, 3x3): 16 multiplies per 4 outputs instead of 36
_REQUIRED = (
    "peak_flops",
    "mem_bandwidth_Bps",
    "bandwidth_efficiency",
    "launch_overhead_s",
    "power_w",
)


def precision_of(layer: Layer) -> str:
    """The arithmetic precision of a layer, from its weight and activation bit widths."""
    bits = max(layer.weight_bits or 0, layer.act_bits or 0) or 32
    return "fp64" if bits > 32 else "fp32" if bits > 16 else "fp16" if bits > 8 else "int8"


def _rates(table: Any, where: str) -> dict[str, float]:
    if not isinstance(table, dict) or not set(table) <= set(PRECISIONS):
        raise HwccError(
            f"{where} must be a table with keys among {', '.join(PRECISIONS)}, got {table!r}"
        )
    if any(not isinstance(v, (int, float)) or v <= 0 for v in table.values()):
        raise HwccError(f"{where}: every rate must be a positive number of operations per second")
    return {k: float(v) for k, v in table.items()}


@register_family("gpu")
class GpuTarget(Target):
    """A GPU: the roofline above, or the device's measured table where it has the layer."""

    def profile(self, graph: Graph, progress: bool = True) -> str:
        """``hwcc profile --target gpu``: time ``graph``'s layers with onnxruntime's CUDA provider.

        Raises:
            HwccError: the CUDA provider is not available on this machine.
        """
        table = gpu_profile.build_table(graph)
        return f"{len(table.entries)} layer(s) in the table for {table.fingerprint}"

    def __init__(self, name, spec, source=None):
        super().__init__(name, spec, source)
        p = self.params
        missing = [k for k in _REQUIRED if k not in p]
        if missing:
            raise HwccError(
                f"target {name}: [params] lacks {', '.join(missing)}", f"see {source or 'gpu.toml'}"
            )
        self.peak = _rates(p["peak_flops"], f"target {name}: params.peak_flops")
        self.tensor = _rates(p.get("tensor_flops", {}), f"target {name}: params.tensor_flops")
        if "fp32" not in self.peak:
            raise HwccError(f"target {name}: params.peak_flops needs an fp32 rate")
        self.bandwidth = float(p["mem_bandwidth_Bps"]) * float(p["bandwidth_efficiency"])
        if not 0 < float(p["bandwidth_efficiency"]) <= 1 or self.bandwidth <= 0:
            raise HwccError(
                f"target {name}: bandwidth_efficiency must lie in (0, 1] and bandwidth be positive"
            )
        self.launch_s = float(p["launch_overhead_s"])
        self.power_w = float(p["power_w"])
        # Precision -> (CUDA-core precision, CUDA-core rate, MAC rate), resolved once.
        self._resolved = {want: self._resolve(want) for want in PRECISIONS}
        self.table: gpu_profile.MeasuredTable | None = None
        self.table_status = "no measured table: roofline"
        self._attach_present_table()

    # -- precision ---------------------------------------------------------------
    def _resolve(self, want: str) -> tuple[str, float, float]:
        wider = PRECISIONS[PRECISIONS.index(want) :]
        got = next((q for q in wider if q in self.peak), "fp32")  # fp64 on a chip without it
        cuda = self.peak[got]
        return got, cuda, self.tensor.get(want, cuda)

    # -- measured table ----------------------------------------------------------
    def _attach_present_table(self) -> None:
        """Use this device's measured table if the CUDA provider is here and one exists."""
        if not gpu_profile.cuda_available():
            self.table_status = (
                "no measured table: onnxruntime's CUDA provider is not available; roofline"
            )
            return
        try:
            fingerprint = gpu_profile.gpu_fingerprint()
            gpu = fingerprint.split(" | ")[0]
            chip = str(self.params.get("device_match", ""))
            if not chip or chip.lower() not in gpu.lower():
                self.table_status = (
                    f"no measured table: this machine's {gpu} is not a "
                    f"{chip or '(no device_match given)'}; roofline"
                )
                return
            table = gpu_profile.load_table(fingerprint)
        except HwccError as e:  # a broken table is shown in describe(), never silently used
            self.table_status = f"measured table unusable ({e.message}); roofline"
            return
        if table is None:
            self.table_status = (
                f"no measured table for {fingerprint} "
                "(build one with hwcc.targets.gpu.profile.build_table); roofline"
            )
        else:
            self.attach_table(table)

    def attach_table(self, table: gpu_profile.MeasuredTable) -> None:
        """Price the layers ``table`` holds by their measured time (provenance ``measured``)."""
        self.table = table
        self.provenance = "measured"
        self.table_status = (
            f"measured table {table.path or '(in memory)'} for {table.fingerprint} "
            f"({len(table.entries)} layers); roofline for layers not in it"
        )

    # -- the contract -------------------------------------------------------------
    def supports(self, layer: Layer) -> str | None:
        if not layer.known:
            return layer.reason or f"cannot price {layer.op_type}"
        return None

    def cost_layer(self, layer: Layer, ctx: CostContext) -> Cost:
        if layer.op_type in gpu_profile.VIEWS and not layer.domain:
            return Cost(0.0, 0.0, {"launches": 0.0}, "a view: no kernel")
        if self.table is not None:
            measured = self.table.latency_s(layer)
            if measured is not None:
                t = measured + self.launch_s
                return Cost(
                    t,
                    self.power_w * t,
                    {
                        "measured_s": measured,
                        "launch_s": self.launch_s,
                        "launches": 1.0,
                        "measured": 1.0,
                    },
                    "measured",
                )
        return self.roofline(layer)

    def roofline(self, layer: Layer) -> Cost:
        """The roofline cost of one layer (already scaled to the batch)."""
        want = precision_of(layer)
        got, cuda_rate, mac_rate = self._resolved[want]
        if layer.kind not in MAC_KINDS:
            mac_rate = cuda_rate
        macs, notes = float(layer.macs), []
        # A flagged Conv is priced as if lowered; the MatMul of an already lowered graph
        # (the winograd pass's default) counts its reduced multiplies in its own MACs.
        if "winograd" in layer.flags and layer.kind in _CONV_KINDS:
            if (layer.R, layer.S) == (3, 3):
                macs /= WINOGRAD_MUL_SAVING
            else:
                notes.append("winograd flag ignored: not a 3x3 convolution")
        if got != want:
            notes.append(f"{want} runs at the {got} rate (no {want} path on this chip)")
        compute = 2.0 * macs / mac_rate + layer.ops / cuda_rate
        nbytes = self._bytes(layer)
        memory = nbytes / self.bandwidth
        launches = (
            float((layer.seq_len or 1) * (layer.directions or 1))
            if layer.kind in _RECURRENT
            else 1.0
        )
        latency = launches * self.launch_s + max(compute, memory)
        breakdown = {
            "compute_s": compute,
            "memory_s": memory,
            "launch_s": launches * self.launch_s,
            "launches": launches,
            "bytes": float(nbytes),
            "flops": 2.0 * macs + layer.ops,
        }
        return Cost(latency, self.power_w * latency, breakdown, "; ".join(notes))

    @staticmethod
    def _bytes(layer: Layer) -> int:
        # an embedding reads the rows it gathers
        if layer.op_type == "Gather" and layer.weight_bytes:
            return layer.input_bytes + 2 * layer.output_bytes
        reads = layer.seq_len if layer.kind in _RECURRENT and layer.seq_len else 1
        return layer.weight_bytes * reads + layer.input_bytes + layer.output_bytes

    def ridge_point(self, precision: str = "fp32") -> float:
        """FLOPs per byte above which a CUDA-core kernel at ``precision`` is compute-bound."""
        return self._resolved[precision][1] / self.bandwidth

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["cost_source"] = self.table_status
        d["ridge_flops_per_byte_fp32"] = round(self.ridge_point(), 2)
        return d
