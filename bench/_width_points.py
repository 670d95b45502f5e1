"""width's points: the width multiplier's models and hwcc's, fine-tuned alike and timed together.

For one trained zoo model and its own bundled data set, the model cleaned up as ``hwcc
compile`` does (:func:`hwcc.ir.cleanup.cleanup`): the multiplier's points
(``prune_channels`` at ``ratio = 1 − α``), one search to the smallest budget and its point
per budget, every point fine-tuned to the same total steps, then all of them timed
round-robin on this CPU; see :mod:`bench.width`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import hwcc
from bench._width_common import (
    SEED,
    Settings,
    accuracy_at_latency,
    data_of,
    first_meeting,
    latency_at_accuracy,
    speedup_at_accuracy,
    time_points,
)
from hwcc.data.evaluate import Evaluator, resolve_data
from hwcc.ir.cleanup import cleanup
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.workload import analyze
from hwcc.passes.prune_channels import prunable_groups
from hwcc.search.config import SearchConfig
from hwcc.train.finetune import finetune
from hwcc.train.graph_module import torch_outputs


class _Model:
    """One zoo model: the input as loaded, cleaned up as ``hwcc compile`` does, its data."""

    def __init__(self, name: str):
        self.name = name
        self.data = data_of(name)
        self.src = hwcc.load(f"zoo:{name}")
        self.graph = cleanup(self.src, seed=SEED)
        self.tune, held, _ = resolve_data(self.graph, self.data, None, SEED)
        self.evaluator = Evaluator(self.graph, held)
        self.accuracy0 = self.evaluator.accuracy(self.graph)
        self.teacher = torch_outputs(self.graph, self.tune.inputs)[0]  # the input model's outputs

    def finish(self, graph, steps: int, optimizer: str = "sgd") -> tuple[Any, float]:
        """``graph`` fine-tuned ``steps`` more steps of ``optimizer`` (the compile's settings:
        the labels and the input model as teacher, at the compile's default weight), and
        its test accuracy."""
        if steps > 0:
            graph = finetune(
                graph,
                self.tune.inputs,
                self.tune.labels,
                teacher=self.teacher,
                alpha=SearchConfig.distill_weight,
                steps=steps,
                seed=SEED,
                optimizer=optimizer,
            ).graph
        return graph, self.evaluator.accuracy(graph)


def _shape(graph) -> dict[str, Any]:
    """What a point kept: MACs, and the output channels of every prunable group."""
    return {
        "macs": analyze(graph).macs,
        "channels": {g.id: g.channels for g in prunable_groups(graph)},
    }


def _multiplier(m: _Model, s: Settings) -> list[dict[str, Any]]:
    """Every multiplier point, each rounding in turn; a width another rounding already gave
    is not repeated."""
    out: list[dict[str, Any]] = []
    for round_to in s.round_to:
        method = "width multiplier" + (f" (multiples of {round_to})" if round_to > 1 else "")
        for alpha in s.alphas:
            graph = m.graph
            if alpha < 1.0:  # alpha = 1: the input model, fine-tuned as long as every other point
                knobs = {"prune_channels": {"ratio": 1 - alpha, "round_to": round_to}}
                ctx = PassContext(knobs=knobs, verify=False)
                graph = get_pass("prune_channels")(m.graph, ctx).graph
            shape = _shape(graph)
            same = next((p for p in out if p["channels"] == shape["channels"]), None)
            if same is not None:
                same.setdefault("also", []).append(method)  # one model, on both curves
                continue
            graph, acc = m.finish(graph, s.total_steps, s.optimizer)
            label = f"α={alpha:g}" + (f" ×{round_to}" if round_to > 1 else "")
            out.append(
                {
                    "method": method,
                    "label": label,
                    "alpha": alpha,
                    "round_to": round_to,
                    "graph": graph,
                    "accuracy": acc,
                    "steps": s.total_steps,
                    **shape,
                }
            )
    return out


def _peers(m: _Model, s: Settings) -> list[dict[str, Any]]:
    """Torch-Pruning's points (:mod:`bench.peers`), cleaned up and fine-tuned like the others."""
    from bench import peers

    if not s.peer_ratios or not peers.available():
        return []
    out = []
    for p in peers.graphs(m.name, s.peer_ratios):
        graph, acc = m.finish(cleanup(p["graph"], seed=SEED), s.total_steps, s.optimizer)
        out.append(
            {
                "method": f"Torch-Pruning ({p['kind']})",
                "label": f"{p['kind']} {p['ratio']:g}",
                "ratio": p["ratio"],
                "graph": graph,
                "accuracy": acc,
                "steps": s.total_steps,
                **_shape(graph),
            }
        )
    return out


def _search(m: _Model, s: Settings) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One search to the smallest budget; the point for each budget, fine-tuned to ``T``."""
    picked: list[dict[str, Any]] = []

    def progress(kind: str, info: dict[str, Any]) -> None:
        if kind == "picked":
            p = info["proposal"]
            picked.append(
                {
                    "iteration": info["state"].iteration,
                    "graph": p.graph,
                    "predicted_s": p.metrics["latency_s"],
                    "search_accuracy": p.accuracy,
                    "changed": f"{p.unit.id} ({p.unit.pass_name})",
                }
            )

    lowest = min(s.budgets)
    t0 = time.monotonic()
    result = hwcc.compile(
        m.graph,
        "cpu",
        f"{lowest * 100:g}%",
        data=m.data,
        seed=SEED,
        max_iterations=s.max_iterations,
        short_term_steps=s.short_term_steps,
        long_term_steps=0,
        max_accuracy_drop=None,
        progress=progress,
    )
    search_s = time.monotonic() - t0
    r0 = result.summary.original["latency_s"]
    points, unreached = [], []
    for budget in sorted(s.budgets, reverse=True):
        p = first_meeting(picked, budget * r0)
        if p is None:
            unreached.append(budget)
            continue
        if points and points[-1]["iteration"] == p["iteration"]:
            points[-1]["label"] += f", {budget * 100:g}%"
            continue
        done = p["iteration"] * s.short_term_steps
        graph, acc = m.finish(p["graph"], max(0, s.total_steps - done), s.optimizer)
        points.append(
            {
                **p,
                "method": "hwcc",
                "label": f"{budget * 100:g}%",
                "budget": budget,
                "graph": graph,
                "accuracy": acc,
                "steps": max(s.total_steps, done),
                "predicted_ratio": p["predicted_s"] / r0,
                **_shape(graph),
            }
        )
    info = {
        "search_s": search_s,
        "iterations": len(picked),
        "stop": result.summary.exit_reason,
        "predicted_original_s": r0,
        "budget": f"{lowest * 100:g}%",
        "unreached": unreached,
        "history": [{k: v for k, v in p.items() if k != "graph"} for p in picked],
        "search_steps": s.short_term_steps * len(result.summary.proposals),
        "warnings": result.summary.warnings,
    }
    return points, info


def model(name: str, s: Settings, target) -> dict[str, Any]:
    """Every point of one model, measured, and hwcc's points set against the multiplier's curve."""
    t0 = time.monotonic()
    m = _Model(name)
    hwcc_points, info = _search(m, s)
    base = _multiplier(m, s)
    peer = _peers(m, s)
    original = {
        "method": "original",
        "label": "input",
        "alpha": 1.0,
        "graph": m.src,
        "accuracy": m.accuracy0,
        "steps": 0,
        **_shape(m.graph),
    }
    every = [original] + base + hwcc_points + peer
    got = time_points(every, target.threads, s.rounds, s.runs)
    curve = [(p["latency_s"], p["accuracy"]) for p in [original] + base]
    for p in hwcc_points:
        p["multiplier_latency_at_accuracy_s"] = latency_at_accuracy(curve, p["accuracy"])
        p["speedup_at_equal_accuracy"], p["bound"] = speedup_at_accuracy(
            curve, p["latency_s"], p["accuracy"]
        )
        p["multiplier_accuracy_at_latency"] = accuracy_at_latency(curve, p["latency_s"])
        if peer:
            tp = [(q["latency_s"], q["accuracy"]) for q in [original] + peer]
            p["peers_accuracy_at_latency"] = accuracy_at_latency(tp, p["latency_s"])
    spread = {"median": float(np.median(got["spread"][1:])), "max": max(got["spread"][1:])}
    return {
        "model": name,
        "data": m.data,
        "test_samples": len(m.evaluator.data.labels),
        "accuracy0": m.accuracy0,
        "original": original,
        "multiplier": base,
        "hwcc": hwcc_points,
        "peers": peer,
        "search": info,
        "spread": spread,
        "seconds": time.monotonic() - t0,
    }
