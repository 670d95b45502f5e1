"""This machine as a table's owner: the facts that identify its CPU, runtime and protocol.

:func:`fingerprint` reads the CPU model, core count and cache sizes (``/proc``, ``/sys``),
asks onnxruntime its version and its NCHWc block (by optimizing a probe conv), and adds the
timing protocol: a lookup table measured under any other fingerprint is never read here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hwcc.ir import Graph
from hwcc.ir.onnx_io import load, to_proto
from hwcc.targets.cpu.measure import PROTOCOL

__all__ = ["fingerprint"]


def _cpu_model() -> str:
    """The CPU's model name (from ``/proc/cpuinfo``, else what Python knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _cache_bytes(level: int, default: int) -> int:
    """The size of the level-``level`` data cache of CPU 0, ``default`` if sysfs does not say."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(root.glob("index*")):
        try:
            data = (index / "type").read_text().strip() != "Instruction"
            if int((index / "level").read_text()) == level and data:
                text = (index / "size").read_text().strip()
                return int(text[:-1]) * {"K": 1024, "M": 1 << 20}.get(text[-1], 1)
        except (OSError, ValueError):
            continue
    return default


def _nchwc_block(threads: int) -> int:
    """The NCHWc block of this build and CPU: a 3->1 conv's output padding, 0 if none."""
    import tempfile

    import onnxruntime as ort  # imported where it is needed: loading it takes a second

    g = Graph("probe")
    g.add_input("x", 1, [1, 3, 8, 8])
    g.add_initializer("w", np.ones((1, 3, 3, 3), np.float32))
    g.add_node("Conv", ["x", "w"], ["y"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    g.outputs.append("y")
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.optimized_model_filepath, so.log_severity_level = os.path.join(tmp, "opt.onnx"), 3
        so.intra_op_num_threads = threads
        model = to_proto(g).SerializeToString()
        ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        opt = load(so.optimized_model_filepath, allow_dynamic=True)
    for node in opt.nodes:
        if node.domain == "com.microsoft.nchwc" and node.op_type == "Conv":
            return int(opt.tensors[node.inputs[1]].shape[0])
    return 0


def fingerprint(threads: int, evict_bytes: int) -> dict[str, Any]:
    """What identifies this device, runtime and timing protocol (probes onnxruntime once).

    Args:
        threads: intra-op threads the tables are measured with.
        evict_bytes: the most data read before a cold run (:class:`.measure.Timer`).
    """
    import onnxruntime as ort

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "threads": threads,
        "nchwc_block": _nchwc_block(threads),
        "l1_bytes": _cache_bytes(1, 32 << 10),
        "l2_bytes": _cache_bytes(2, 1 << 20),
        "l3_bytes": _cache_bytes(3, 32 << 20),
        "cold_evict_bytes": evict_bytes,
        "protocol": PROTOCOL,
    }
