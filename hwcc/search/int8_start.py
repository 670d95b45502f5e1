"""An int8 start for the search, where the target runs int8 MatMuls: dynamic quantization
of every MatMul and Gemm first, then NetAdapt's loop from there.

Pruning buys latency by removing work and pays for it in accuracy, channel by channel.
On a CPU there is a cheaper first move for transformer-like models: onnxruntime's
dynamic int8 MatMul (:mod:`hwcc.passes.quantize_dynamic`). On smart-turn's encoder it
took the model to 0.68x at 98.4 % decision agreement, where pruning alone stopped at
0.77x and 82.8 % (measured here side by side, 64 fresh inputs). Convolutional networks
have no MatMul large enough, and the start does not fire.

The start runs when the target says it runs such kernels
(:attr:`hwcc.targets.base.Target.runs_dynamic_int8`), the search allows it
(``SearchConfig.int8_start``) and a budget on latency, energy or size is unmet:

1. every MatMul and Gemm the pass fits is quantized, and the result priced;
2. it is kept only if it lowers the metric the unmet budget is on, and its held-out
   accuracy (as it is, or after a short-term fine-tune when that is higher) stays above
   the accuracy floor;
3. a kept start is iteration 1 of the history (``quantize_dynamic`` on ``int8 start (n
   layers)``), so a resumed run does not repeat it; one not kept leaves a line in the
   run's warnings saying why, and the loop starts from the float model.

The int8 layers' weights stay fixed afterwards: fine-tuning trains the layers around them
(rounding passes gradients straight through), and channel pruning leaves the groups that
meet them alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwcc.ir import Graph
from hwcc.ir.transform import PassContext, get_pass
from hwcc.search.config import SearchConfig
from hwcc.search.state import METRICS, SearchState

if TYPE_CHECKING:
    from hwcc.search.loop import Hooks

__all__ = ["PASS", "int8_start"]

PASS = "quantize_dynamic"
"""The pass the start runs; the history's entry of a kept start names it (nothing else does)."""


def int8_start(graph: Graph, state: SearchState, config: SearchConfig, hooks: Hooks) -> Graph:
    """The graph the loop starts from: ``graph`` with its MatMuls in int8 when that pays
    and holds the floor (module doc), else ``graph``."""
    over = state.unmet()
    if not over or not config.int8_start or not hooks.int8:
        return graph
    result = get_pass(PASS)(graph, PassContext(seed=config.seed, verify=False))
    if not result.modified:
        return graph
    metric = max(over, key=over.get)
    hooks.event("int8_start", {"stage": "pricing", "state": state})
    metrics = hooks.price(result.graph)
    n = len(result.details["layers"])
    if metrics[metric] >= state.current[metric]:
        state.warnings.append(
            f"int8 start not taken: {n} MatMul/Gemm layers in int8 price at "
            f"{metrics[metric]:.4g} against {state.current[metric]:.4g} in float ({metric})"
        )
        return graph
    hooks.event("int8_start", {"stage": "evaluating", "state": state, "layers": n})
    quantized, accuracy = result.graph, hooks.accuracy(result.graph)
    floor = state.floor(config.max_accuracy_drop)
    if floor is not None and accuracy is not None and accuracy < floor:
        tuned = hooks.finetune(quantized, config.short_term_steps, config.seed)
        after = hooks.accuracy(tuned)
        if after is not None and after > accuracy:
            quantized, accuracy = tuned, after
    if floor is not None and accuracy is not None and accuracy < floor:
        state.warnings.append(
            f"int8 start not taken: {n} MatMul/Gemm layers in int8 keep {accuracy:.1%} "
            f"held-out, below the floor of {floor:.1%}"
        )
        return graph
    before = dict(state.current)
    state.history.append(
        {
            "iteration": state.iteration + 1,
            "layer": f"int8 start ({n} layers)",
            "pass": PASS,
            "settings": {"layers": sorted(result.details["layers"])},
            "metric": metric,
            "target": state.limits[metric],
            **{f"delta_{m}": metrics[m] - before[m] for m in METRICS},
            "delta_accuracy": None if accuracy is None else accuracy - state.accuracy,
            "metrics": {**metrics, "accuracy": accuracy},
        }
    )
    state.current, state.accuracy = dict(metrics), accuracy
    state.iteration += 1
    hooks.event("int8_start", {"stage": "kept", "state": state, "layers": n})
    hooks.checkpoint(quantized, state)
    return quantized
