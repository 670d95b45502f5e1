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
