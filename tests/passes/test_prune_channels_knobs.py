"""prune_channels' knobs and the cases where it must not fire: the kept count for a ratio
and round_to, a ratio pruning every group (MACs fall), round_to keeping multiples, the
input graph left unchanged, the search API's count, the CLI; ratio 0, no prunable group,
round_to keeping every channel, a named group that cannot be pruned, k = 0, and the errors
a user can act on."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from channel_checks import assert_channels_removed, check_runs, prune

import hwcc
from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes, onnx_io, workload
from hwcc.passes.lib.depgraph import prunable_groups
from hwcc.passes.prune_channels import kept_count, prune_k


# ---------------------------------------------------------------------- ratio, round_to
@pytest.mark.parametrize(
    "c,ratio,round_to,keep",
    [
        (64, 0.25, 1, 48),
        (64, 0.25, 8, 48),
        (10, 0.3, 1, 7),
        (10, 0.25, 1, 8),
        (10, 0.25, 8, 8),
        (20, 0.5, 8, 16),
        (6, 0.5, 8, 6),
        (100, 0.99, 1, 1),
        (7, 0.0, 1, 7),
    ],
)
def test_kept_count(c, ratio, round_to, keep):
    assert kept_count(c, ratio, round_to) == keep


def test_ratio_prunes_every_group_and_macs_fall(report_line):
    g = hwcc.load("zoo:resnet18")
    result = prune(g, ratio=0.25)
    assert result.modified
    groups = prunable_groups(g)
    assert result.details["pruned"] == {
        x.id: (x.channels, kept_count(x.channels, 0.25)) for x in groups
    }
    assert {x.id: x.channels for x in prunable_groups(result.graph)} == {
        x.id: kept_count(x.channels, 0.25) for x in groups
    }
    before, after = workload.analyze(g), workload.analyze(result.graph)
    # convs lose 1/4 of their input and of their output channels: about 0.75² of the MACs
    assert 0.5 < after.macs / before.macs < 0.62
    assert after.params < 0.65 * before.params
    report_line(
        f"prune_channels: resnet18 ratio=0.25: MACs x{after.macs / before.macs:.3f}, "
        f"params x{after.params / before.params:.3f}"
    )
    check_runs(g, result.graph)


def test_round_to_keeps_multiples_and_the_manager_records_the_error():
    g = hwcc.load("zoo:mobilenet-digits")
    result = prune(g, verify=True, ratio=0.3, round_to=8)
    kept = {x.id: x.channels for x in prunable_groups(result.graph)}
    assert all(c % 8 == 0 for c in kept.values()), kept
    assert kept == {x.id: kept_count(x.channels, 0.3, 8) for x in prunable_groups(g)}
    v = result.details["verification"]  # lossy: recorded, not required to match
    assert v.max_abs_err > 0


def test_input_graph_is_left_unchanged():
    g = hwcc.load("zoo:resnet-digits")
    before = {n: (a.shape, a.copy()) for n, a in g.initializers.items()}
    shapes = {n: t.shape for n, t in g.tensors.items()}
    prune(g, ratio=0.5)
    assert {n: t.shape for n, t in g.tensors.items()} == shapes
    assert all(np.array_equal(g.initializers[n], a) for n, (_, a) in before.items())


def test_the_search_api_prunes_one_group_by_a_count():
    g = hwcc.load("zoo:lenet5-digits")
    grp = prunable_groups(g)[1]
    after = prune_k(g, grp, 8)
    assert {x.id: x.channels for x in prunable_groups(after)}[grp.id] == grp.channels - 8
    assert_channels_removed(g, after, grp, 8)
    with pytest.raises(HwccError, match="cannot remove"):
        prune_k(g, grp, grp.channels)


def test_cli_apply_with_ratio(tmp_path, capsys):
    from hwcc.cli.commands import main

    out = tmp_path / "pruned.onnx"
    assert (
        main(
            ["apply", "prune_channels", "zoo:resnet-digits", "-o", str(out), "--set", "ratio=0.25"]
        )
        == 0
    )
    assert "prune_channels (ratio=0.25" in capsys.readouterr().out
    pruned = hwcc.load(out)
    onnx.checker.check_model(str(out), full_check=True)
    assert sorted(x.channels for x in prunable_groups(pruned)) == [24, 24, 24, 48, 48]


# ---------------------------------------------------------------------- must not fire
def test_not_with_ratio_zero():
    g = hwcc.load("zoo:lenet5-digits")
    result = prune(g)
    assert not result.modified and result.graph is g
    assert result.reason.startswith("ratio=0 removes nothing")
    assert result.details["groups"] == {"/0/Conv": 20, "/2/Conv": 50, "/6/Gemm": 500}


def one_conv_graph(*, c=4) -> Graph:
    """x -> Conv -> Relu -> output: the conv's channels reach the graph output."""
    g = Graph("one_conv")
    g.add_input("x", dtypes.FLOAT, (1, 3, 4, 4))
    g.add_initializer("w", np.random.default_rng(0).normal(size=(c, 3, 1, 1)).astype(np.float32))
    g.add_node("Conv", ["x", "w"], ["c"], name="conv")
    g.add_node("Relu", ["c"], ["y"], name="relu")
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def test_not_without_prunable_groups():
    g = one_conv_graph()
    result = prune(g, ratio=0.5)
    assert not result.modified and result.graph is g
    assert (
        result.reason
        == "the graph has no prunable channel group: conv: they reach the graph output 'y'"
    )
    assert result.details["unprunable"] == {"conv": "they reach the graph output 'y'"}


def test_not_when_round_to_keeps_every_channel():
    g = hwcc.load("zoo:lenet5-digits")  # 20, 50 and 500 channels
    result = prune(g, ratio=0.1, round_to=64)
    assert not result.modified
    assert "removes no channel from any of the 3 prunable groups" in result.reason


def test_not_for_a_named_group_that_cannot_be_pruned():
    g = hwcc.load("zoo:lenet5-digits")
    result = prune(g, group="/8/Gemm", k=2)
    assert not result.modified
    assert result.reason == "group '/8/Gemm' cannot be pruned: they reach the graph output 'logits'"


def test_not_for_k_zero():
    result = prune(hwcc.load("zoo:lenet5-digits"), group="/2/Conv")
    assert not result.modified and result.reason.startswith("k=0")


@pytest.mark.parametrize(
    "knobs,message",
    [
        ({"group": "nope", "k": 1}, "the graph has no channel group 'nope'"),
        ({"group": "/2/Conv", "k": 50}, "cannot remove 50 of the 50 channels"),
        ({"ratio": 1.0}, "would remove every channel"),
        ({"ratio": 1.5}, "knob 'ratio' cannot be 1.5"),
        ({"criterion": "random"}, "knob 'criterion' cannot be 'random'"),
        ({"ratio": 0.5, "criterion": "activation"}, "needs data to measure activations on"),
    ],
)
def test_errors_a_user_can_act_on(knobs, message):
    with pytest.raises(HwccError, match=message):
        prune(hwcc.load("zoo:lenet5-digits"), **knobs)
