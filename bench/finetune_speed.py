"""What the fine-tuner's interpreter costs over the same network written in torch.

A compile fine-tunes its proposals with :func:`hwcc.train.finetune.finetune`, which runs
the ONNX graph through hwcc's torch executor. Here the same steps (batch 32, SGD with
momentum, one torch thread, the digits train split) run on each digits model twice:
through the executor, and as the zoo's own torch module (:func:`hwcc.models.build_torch`)
in a plain training loop.
The two are timed in turn, after a warm-up of each (a process's first convolutions are
slow), and each model's ratio is the median of the rounds' ratios, so that both sides of
a ratio share the machine's speed at that moment.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench._common import md_table

TITLE = "Fine-tuning: the interpreter against plain torch"
ORDER = 61
FULL = {"models": ("lenet5-digits", "mobilenet-digits", "resnet-digits"), "steps": 100, "rounds": 5}
QUICK = {"models": ("lenet5-digits",), "steps": 20, "rounds": 2}
BATCH = 32


def timings(model: str, steps: int, rounds: int) -> dict[str, Any]:
    """Seconds per round for ``steps`` steps of ``model``, ours and plain, in turn."""
    # All in the section's process only: discovering sections must not load torch.
    import numpy as np
    import torch

    import hwcc  # (torch)
    from hwcc.models import build_torch  # (torch)
    from hwcc.models.digits import load_split  # (torch)
    from hwcc.train.finetune import finetune  # (torch)

    torch.set_num_threads(1)
    x, y = load_split("train")
    graph = hwcc.load(f"zoo:{model}")

    def ours(n: int) -> float:
        start = time.perf_counter()
        finetune(graph, x, y, steps=n, batch_size=BATCH)
        return time.perf_counter() - start

    def plain(n: int) -> float:
        net = build_torch(model).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        xs, ys = torch.from_numpy(x), torch.from_numpy(y)
        order = np.random.default_rng(0).permutation(len(x))
        start = time.perf_counter()
        for step in range(n):
            idx = torch.from_numpy(order[step * BATCH % (len(x) - BATCH) :][:BATCH])
            loss = torch.nn.functional.cross_entropy(net(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - start

    ours(5), plain(5)
    pairs = [(ours(steps), plain(steps)) for _ in range(rounds)]
    return {
        "model": model,
        "steps": steps,
        "ours_s": [p[0] for p in pairs],
        "plain_s": [p[1] for p in pairs],
        "ratio": statistics.median(p[0] / p[1] for p in pairs),
    }


def run(quick: bool, out: Path) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    runs = [timings(m, plan["steps"], plan["rounds"]) for m in plan["models"]]
    what = (
        f"{plan['steps']} steps of batch {BATCH} (SGD, momentum 0.9, labels, one torch "
        f"thread) per round, {plan['rounds']} rounds, ours and plain torch in turn within "
        "each round; the ratio is the median over rounds of ours / plain."
    )
    return {"title": TITLE, "what": what, "markdown": body(runs), "data": runs}


def body(runs: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["model"],
            f"{statistics.median(r['ours_s']) / r['steps'] * 1e3:.1f} ms",
            f"{statistics.median(r['plain_s']) / r['steps'] * 1e3:.1f} ms",
            f"{r['ratio']:.2f}x",
        ]
        for r in runs
    ]
    return md_table(["model", "hwcc's executor, per step", "plain torch, per step", "ratio"], rows)
