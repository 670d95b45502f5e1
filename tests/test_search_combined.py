"""Several units in one iteration when no single unit can take the schedule's step."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from search_runs import digits_importance, metrics

from hwcc.ir.onnx_io import to_proto
from hwcc.search.config import SearchConfig
from hwcc.search.loop import Hooks, run_loop
from hwcc.search.space import apply_step, units
from hwcc.search.state import SearchState

WEIGHTS = ("0.weight", "2.weight", "6.weight")


def _run(graph, target, *, reduction, accuracy, limit=0.05, metric="size_bytes", **cfg):
    r0 = metrics(target, graph)
    cfg = SearchConfig(
        **{
            "passes": ("prune_channels",),
            "initial_reduction": reduction,
            "max_iterations": 1,
            "one_shot": False,
            **cfg,
        }
    )
    state = SearchState.start(
        {metric: limit * r0[metric]},
        r0,
        r0,
        0.9,
        initial_reduction=cfg.initial_reduction,
        decay=cfg.decay,
        max_iterations=40,  # the schedule as a full search's; the test runs the first
    )
    hooks = Hooks(
        price=lambda g: metrics(target, g),
        layer_energy=lambda g: {},
        finetune=lambda g, steps, seed: g,
        accuracy=accuracy,
        importance=digits_importance,
    )
    return run_loop(graph, state, cfg, hooks), state


def _changed(original, g) -> int:
    return sum(g.initializer(w).shape[0] != original.initializer(w).shape[0] for w in WEIGHTS)


def test_units_are_combined_up_to_the_full_step_when_none_meets_it_alone(lenet5, eyeriss):
    """Asked for half the size at once: no group can (half its channels at most), the
    step is halved, and the halved step's proposals are taken together. The combination
    removes more than any single proposal, each member within its cap, and it is the
    graph the members' steps give applied one after another."""
    graph, state = _run(lenet5, eyeriss, reduction=0.5, accuracy=lambda g: 0.9)
    assert state.iteration == 1, state.stop
    (h,) = state.history
    assert h["layer"].startswith(("2 units", "3 units")), h["layer"]
    singles = [p for p in state.proposals if "units:" not in p["layer"]]
    (both,) = [p for p in state.proposals if "units:" in p["layer"]]
    assert both["picked"] and not any(p["picked"] for p in singles)
    assert both["size_bytes"] < min(p["size_bytes"] for p in singles)
    assert h["metrics"]["size_bytes"] <= h["target"]
    assert _changed(lenet5, graph) == len(h["settings"]) >= 2
    for shown in h["settings"].values():
        before, after = map(int, shown["channels"].split("->"))
        assert after >= before / 2
    # the same graph as the members' steps applied one by one to the input
    by_id = {u.id: u for u in units(lenet5, ["prune_channels"])}
    g = lenet5
    for uid, shown in h["settings"].items():
        step = next(s for s in by_id[uid].steps if dict(s.shown) == shown)
        g = apply_step(g, by_id[uid], step, {"criterion": "activation"}, digits_importance(lenet5))
        assert not isinstance(g, str), g
    for w in WEIGHTS:
        np.testing.assert_array_equal(g.initializer(w), graph.initializer(w))
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    outs = [
        ort.InferenceSession(to_proto(m).SerializeToString()).run(None, {m.inputs[0]: x})[0]
        for m in (g, graph)
    ]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-6)
    assert outs[1].shape == (1, 10)


def test_a_combination_losing_more_per_resource_than_its_members_is_not_kept(lenet5, eyeriss):
    """Each group alone costs nothing; any two together cost 60 points: the best single
    proposal is kept, and the combination tried is in the record, not picked."""
    graph, state = _run(
        lenet5,
        eyeriss,
        reduction=0.5,
        accuracy=lambda g: 0.9 if _changed(lenet5, g) <= 1 else 0.3,
        max_accuracy_drop=None,
    )
    (h,) = state.history
    assert "units:" not in h["layer"] and _changed(lenet5, graph) == 1
    (both,) = [p for p in state.proposals if "units:" in p["layer"]]
    assert not both["picked"] and both["accuracy"] == 0.3


def test_a_combination_that_loses_nothing_is_kept_whatever_its_members_gained(lenet5, eyeriss):
    """Each group alone gains 5 points (its fine-tune recovering earlier losses), any
    two together 2: less per resource removed than either member, but nothing lost
    against the iteration's start, and only the combination takes the full step."""
    graph, state = _run(
        lenet5,
        eyeriss,
        reduction=0.5,
        accuracy=lambda g: {0: 0.9, 1: 0.95}.get(_changed(lenet5, g), 0.92),
    )
    (h,) = state.history
    assert h["layer"].startswith(("2 units", "3 units")), h["layer"]
    assert _changed(lenet5, graph) >= 2 and h["metrics"]["size_bytes"] <= h["target"]
    (both,) = [p for p in state.proposals if "units:" in p["layer"]]
    singles = [p for p in state.proposals if "units:" not in p["layer"]]
    assert both["picked"] and both["accuracy"] == 0.92
    assert both["score"] > max(p["score"] for p in singles if p["accuracy"] == 0.95)


def test_nothing_is_combined_when_one_unit_meets_the_step(lenet5, eyeriss):
    graph, state = _run(
        lenet5, eyeriss, reduction=0.1, accuracy=lambda g: 0.9, limit=0.5, max_iterations=3
    )
    assert state.iteration == 3
    assert not any("units:" in p["layer"] for p in state.proposals)
    assert _changed(lenet5, graph) >= 1


def test_units_that_each_miss_the_smallest_step_are_taken_together(lenet5, eyeriss):
    """A tenth of a layer's channels at most per iteration, and the step asks for 90 %:
    no group meets even an eighth of it alone, which used to stop the search. The groups
    that lower the size most are evaluated and taken together."""
    graph, state = _run(
        lenet5, eyeriss, reduction=0.9, accuracy=lambda g: 0.9, max_step_fraction=0.1
    )
    assert state.iteration == 1, state.stop
    (h,) = state.history
    singles = [p for p in state.proposals if "units:" not in p["layer"]]
    assert len(singles) >= 2 and all(p["size_bytes"] > h["target"] for p in singles)
    assert h["layer"].startswith(f"{len(h['settings'])} units") and len(h["settings"]) >= 2
    assert h["metrics"]["size_bytes"] <= h["target"]
    assert metrics(eyeriss, graph)["size_bytes"] < min(p["size_bytes"] for p in singles)
    for shown in h["settings"].values():
        before, after = map(int, shown["channels"].split("->"))
        assert after >= 0.9 * before - 1


def test_near_misses_that_interact_leave_the_search_stopped(lenet5, eyeriss):
    graph, state = _run(
        lenet5,
        eyeriss,
        reduction=0.9,
        accuracy=lambda g: 0.9 if _changed(lenet5, g) <= 1 else 0.3,
        max_step_fraction=0.1,
        max_accuracy_drop=None,
    )
    assert state.iteration == 0 and state.stop.startswith("no change to any layer")
    assert graph is lenet5
    (both,) = [p for p in state.proposals if "units:" in p["layer"]]
    assert not both["picked"] and both["accuracy"] == 0.3


def test_only_the_proposal_an_iteration_takes_is_marked_picked(lenet5, eyeriss):
    """Every change costs 40 points against a 5-point floor: each halving's best is below
    it and the search stops without taking one, so no record may say it was picked; in a
    run that takes one per iteration, exactly that one is marked."""
    graph, state = _run(
        lenet5,
        eyeriss,
        reduction=0.5,
        accuracy=lambda g: 0.9 if _changed(lenet5, g) == 0 else 0.5,
        max_accuracy_drop=0.05,
    )
    assert state.iteration == 0 and "below the floor" in state.stop, state.stop
    assert state.proposals and not any(p["picked"] for p in state.proposals)
    graph, state = _run(lenet5, eyeriss, reduction=0.5, accuracy=lambda g: 0.9)
    (h,) = state.history
    (taken,) = [p for p in state.proposals if p["picked"]]
    assert (taken["layer"], taken["settings"]) == (h["layer"], h["settings"])
