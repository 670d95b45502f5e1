"""The one-shot start (hwcc.search.oneshot): every channel group pruned at once by its
sensitivity, then the NetAdapt loop. lenet5-digits priced by Eyeriss, with an accuracy
that is a known function of how many channels each layer kept, so that what the
allocation must do can be worked out by hand."""

from __future__ import annotations

import pytest
from search_runs import digits_importance, metrics

from hwcc.search.config import SearchConfig
from hwcc.search.loop import Hooks, run_loop
from hwcc.search.state import SearchState

LAYERS = {"/0/Conv": 20, "/2/Conv": 50, "/6/Gemm": 500}  # the prunable layers' filters


def kept(graph) -> dict[str, float]:
    """Each prunable layer's share of its filters left."""
    return {n: graph.tensors[graph.node(n).inputs[1]].data.shape[0] / c for n, c in LAYERS.items()}


def accuracy_losing(cost: dict[str, float], start: float = 0.9):
    """Accuracy falls by ``cost[layer]`` per unit share of the layer's filters removed."""
    return lambda g: start - sum(cost[n] * (1 - share) for n, share in kept(g).items())


def _run(graph, target, limit_share, cfg, accuracy, events=None, distortion=None):
    r0 = metrics(target, graph)
    state = SearchState.start(
        {"size_bytes": limit_share * r0["size_bytes"]},
        r0,
        r0,
        accuracy(graph),
        initial_reduction=cfg.initial_reduction,
        decay=cfg.decay,
        max_iterations=cfg.max_iterations,
    )
    hooks = Hooks(
        price=lambda g: metrics(target, g),
        layer_energy=lambda g: {},
        finetune=lambda g, steps, seed: g,
        accuracy=accuracy,
        event=(lambda k, i: events.append((k, i))) if events is not None else (lambda k, i: None),
        distortion=distortion,
        importance=digits_importance,
    )
    return run_loop(graph, state, cfg, hooks), state


def test_the_one_shot_start_meets_the_budget_in_one_iteration(lenet5, eyeriss):
    cfg = SearchConfig(passes=("prune_channels",), max_accuracy_drop=0.05, one_shot=True)
    events = []
    out, state = _run(
        lenet5, eyeriss, 0.7, cfg, accuracy_losing(dict.fromkeys(LAYERS, 0.01)), events
    )
    first = state.history[0]
    assert first["layer"].startswith("one-shot") and len(first["settings"]) >= 2
    assert state.stop == "every budget met" and state.iteration == 1
    assert state.current["size_bytes"] <= state.limits["size_bytes"]
    assert first["metrics"]["size_bytes"] == pytest.approx(metrics(eyeriss, out)["size_bytes"])
    assert state.accuracy == pytest.approx(accuracy_losing(dict.fromkeys(LAYERS, 0.01))(out))
    stages = [i["stage"] for k, i in events if k == "one_shot"]
    assert stages[0] == "sensitivity" and stages[-2:] == ["fine-tune", "tried"]
    (picked,) = [i for k, i in events if k == "picked"]  # shown as the first iteration
    assert picked["proposal"].unit.id == first["layer"] and picked["proposal"].graph is out


def test_a_sensitive_layer_is_pruned_less(lenet5, eyeriss):
    """The big Gemm holds most of the weights; make it ten times as sensitive as the convs:
    the allocation must still meet the budget, taking a smaller share of it than of a
    layer that costs little accuracy (and the same budget with a mild Gemm takes more)."""
    cfg = SearchConfig(passes=("prune_channels",), max_accuracy_drop=0.05, one_shot=True)
    sensitive = {"/0/Conv": 0.001, "/2/Conv": 0.001, "/6/Gemm": 0.04}
    out, state = _run(lenet5, eyeriss, 0.8, cfg, accuracy_losing(sensitive))
    mild = {"/0/Conv": 0.04, "/2/Conv": 0.04, "/6/Gemm": 0.001}
    out2, state2 = _run(lenet5, eyeriss, 0.8, cfg, accuracy_losing(mild))
    assert state.history[0]["layer"].startswith("one-shot")
    assert state2.history[0]["layer"].startswith("one-shot")
    assert kept(out)["/6/Gemm"] > kept(out2)["/6/Gemm"]
    assert kept(out)["/2/Conv"] < kept(out2)["/2/Conv"]


def test_an_allocation_below_the_floor_is_not_kept(lenet5, eyeriss):
    """Every level of every layer loses 4 points and the floor allows 5: a combination of
    two groups or more falls below it, even after the (here: no-op) fine-tune, at the
    budget, half and a quarter of the way there, so the search starts from the input
    model and says so."""
    cfg = SearchConfig(
        passes=("prune_channels",), max_accuracy_drop=0.05, max_iterations=1, one_shot=True
    )
    cliff = lambda g: 0.9 - 0.04 * sum(share < 1 for share in kept(g).values())  # noqa: E731
    _, state = _run(lenet5, eyeriss, 0.5, cfg, cliff)
    assert not any(h["layer"].startswith("one-shot") for h in state.history)
    one_shots = [r for r in state.rejected if r["layer"].startswith("one-shot")]
    assert len(one_shots) == 3 and "below the floor" in one_shots[0]["reason"]
    assert any("one-shot start found no allocation" in w for w in state.warnings)


@pytest.mark.parametrize(
    "cfg, accuracy, share",
    [
        (
            SearchConfig(passes=("prune_weights",), max_iterations=1, one_shot=True),
            lambda g: 0.9,
            0.7,
        ),
        (
            SearchConfig(passes=("prune_channels",), max_iterations=1, one_shot=True),
            lambda g: None,
            0.7,
        ),
        (
            SearchConfig(passes=("prune_channels",), max_iterations=1, one_shot=False),
            lambda g: 0.9,
            0.7,
        ),
        (
            SearchConfig(passes=("prune_channels",), max_iterations=1, one_shot=True),
            lambda g: 0.9,
            2.0,
        ),
    ],
    ids=["no-channel-pass", "no-accuracy", "turned-off", "budget-already-met"],
)
def test_the_one_shot_start_does_not_fire(lenet5, eyeriss, cfg, accuracy, share):
    _, state = _run(lenet5, eyeriss, share, cfg, accuracy)
    assert not any(h["layer"].startswith("one-shot") for h in state.history)
    assert not any(r["layer"].startswith("one-shot") for r in state.rejected)


def test_a_resumed_search_does_not_repeat_the_one_shot_step(lenet5, eyeriss):
    cfg = SearchConfig(passes=("prune_channels",), max_accuracy_drop=0.05, one_shot=True)
    acc = accuracy_losing(dict.fromkeys(LAYERS, 0.01))
    out, state = _run(lenet5, eyeriss, 0.7, cfg, acc)
    state.limits["size_bytes"] *= 0.9  # as a measurement re-check tightens it
    state.stop = None
    events = []
    hooks = Hooks(
        price=lambda g: metrics(eyeriss, g),
        layer_energy=lambda g: {},
        finetune=lambda g, steps, seed: g,
        accuracy=acc,
        event=lambda k, i: events.append((k, i)),
        importance=digits_importance,
    )
    run_loop(out, state, cfg, hooks)
    assert not [k for k, _ in events if k == "one_shot"]
    assert sum(h["layer"].startswith("one-shot") for h in state.history) == 1


def test_the_allocation_ranks_by_distortion_where_accuracy_cannot_tell(lenet5, eyeriss):
    """Accuracy that never moves (a few held-out decisions) says nothing; the output
    distortion does: the Gemm distorts ten times as much per share removed, so it keeps
    more of its filters than when the convs are the distorting ones."""
    cfg = SearchConfig(passes=("prune_channels",), max_accuracy_drop=0.05, one_shot=True)

    def distortion(cost):
        return lambda g: sum(cost[n] * (1 - share) for n, share in kept(g).items())

    flat = lambda g: 0.9  # noqa: E731
    gemm = {"/0/Conv": 0.001, "/2/Conv": 0.001, "/6/Gemm": 0.04}
    convs = {"/0/Conv": 0.04, "/2/Conv": 0.04, "/6/Gemm": 0.001}
    out, state = _run(lenet5, eyeriss, 0.8, cfg, flat, distortion=distortion(gemm))
    out2, _ = _run(lenet5, eyeriss, 0.8, cfg, flat, distortion=distortion(convs))
    assert state.history[0]["layer"].startswith("one-shot")
    assert kept(out)["/6/Gemm"] > kept(out2)["/6/Gemm"]
    ranks = {x["layer"]: x["rank"] for x in state.history[0]["sensitivity"]}
    assert ranks and all(r > 0 for r in ranks.values())
