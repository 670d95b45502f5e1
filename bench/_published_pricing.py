"""published's pricing: each target's model run on its papers' workloads, a row per figure.

The workloads are built the way the targets' tests build them (re-implemented here, not
imported): EIE's and the Titan X's FC layers, Eyeriss' AlexNet CONV1-5 and the zoo's
GoogLeNet, the TPU paper's six workloads and its Section 7 multiply.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import hwcc
from bench._published_figures import (
    EIE,
    EIE_KNOWN_MISSES,
    EIE_TOL,
    EYERISS_TOL,
    GOOGLENET_DENSITY,
    GOOGLENET_NAMES,
    GOOGLENET_TOL_PP,
    GPU_KNOWN_MISSES,
    GPU_TOL,
    SECTION7,
    SECTION7_TOL,
    TITAN_X,
    TPU_BUSY_W,
    TPU_MEASURED_TOPS,
    TPU_NOT_CAPTURED,
    TPU_POWER_TOL,
    TPU_TOL,
    row,
)
from bench.tpu_workloads import BUILDERS, qlinear_fc
from hwcc.ir.workload import analyze
from hwcc.targets.base import CostContext, load_target, scale_batch
from hwcc.targets.eyeriss.published import (
    ACTIVE_PES,
    ALEXNET,
    BATCH,
    DRAM_MB,
    GOOGLENET_SPLIT,
    OFMAP_DENSITY,
    POWER_MW,
    PROCESSING_MS,
    TOTAL_MS,
    ZEROS_IN_IFMAPS,
)
from hwcc.targets.eyeriss.target import EyerissContext


def _model(nodes, inputs, outputs, inits, opset: int = 17):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return hwcc.load(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    )


def _fc(W: np.ndarray):
    """One fp32 layer ``y = W x`` named ``fc`` (W rows = outputs), as Gemm(transB=1), batch 1.

    The tests build EIE's layers as an fp16 MatMul and the GPU's as a dense fp32 Gemm; both
    targets price this one graph the same way (EIE reads the zeros, the GPU's dense kernels
    ignore them), so the two share it here.
    """
    rows, cols = W.shape
    node = helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1)
    return _model(
        [node],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cols])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, rows])],
        [numpy_helper.from_array(W.astype(np.float32), "W")],
    )


def _conv(C, H, M, R, stride, pad, groups, name):
    w = np.random.default_rng(0).normal(size=(M, C // groups, R, R)).astype(np.float32)
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], name=name, strides=[stride] * 2, pads=[pad] * 4, group=groups
    )
    return _model(
        [node],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, H])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )


def fc_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """EIE's and the Titan X's rows, priced on the same synthetic EIE Table III layers."""
    eie, gpu = load_target("eie"), load_target("gpu")
    eie_out, gpu_out = [], []
    for i, (name, (rows, cols, wd, ad, theory_us, actual_us)) in enumerate(EIE.items()):
        rng = np.random.default_rng(1000 + i)  # the EIE test's weights, exactly
        W = np.zeros((rows, cols), np.float16)
        nz = np.flatnonzero(rng.random((rows, cols), dtype=np.float32) < wd)
        W.flat[nz] = rng.standard_normal(len(nz), dtype=np.float32)
        g = _fc(W)
        del W
        c = eie.price(g, CostContext(act_density=ad)).layer("fc").cost
        values = {
            "actual time": (c.latency_s * 1e6, actual_us, "us"),
            "theoretical time": (c.breakdown["theoretical_s"] * 1e6, theory_us, "us"),
            "load balance": (c.breakdown["load_balance_efficiency"], theory_us / actual_us, ""),
        }
        for q, (m, p, unit) in values.items():
            eie_out.append(
                row(
                    "eie",
                    name,
                    q,
                    unit,
                    m,
                    p,
                    EIE_TOL[q],
                    flag="known miss" if (name, q) in EIE_KNOWN_MISSES else "",
                )
            )
        one, sixty_four = TITAN_X[name]
        b1 = gpu.price(g).latency_s * 1e6
        b64 = gpu.price(g, CostContext(batch=64)).latency_s * 1e6 / 64
        gpu_out.append(
            row(
                "gpu",
                name,
                "batch 1",
                "us",
                b1,
                one,
                GPU_TOL,
                flag="known miss" if name in GPU_KNOWN_MISSES else "",
            )
        )
        gpu_out.append(
            row(
                "gpu",
                name,
                "batch 64, per frame (lower bound)",
                "us",
                b64,
                sixty_four,
                None,
                bound=True,
            )
        )
    return eie_out, gpu_out


def eyeriss_rows() -> list[dict[str, Any]]:
    t = load_target("eyeriss")
    out = []
    for name, ((C, H, M, R, stride, pad, groups), mapping) in ALEXNET.items():
        g = _conv(C, H, M, R, stride, pad, groups, name)
        dens = 1 - ZEROS_IN_IFMAPS[name]
        layer = scale_batch(analyze(g, act_density=dens).layer(name), BATCH)
        ctx = EyerissContext(batch=BATCH, act_density=dens, out_density={name: OFMAP_DENSITY[name]})
        paper = t.plan_with(layer, dict(zip("mnepqrt", mapping)), ctx)
        mapped = t.price(g, ctx).layer(name).cost
        chip_j = POWER_MW[name] * TOTAL_MS[name] * 1e-6
        out += [
            row(
                "eyeriss",
                name,
                "active PEs, Table III mapping",
                "",
                paper.breakdown["active_pes"],
                ACTIVE_PES[name],
                0.0,
            ),
            row(
                "eyeriss",
                name,
                "processing latency",
                "ms",
                mapped.breakdown["processing_s"] * 1e3,
                PROCESSING_MS[name],
                EYERISS_TOL["processing latency"],
            ),
            row(
                "eyeriss",
                name,
                "DRAM traffic",
                "MB",
                mapped.breakdown["dram_bytes"] / 1e6,
                DRAM_MB[name],
                EYERISS_TOL["DRAM traffic"],
            ),
            row(
                "eyeriss",
                name,
                "chip energy",
                "mJ",
                (paper.energy_j - paper.breakdown["dram_j"]) * 1e3,
                chip_j * 1e3,
                EYERISS_TOL["chip energy"],
                flag="calibrated (sum)",
            ),
        ]
    return out + googlenet_rows(t)


# VGG-16's convolution shapes (3x3, stride 1, pad 1): (C, M, map). JSSC Table VI (VGG-16 on
# the chip) is held out of the reference data: these show the model, no published figure.
VGG_CONVS = (
    (3, 64, 224),
    (64, 64, 224),
    (64, 128, 112),
    (128, 256, 56),
    (256, 512, 28),
    (512, 512, 14),
)


def eyeriss_large_maps() -> list[dict[str, Any]]:
    """The mapper on VGG-16-shaped layers at batch 3, half the ifmaps zero: the mapping,
    utilisation of the 168 PEs and processing latency (as the tests build them)."""
    t = load_target("eyeriss")
    out = []
    for C, M, H in VGG_CONVS:
        g = _conv(C, H, M, 3, 1, 1, 1, "conv")
        layer = scale_batch(analyze(g, act_density=0.5).layer("conv"), 3)
        b = t.cost_layer(layer, EyerissContext(batch=3)).breakdown
        out.append(
            {
                "layer": f"{C}->{M} at {H}x{H}",
                "mapping": {k: int(b[f"map_{k}"]) for k in "mnepqrt"},
                "active_pes": int(b["active_pes"]),
                "utilisation": b["utilisation"],
                "processing_ms": b["processing_s"] * 1e3,
                "dram_ms": b["dram_s"] * 1e3,
            }
        )
    return out


def googlenet_rows(t) -> list[dict[str, Any]]:
    """CVPR 2017 Fig. 1, priced on the Eyeriss layers only (the host's share is not in the
    figure)."""
    from hwcc import models  # torch is heavy: only when GoogLeNet is priced

    g = hwcc.load(models.model_path("googlenet"))
    layers = analyze(g).layers
    first = next(x.name for x in layers if x.kind == "conv")
    density = {x.name: GOOGLENET_DENSITY for x in layers} | {first: 1.0}
    ctx = CostContext(batch=1, act_density=density)
    work = analyze(g, act_density=density)
    gctx = t.graph_context(g, work, ctx)
    parts = dict.fromkeys(GOOGLENET_SPLIT, 0.0)
    for x in work.layers:
        if (
            x.kind in ("conv", "grouped_conv", "depthwise_conv", "gemm", "matmul")
            and t.supports(x) is None
        ):
            b = t.cost_layer(x, gctx).breakdown
            for k in parts:
                parts[k] += b.get(k, 0.0)
    total = sum(parts.values())
    return [
        row(
            "eyeriss",
            "GoogLeNet",
            f"energy share: {GOOGLENET_NAMES[k]}",
            "",
            parts[k] / total,
            v,
            GOOGLENET_TOL_PP,
            absolute=True,
        )
        for k, v in GOOGLENET_SPLIT.items()
    ]


def tpu_rows() -> list[dict[str, Any]]:
    t = load_target("tpu")
    out = []
    for name, build in BUILDERS.items():
        gc = t.price(build())
        macs = sum(x.layer.macs for x in gc.layers)
        tops = 2 * macs / gc.latency_s / 1e12
        flag = "not captured" if name in TPU_NOT_CAPTURED else ""
        out.append(
            row("tpu", name, "TOPS", "TOPS", tops, TPU_MEASURED_TOPS[name], TPU_TOL, flag=flag)
        )
        if name == "CNN0":
            out.append(
                row(
                    "tpu",
                    name,
                    "busy power",
                    "W",
                    gc.energy_j / gc.latency_s,
                    TPU_BUSY_W,
                    TPU_POWER_TOL,
                )
            )
    small = t.price(qlinear_fc(96, 600, 600)).layer("fc").cost
    out.append(
        row(
            "tpu",
            "600x600, batch 96",
            "time, 256x256 unit",
            "us",
            small.latency_s * 1e6,
            SECTION7["256x256 unit"],
            SECTION7_TOL,
        )
    )
    big = _tpu_variant(
        t, array_rows=512, array_cols=512, tile_shift_cycles=512, pipeline_fill_cycles=512
    )
    large = big.price(qlinear_fc(96, 600, 600)).layer("fc").cost
    out.append(
        row(
            "tpu",
            "600x600, batch 96",
            "time, 512x512 unit",
            "us",
            large.latency_s * 1e6,
            SECTION7["512x512 unit"],
            SECTION7_TOL,
        )
    )
    return out


def _tpu_variant(t, **params):
    """The bundled TPU with some parameters changed: a new chip of the family (Section 7)."""
    text = Path(t.source).read_text()
    for key, value in params.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        if n != 1:
            raise RuntimeError(f"tpu.toml has no single '{key} =' line")
    with tempfile.TemporaryDirectory(prefix="hwcc-bench-") as d:
        path = Path(d) / "tpu512.toml"
        path.write_text(text)
        return load_target(path)
