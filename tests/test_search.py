"""The NetAdapt loop on its own: schedule, amount search, pick rule, stops, ordering."""

from __future__ import annotations

import math

import pytest
from search_runs import digits_importance, metrics

import hwcc
from hwcc.errors import HwccError
from hwcc.search.config import SearchConfig
from hwcc.search.loop import Hooks, run_loop
from hwcc.search.space import smallest_meeting, units
from hwcc.search.state import Schedule, SearchState


# ---------------------------------------------------------------------- schedule
def test_schedule_reference_defaults_cannot_reach_a_quarter_and_are_adapted():
    # ALGORITHMS.md: r0 = 0.025, d = 0.96 removes at most 62.5 % of R0 (infinitely many steps).
    reach_40 = 0.025 * (1 - 0.96**40) / (1 - 0.96)  # 50.3 % in 40 iterations
    assert reach_40 == pytest.approx(0.5029, abs=1e-4)
    s = Schedule.fit(0.025, 0.96, needed=0.75, iterations=40)
    assert s.warning is not None and "0.025" in s.warning
    assert s.r0 * (1 - 0.96**40) / (1 - 0.96) >= 0.75  # the adapted schedule gets there
    assert s.decay == 0.96


def test_schedule_left_alone_when_reachable():
    s = Schedule.fit(0.1, 0.96, needed=0.5, iterations=40)
    assert s.warning is None and s.r0 == 0.1
    assert s.step(2.0, 0) == pytest.approx(0.2)
    assert s.step(2.0, 3) == pytest.approx(0.2 * 0.96**3)


# ---------------------------------------------------------------------- amount search
def _toy(prices: list[float], log: list[int]):
    """Steps 0..n-1 priced ``prices[i]``; ``log`` records each step tried."""

    def at(k):
        log.append(k)
        return ("graph", k), prices[k]

    return list(range(len(prices))), at


def _k(step) -> str:
    return f"k={step}"


def test_smallest_meeting_finds_the_first_amount_at_or_below_target():
    prices = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    log: list[int] = []
    amount, graph, value = smallest_meeting(*_toy(prices, log), target=6.5)
    assert (amount, value) == (4, 6)
    assert len(log) <= math.ceil(math.log2(len(prices))) + 2  # a binary search, not a scan


def test_smallest_meeting_says_why_when_even_the_largest_change_misses():
    prices = [10, 9, 8]
    why = smallest_meeting(*_toy(prices, []), target=5, show=_k)
    assert isinstance(why, str) and "largest change" in why and "k=2" in why
    in_units = smallest_meeting(*_toy([1.307e-6], []), target=1.177e-6, metric="latency_s")
    assert "1.31 us > target 1.18 us" in in_units, in_units


def test_smallest_meeting_passes_on_the_pass_reason():
    assert (
        smallest_meeting([1, 2], lambda s: "layer is already factored", 1.0)
        == "layer is already factored"
    )


# ---------------------------------------------------------------------- the loop, lenet5 on Eyeriss
def _start(limits, r0, cfg):
    return SearchState.start(
        limits,
        r0,
        r0,
        0.9,
        initial_reduction=cfg.initial_reduction,
        decay=cfg.decay,
        max_iterations=cfg.max_iterations,
    )


def _hooks(target, accuracy=lambda g: 0.9, events=None):
    return Hooks(
        price=lambda g: metrics(target, g),
        layer_energy=lambda g: {lc.layer.name: lc.cost.energy_j for lc in target.price(g).layers},
        finetune=lambda g, steps, seed: g,
        accuracy=accuracy,
        event=(lambda k, i: events.append((k, i))) if events is not None else (lambda k, i: None),
        importance=digits_importance,
    )


def test_loop_meets_a_size_budget_and_every_step_meets_its_target(lenet5, eyeriss):
    r0 = metrics(eyeriss, lenet5)
    cfg = SearchConfig(passes=("prune_channels",), initial_reduction=0.2, one_shot=False)
    state = _start({"size_bytes": 0.5 * r0["size_bytes"]}, r0, cfg)
    graph = run_loop(lenet5, state, cfg, _hooks(eyeriss))
    assert state.stop == "every budget met" and not state.unmet()
    assert metrics(eyeriss, graph)["size_bytes"] <= 0.5 * r0["size_bytes"]
    sizes = [h["metrics"]["size_bytes"] for h in state.history]
    assert sizes == sorted(sizes, reverse=True)
    for h in state.history:
        assert h["metrics"]["size_bytes"] <= h["target"] * (1 + 1e-12)
        assert h["pass"] == "prune_channels" and h["delta_size_bytes"] < 0
    # the first step asks for r0 * R0 = 20 % and the amount chosen is the smallest meeting it
    assert state.history[0]["target"] == pytest.approx(0.8 * r0["size_bytes"])


def test_pick_is_the_least_accuracy_lost_per_resource(lenet5, eyeriss):
    r0 = metrics(eyeriss, lenet5)

    # accuracy falls with the number of conv1 filters removed, not with the others
    def acc(g):
        w = g.initializer("0.weight")
        return 0.9 - 0.01 * (20 - w.shape[0])

    cfg = SearchConfig(passes=("prune_channels",), max_iterations=1, one_shot=False)
    state = _start({"size_bytes": 0.1 * r0["size_bytes"]}, r0, cfg)
    run_loop(lenet5, state, cfg, _hooks(eyeriss, acc))
    picked = [p for p in state.proposals if p["picked"]]
    assert len(picked) == 1 and picked[0]["layer"] != "channels of /0/Conv"
    scores = [p["score"] for p in state.proposals if p["score"] is not None]
    assert picked[0]["score"] == min(scores)


def test_accuracy_floor_stops_before_accuracy_falls_further(lenet5, eyeriss):
    r0 = metrics(eyeriss, lenet5)
    cfg = SearchConfig(
        passes=("prune_channels",), max_accuracy_drop=0.01, one_shot=False, long_term_steps=200
    )
    state = _start({"size_bytes": 0.3 * r0["size_bytes"]}, r0, cfg)
    graph = run_loop(lenet5, state, cfg, _hooks(eyeriss, accuracy=lambda g: 0.85))
    assert "below the floor" in state.stop and state.iteration == 0
    assert graph is lenet5  # the last network above the floor is kept


def test_energy_budget_visits_units_most_energy_first(lenet5, eyeriss):
    r0 = metrics(eyeriss, lenet5)
    cfg = SearchConfig(passes=("prune_weights",), max_units=1, max_iterations=1)
    events: list = []
    state = _start({"energy_j": 0.97 * r0["energy_j"]}, r0, cfg)
    run_loop(lenet5, state, cfg, _hooks(eyeriss, events=events))
    energy = {lc.layer.name: lc.cost.energy_j for lc in eyeriss.price(lenet5).layers}
    hungriest = max(
        (n for n in energy if n in {"/0/Conv", "/2/Conv", "/6/Gemm", "/8/Gemm"}), key=energy.get
    )
    tried = [r["layer"] for r in state.rejected] + [p["layer"] for p in state.proposals]
    assert tried == [f"weights of {hungriest}"]


def test_no_unit_can_help_ends_with_the_reason(lenet5, eyeriss):
    r0 = metrics(eyeriss, lenet5)
    cfg = SearchConfig(passes=("winograd",))  # lenet5 has only 5x5 convolutions
    state = _start({"size_bytes": 0.5 * r0["size_bytes"]}, r0, cfg)
    graph = run_loop(lenet5, state, cfg, _hooks(eyeriss))
    assert state.stop.startswith("no change to any layer") and graph is lenet5


def test_units_cover_every_prunable_group_and_layer(lenet5):
    got = [u.id for u in units(lenet5, ("prune_channels", "prune_weights", "low_rank"))]
    assert got[:3] == ["channels of /0/Conv", "channels of /2/Conv", "channels of /6/Gemm"]
    assert "weights of /8/Gemm" in got and "rank of /6/Gemm" in got
    with pytest.raises(hwcc.HwccError, match="cannot drive"):
        units(lenet5, ("fold_batchnorm",))


def test_tighten_keeps_the_users_limit_and_lowers_the_search_limit():
    state = SearchState.start(
        {"latency_s": 1.0},
        dict.fromkeys(("latency_s", "energy_j", "size_bytes"), 2.0),
        {},
        None,
        initial_reduction=0.1,
        decay=0.96,
        max_iterations=40,
    )
    new = state.tighten("latency_s", 0.8)
    assert new == pytest.approx(0.784) and state.limits["latency_s"] == new
    assert state.user_limits == {"latency_s": 1.0}


def test_only_the_most_promising_proposals_are_fine_tuned(lenet5, eyeriss):
    """Each proposal is evaluated as it is; the ``finetune_top`` best by that accuracy are
    fine-tuned, and the pick is made among them by their accuracy after fine-tuning."""
    r0 = metrics(eyeriss, lenet5)
    tuned: list = []

    def finetune(g, steps, seed):
        tuned.append(g)
        out = g.copy()
        out.meta["tuned"] = True
        return out

    def acc(g):  # pruning conv2 costs more than pruning the Gemm, before fine-tuning
        conv2 = g.initializer("2.weight").shape[0] < 50
        return (0.8 if conv2 else 0.85) + (0.02 if g.meta.get("tuned") else 0.0)

    cfg = SearchConfig(passes=("prune_channels",), max_iterations=1, finetune_top=1, one_shot=False)
    state = _start({"size_bytes": 0.1 * r0["size_bytes"]}, r0, cfg)
    hooks = _hooks(eyeriss, acc)
    hooks.finetune = finetune
    run_loop(lenet5, state, cfg, hooks)
    by_layer = {p["layer"]: p for p in state.proposals}
    assert len(tuned) == 1 and len(by_layer) >= 2
    gemm, conv2 = by_layer["channels of /6/Gemm"], by_layer["channels of /2/Conv"]
    assert gemm["finetuned"] and gemm["picked"] and gemm["accuracy"] == pytest.approx(0.87)
    assert gemm["accuracy_before_finetune"] == pytest.approx(0.85)
    assert not conv2["finetuned"] and not conv2["picked"] and conv2["accuracy"] == 0.8


def test_one_iteration_takes_at_most_half_a_units_steps(lenet5, eyeriss):
    """Asked for 90 % of the size at once, no proposal removes more than half a layer."""
    r0 = metrics(eyeriss, lenet5)
    cfg = SearchConfig(
        passes=("prune_channels",), max_iterations=1, initial_reduction=0.9, one_shot=False
    )
    state = _start({"size_bytes": 0.1 * r0["size_bytes"]}, r0, cfg)
    run_loop(lenet5, state, cfg, _hooks(eyeriss))
    for p in state.proposals:  # several units combined: each member's step is capped alike
        for s in p["settings"].values() if "channels" not in p["settings"] else [p["settings"]]:
            before, after = map(int, s["channels"].split("->"))
            assert after >= before / 2, p
    with pytest.raises(HwccError, match="max_step_fraction"):
        SearchConfig(max_step_fraction=0)


def test_a_long_term_fine_tune_that_lowers_accuracy_is_not_kept(lenet5):
    from hwcc.search.run import _tuned_if_better

    worse, better = lenet5.copy(), lenet5.copy()
    acc = {id(lenet5): 0.9, id(worse): 0.5, id(better): 0.95}
    kept = _tuned_if_better(lenet5, 0.9, lambda g, s: worse, lambda g: acc[id(g)], 0)
    assert kept[0] is lenet5 and kept[1] == 0.9
    tuned = _tuned_if_better(lenet5, 0.9, lambda g, s: better, lambda g: acc[id(g)], 0)
    assert tuned[0] is better and tuned[1] == 0.95


def test_a_short_term_fine_tune_that_lowers_accuracy_is_not_kept(lenet5, eyeriss):
    r0 = metrics(eyeriss, lenet5)

    def finetune(g, steps, seed):
        out = g.copy()
        out.meta["tuned"] = True
        return out

    cfg = SearchConfig(passes=("prune_channels",), max_iterations=1, finetune_top=1, one_shot=False)
    state = _start({"size_bytes": 0.1 * r0["size_bytes"]}, r0, cfg)
    hooks = _hooks(eyeriss, lambda g: 0.6 if g.meta.get("tuned") else 0.88)
    hooks.finetune = finetune
    graph = run_loop(lenet5, state, cfg, hooks)
    (tuned,) = [p for p in state.proposals if p["finetuned"] and "units:" not in p["layer"]]
    assert tuned["accuracy"] == 0.88 and tuned["accuracy_before_finetune"] == 0.88
    assert not graph.meta.get("tuned")


def test_a_step_that_costs_too_much_accuracy_is_halved_before_giving_up(lenet5, eyeriss):
    """Every unit's 10 % step would fall below the floor; half of it does not."""
    r0 = metrics(eyeriss, lenet5)

    def acc(g):
        removed = 1 - metrics(eyeriss, g)["size_bytes"] / r0["size_bytes"]
        return 0.5 if removed > 0.07 else 0.9

    cfg = SearchConfig(
        passes=("prune_channels",), max_iterations=1, max_accuracy_drop=0.05, one_shot=False
    )
    state = _start({"size_bytes": 0.5 * r0["size_bytes"]}, r0, cfg)
    run_loop(lenet5, state, cfg, _hooks(eyeriss, acc))
    assert state.iteration == 1, state.stop
    assert state.history[0]["target"] >= 0.93 * r0["size_bytes"]  # a halved step
    assert state.history[0]["metrics"]["accuracy"] == 0.9


def test_a_halved_step_prices_each_change_of_the_graph_once(lenet5, eyeriss):
    """A step no unit can meet is halved; the changes tried for the first target are not
    built and priced again for the next (each distinct graph priced once, the proposal
    kept once more when it is built again), and the step kept meets the halved target."""
    r0 = metrics(eyeriss, lenet5)
    priced: list[tuple] = []

    def price(g):
        priced.append(tuple(sorted((n, t.shape) for n, t in g.tensors.items() if t.shape)))
        return metrics(eyeriss, g)

    cfg = SearchConfig(
        passes=("prune_channels",), initial_reduction=0.9, max_iterations=1, one_shot=False
    )
    state = _start({"size_bytes": 0.05 * r0["size_bytes"]}, r0, cfg)
    hooks = _hooks(eyeriss)
    hooks.price = price
    graph = run_loop(lenet5, state, cfg, hooks)
    assert state.iteration == 1, state.stop
    assert state.history[0]["target"] < 0.9 * r0["size_bytes"]  # halved, but not to nothing
    rejected = [r for r in state.rejected if r["iteration"] == 1]
    assert len(rejected) > len(units(lenet5, ["prune_channels"]))  # some units missed twice
    repeats = len(priced) - len(set(priced))
    assert repeats <= 2, repeats  # the proposal priced again once it is built, not per try
    assert metrics(eyeriss, graph)["size_bytes"] <= state.history[0]["target"]


def test_a_longer_fine_tune_before_the_floor_lets_the_search_go_on(lenet5, eyeriss):
    """Every proposal from the input is below the floor; the current network fine-tuned
    for the long-term steps gains accuracy, and the search goes on from it."""
    r0 = metrics(eyeriss, lenet5)
    seen, saved = [], []

    def finetune(g, steps, seed):
        seen.append(steps)
        out = g.copy()
        out.meta["long"] = out.meta.get("long") or steps == cfg.long_term_steps
        return out

    cfg = SearchConfig(
        passes=("prune_channels",), max_accuracy_drop=0.01, one_shot=False, long_term_steps=200
    )
    state = _start({"size_bytes": 0.7 * r0["size_bytes"]}, r0, cfg)
    hooks = _hooks(eyeriss, accuracy=lambda g: 0.95 if g.meta.get("long") else 0.85)
    hooks.finetune = finetune
    hooks.checkpoint = lambda g, s: saved.append((g.meta.get("long"), len(s.recoveries)))
    graph = run_loop(lenet5, state, cfg, hooks)
    assert state.stop == "every budget met" and graph.meta.get("long")
    (rec,) = state.recoveries
    assert rec == {
        "after_iteration": 0,
        "steps": cfg.long_term_steps,
        "accuracy_before": 0.9,
        "accuracy_after": 0.95,
        "kept": True,
    }
    assert saved[0] == (True, 1)  # the recovered network is checkpointed before going on
    assert SearchState.from_json(state.to_json()).recoveries == state.recoveries


def test_a_longer_fine_tune_that_gains_nothing_is_tried_once_and_dropped(lenet5, eyeriss):
    r0 = metrics(eyeriss, lenet5)
    cfg = SearchConfig(
        passes=("prune_channels",), max_accuracy_drop=0.01, one_shot=False, long_term_steps=200
    )
    state = _start({"size_bytes": 0.3 * r0["size_bytes"]}, r0, cfg)
    graph = run_loop(lenet5, state, cfg, _hooks(eyeriss, accuracy=lambda g: 0.85))
    assert "below the floor" in state.stop and graph is lenet5
    assert [(r["after_iteration"], r["kept"]) for r in state.recoveries] == [(0, False)]
    # a checkpoint from before recoveries existed still loads
    old = state.to_json()
    del old["recoveries"]
    assert SearchState.from_json(old).recoveries == []


def test_the_default_criterion_without_a_measurement_is_a_clear_error(lenet5, eyeriss):
    r0 = metrics(eyeriss, lenet5)
    cfg = SearchConfig(passes=("prune_channels",), one_shot=False)
    state = _start({"size_bytes": 0.5 * r0["size_bytes"]}, r0, cfg)
    hooks = _hooks(eyeriss)
    hooks.importance = None
    with pytest.raises(HwccError, match="Hooks.importance is None") as e:
        run_loop(lenet5, state, cfg, hooks)
    assert "criterion='l2'" in e.value.hint
