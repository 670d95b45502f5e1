"""The int8 start (hwcc.search.int8_start): a two-layer MLP whose MatMuls the target prices
at half their float cost in int8, with an accuracy that says whether a graph holds int8
layers, so that when the start must be kept and when not is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.search.config import SearchConfig
from hwcc.search.loop import Hooks, run_loop
from hwcc.search.state import SearchState

K, N = 96, 128


def mlp() -> Graph:
    rng = np.random.default_rng(0)
    g = Graph("mlp")
    g.add_input("a", dtypes.FLOAT, (1, 16, K))
    g.add_initializer("W0", rng.normal(size=(K, N)).astype(np.float32))
    g.add_initializer("W1", rng.normal(size=(N, K)).astype(np.float32))
    g.add_node("MatMul", ["a", "W0"], ["h"], name="mm0")
    g.add_node("Relu", ["h"], ["r"], name="relu")
    g.add_node("MatMul", ["r", "W1"], ["y"], name="mm1")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def price(int8_cost: float):
    """Latency 1 per float MatMul, ``int8_cost`` per int8 one; size and energy alike."""

    def run(g: Graph) -> dict[str, float]:
        t = sum(1.0 for n in g.nodes if n.op_type == "MatMul")
        t += sum(int8_cost for n in g.nodes if n.op_type == "DynamicQuantizeMatMul")
        return {"latency_s": t, "energy_j": t, "size_bytes": t}

    return run


def int8_layers(g: Graph) -> int:
    return sum(n.op_type == "DynamicQuantizeMatMul" for n in g.nodes)


def _run(*, int8_cost=0.5, accuracy=0.99, tuned=None, target=True, enabled=True, iters=1):
    g = mlp()
    cost = price(int8_cost)
    events = []
    state = SearchState.start(
        {"latency_s": 0.7 * cost(g)["latency_s"]},
        cost(g),
        cost(g),
        1.0,
        initial_reduction=0.1,
        decay=0.96,
        max_iterations=iters,
    )
    hooks = Hooks(
        price=cost,
        layer_energy=lambda g: {},
        finetune=lambda g, steps, seed: g.copy() if tuned is not None else g,
        accuracy=lambda g: (
            1.0
            if not int8_layers(g)
            else (tuned if tuned is not None and g.name == "t" else accuracy)
        ),
        event=lambda k, i: events.append((k, i)),
        int8=target,
    )
    if tuned is not None:  # the fine-tuned copy is told apart by its name
        finetune = hooks.finetune
        hooks.finetune = lambda g, steps, seed: _named(finetune(g, steps, seed), "t")
    cfg = SearchConfig(
        passes=("prune_channels",),
        max_accuracy_drop=0.05,
        int8_start=enabled,
        max_iterations=iters,
        criterion="l2",
    )
    out = run_loop(g, state, cfg, hooks)
    return out, state, events


def _started(state: SearchState) -> bool:
    return any(h["layer"].startswith("int8 start") for h in state.history)


def _named(g: Graph, name: str) -> Graph:
    g.name = name
    return g


def test_kept_when_cheaper_and_above_the_floor_and_it_meets_the_budget():
    out, state, events = _run()
    first = state.history[0]
    assert first["layer"] == "int8 start (2 layers)" and first["pass"] == "quantize_dynamic"
    assert first["settings"] == {"layers": ["mm0", "mm1"]}
    assert state.iteration == 1 and state.stop == "every budget met"
    assert int8_layers(out) == 2 and state.current["latency_s"] == pytest.approx(1.0)
    assert state.accuracy == pytest.approx(0.99)
    assert [i["stage"] for k, i in events if k == "int8_start"][-1] == "kept"


def test_not_kept_below_the_floor():
    out, state, _ = _run(accuracy=0.90)
    assert int8_layers(out) == 0 and not _started(state)
    assert any("below the floor of 95.0%" in w for w in state.warnings)


def test_a_short_fine_tune_can_lift_it_above_the_floor():
    out, state, _ = _run(accuracy=0.90, tuned=0.97)
    assert int8_layers(out) == 2 and state.accuracy == pytest.approx(0.97) and out.name == "t"


def test_not_kept_when_int8_is_priced_no_cheaper():
    out, state, _ = _run(int8_cost=1.0)
    assert int8_layers(out) == 0 and not _started(state)
    assert any("int8 start not taken" in w and "in float" in w for w in state.warnings)


@pytest.mark.parametrize("target,enabled", [(False, True), (True, False)])
def test_not_tried_where_the_target_or_the_options_say_no(target, enabled):
    out, state, events = _run(target=target, enabled=enabled)
    assert int8_layers(out) == 0 and not _started(state)
    assert not any("int8" in w for w in state.warnings)
    assert not [k for k, _ in events if k == "int8_start"]
