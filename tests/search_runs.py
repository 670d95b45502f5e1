"""Helpers of the search tests (tests/test_search*.py): the metrics a search works on, as
Eyeriss prices lenet5-digits, with the model's size as the sum of its layers' weights."""

from __future__ import annotations


def metrics(target, graph) -> dict[str, float]:
    c = target.price(graph)
    return {
        "latency_s": c.latency_s,
        "energy_j": c.energy_j,
        "size_bytes": float(sum(lc.layer.weight_bytes for lc in c.layers)),
    }


def digits_importance(graph):
    """What the default ``activation`` criterion measures ``graph`` on: its mean
    activations over 16 digits of the train split (as ``hwcc.compile`` measures them over
    the fine-tune data)."""
    from hwcc.models import digits
    from hwcc.passes.lib.importance import activation_means

    x = digits.load_split("train")[0][:16]
    return activation_means(graph, {"input": x})
