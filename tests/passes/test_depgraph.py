"""Channel dependency groups: which channels are coupled, why a group cannot be pruned,
how the index maps (Concat offsets, Flatten columns, depthwise) come out in the pruned
weights, and how fast the analysis is."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import hwcc
from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes, onnx_io
from hwcc.passes.lib.channel_prune import prune_group
from hwcc.passes.lib.depgraph import analyze, prunable_groups


def group_by_producer(graph: Graph, producer: str, *, prunable: bool | None = True):
    for g in analyze(graph).groups():
        if producer in g.producers:
            assert prunable is None or g.prunable == prunable, g.reason
            return g
    raise AssertionError(f"no group has producer {producer!r}")


# ---------------------------------------------------------------------- small graphs
def conv_graph(tail, *, c=4, size=4, seed=0) -> Graph:
    """x[1,3,size,size] -> Conv(c) 'conv' -> Relu -> tail(g, 'r') -> output."""
    rng = np.random.default_rng(seed)
    g = Graph("t")
    g.add_input("x", dtypes.FLOAT, (1, 3, size, size))
    g.add_initializer("w", rng.normal(size=(c, 3, 1, 1)).astype(np.float32))
    g.add_node("Conv", ["x", "w"], ["c"], name="conv")
    g.add_node("Relu", ["c"], ["r"], name="relu")
    g.outputs.append(tail(g, "r", rng))
    onnx_io.infer_shapes(g)
    return g


def head_conv(g: Graph, x: str, rng, *, cin=4, name="head") -> str:
    g.add_initializer(f"{name}.w", rng.normal(size=(2, cin, 1, 1)).astype(np.float32))
    g.add_node("Conv", [x, f"{name}.w"], [f"{name}.y"], name=name)
    return f"{name}.y"


def test_a_conv_followed_by_a_conv_is_one_prunable_group():
    g = conv_graph(head_conv)
    (grp,) = prunable_groups(g)
    assert (grp.id, grp.channels, grp.producers, grp.consumers) == ("conv", 4, ("conv",), ("head",))
    assert set(grp.tensors) == {"c", "r"}
    assert set(grp.nodes) == {"conv", "relu", "head"}


def _transpose(g, x, rng):
    g.add_node("Transpose", [x], ["t"], {"perm": [0, 2, 3, 1]}, name="tr")  # NHWC
    return head_conv(g, "t", rng)


def _lrn(g, x, rng):
    g.add_node("LRN", [x], ["l"], {"size": 3}, name="lrn")
    return head_conv(g, "l", rng)


def _mixing_reshape(g, x, rng):
    # NHWC [1,4,4,4] -> [1,4,8,2]: rows of 8 hold two pixels' 4 channels, split in half
    g.add_node("Transpose", [x], ["nhwc"], {"perm": [0, 2, 3, 1]}, name="keep")
    g.add_initializer("shape", np.array([1, 4, 8, 2], dtype=np.int64))
    g.add_node("Reshape", ["nhwc", "shape"], ["rs"], name="rs")
    return "rs"


def _spatial_concat(g, x, rng):
    """Along the rows, beside a constant whose channels are nobody's (the same tensor
    twice would be fine: tests/passes/test_prune_channels_state.py, stacked states)."""
    g.add_initializer("rows", rng.normal(size=(1, 4, 2, 4)).astype(np.float32))
    g.add_node("Concat", [x, "rows"], ["cc"], {"axis": 2}, name="cat")
    return head_conv(g, "cc", rng)


def _grouped(g, x, rng):
    g.add_initializer("gw", rng.normal(size=(4, 2, 1, 1)).astype(np.float32))
    g.add_node("Conv", [x, "gw"], ["gc"], {"group": 2}, name="grouped")
    return head_conv(g, "gc", rng)


def _unknown(g, x, rng):
    g.add_node("LpNormalization", [x], ["h"], {"axis": 1}, name="lp")
    return head_conv(g, "h", rng)


def _runtime_gemm(g, x, rng):
    g.add_node("Flatten", [x], ["f"], name="flat")
    g.add_input("B", dtypes.FLOAT, (64, 3))
    g.add_node("Gemm", ["f", "B"], ["o"], name="gemm")
    return "o"


def _runtime_matmul(g, x, rng):
    g.add_node("Flatten", [x], ["f"], name="flat")
    g.add_input("B", dtypes.FLOAT, (64, 3))
    g.add_node("MatMul", ["f", "B"], ["o"], name="mm")
    return "o"


def _fixed_add(g, x, rng):
    g.add_input("other", dtypes.FLOAT, (1, 4, 4, 4))
    g.add_node("Add", [x, "other"], ["s"], name="add")
    return head_conv(g, "s", rng)


@pytest.mark.parametrize(
    "tail,why",
    [
        (lambda g, x, rng: x, "reach the graph output 'r'"),
        (_transpose, "Conv 'head' expects them on axis 1 of an N×C×… tensor"),
        (_lrn, "reach LRN 'lrn', which mixes neighbouring channels"),
        (_mixing_reshape, "reach Reshape 'rs', which mixes the channels with other dims"),
        (_spatial_concat, "Concat 'cat' concatenates along axis 2, not their channel axis"),
        (_grouped, "reach Conv 'grouped' is a grouped convolution (group=2) that is not depthwise"),
        (_unknown, "reach LpNormalization 'lp', which the pruner does not know"),
        (_runtime_gemm, "reach Gemm 'gemm', whose weight is not constant"),
        (_runtime_matmul, "MatMul 'mm' contracts them with channels that cannot shrink"),
        (_fixed_add, "Add 'add' combines them with 'other', whose channels cannot shrink"),
    ],
)
def test_unprunable_groups_say_why(tail, why):
    g = conv_graph(tail)
    grp = group_by_producer(g, "conv", prunable=False)
    assert why in grp.reason, grp.reason
    assert grp not in prunable_groups(g)
    with pytest.raises(HwccError, match="cannot be pruned"):
        prune_group(g, grp, [0, 1])


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Max"])
def test_elementwise_ops_tie_their_operands_channels(op):
    def tail(g, x, rng):
        g.add_initializer("w2", rng.normal(size=(4, 3, 1, 1)).astype(np.float32))
        g.add_node("Conv", ["x", "w2"], ["c2"], name="conv2")
        g.add_node(op, [x, "c2"], ["s"], name="join")
        return head_conv(g, "s", rng)

    (grp,) = prunable_groups(conv_graph(tail))
    assert set(grp.producers) == {"conv", "conv2"} and grp.consumers == ("head",)
    assert grp.id == grp.producers[0]  # named after the first producer in graph order


def test_a_one_channel_operand_broadcasts_without_blocking():
    def tail(g, x, rng):
        g.add_initializer("w1", rng.normal(size=(1, 3, 1, 1)).astype(np.float32))
        g.add_node("Conv", ["x", "w1"], ["gate"], name="gate")  # [1,1,H,W] attention map
        g.add_node("Mul", [x, "gate"], ["s"], name="attend")
        return head_conv(g, "s", rng)

    groups = {x.id: x for x in analyze(conv_graph(tail)).groups()}
    assert {k: x.prunable for k, x in groups.items()} == {
        "conv": True,
        "gate": False,
        "head": False,
    }
    assert groups["gate"].reason == "Mul 'attend' broadcasts them over other channels"


def test_concat_with_a_fixed_part_shifts_the_offsets():
    """Concat([graph input (3 channels), conv (4)]): conv channel c is input column 3 + c."""

    def tail(g, x, rng):
        g.add_node("Concat", ["x", x], ["cc"], {"axis": 1}, name="cat")
        return head_conv(g, "cc", rng, cin=7)

    g = conv_graph(tail)
    (grp,) = prunable_groups(g)
    new = prune_group(g, grp, [0, 2, 3])
    np.testing.assert_array_equal(
        new.initializer("head.w"), np.delete(g.initializer("head.w"), 3 + 1, axis=1)
    )
    assert new.tensors["cc"].shape == (1, 6, 4, 4)


def test_depthwise_conv_of_a_graph_input_is_not_a_group():
    """A depthwise conv creates no channels of its own: its channels are only prunable
    through the group that produces its input, and a graph input cannot shrink."""
    rng = np.random.default_rng(0)
    g = Graph("dw")
    g.add_input("x", dtypes.FLOAT, (1, 3, 4, 4))
    g.add_initializer("dw", rng.normal(size=(3, 1, 3, 3)).astype(np.float32))
    g.add_node("Conv", ["x", "dw"], ["d"], {"group": 3, "pads": [1, 1, 1, 1]}, name="dwconv")
    g.outputs.append(head_conv(g, "d", rng, cin=3))
    onnx_io.infer_shapes(g)
    assert [grp.producers for grp in analyze(g).groups()] == [("head",)]


# ---------------------------------------------------------------------- index maps
def test_residual_group_spans_the_stem_and_every_block_it_feeds():
    g = hwcc.load("zoo:resnet18")
    grp = group_by_producer(g, "/0/0.0/0.0.0/Conv")
    assert grp.channels == 64
    assert grp.producers == (
        "/0/0.0/0.0.0/Conv",
        "/1/body/body.1/body.1.0/Conv",
        "/2/body/body.1/body.1.0/Conv",
    )
    assert len(grp.consumers) == 4  # two blocks' first convs, the next stage's conv and shortcut


def test_concat_maps_offsets_into_the_consumers_input_channels():
    g = hwcc.load("zoo:squeezenet1_1")
    grp = group_by_producer(g, "/2/expand3/expand3.0/Conv")  # second half of the Concat
    consumer = g.node(grp.consumers[0])
    w = g.initializer(consumer.inputs[1])
    assert w.shape[1] == 128
    new = prune_group(g, grp, [i for i in range(64) if i != 5])
    w2 = new.initializer(new.node(consumer.name).inputs[1])
    np.testing.assert_array_equal(w2, np.delete(w, 64 + 5, axis=1))
    cat = next(n for n in g.nodes if n.op_type == "Concat")
    assert new.tensors[cat.outputs[0]].shape[1] == 127


def test_flatten_maps_each_channel_to_its_block_of_gemm_columns():
    g = hwcc.load("zoo:lenet5")
    grp = group_by_producer(g, "/2/Conv")
    gemm = g.node(grp.consumers[0])
    assert gemm.op_type == "Gemm" and gemm.attr("transB") == 1
    w = g.initializer(gemm.inputs[1])  # [500, 50·4·4]
    new = prune_group(g, grp, [c for c in range(50) if c != 3])
    w2 = new.initializer(new.node(gemm.name).inputs[1])
    np.testing.assert_array_equal(w2, np.delete(w, np.arange(3 * 16, 4 * 16), axis=1))


def test_depthwise_conv_shrinks_with_the_group_that_feeds_it():
    g = hwcc.load("zoo:mobilenet_v1")
    grp = group_by_producer(g, "/0/0.0/Conv")
    dw = next(g.node(n) for n in grp.nodes if g.node(n).attr("group", 1) > 1)
    assert dw.attr("group") == 32
    new = prune_group(g, grp, range(2, 32))
    new_dw = new.node(dw.name)
    assert new_dw.attr("group") == 30
    np.testing.assert_array_equal(
        new.initializer(new_dw.inputs[1]), g.initializer(dw.inputs[1])[2:]
    )
    assert g.node(dw.name).attr("group") == 32  # the input graph is left as it was


# ---------------------------------------------------------------------- the zoo
def test_group_ids_are_stable_across_loads_and_prunes():
    g = hwcc.load("zoo:resnet-digits")
    ids = [x.id for x in prunable_groups(g)]
    assert ids == [x.id for x in prunable_groups(hwcc.load("zoo:resnet-digits"))]
    first = prunable_groups(g)[0]
    pruned = prune_group(g, first, range(first.channels - 4))
    after = {x.id: x.channels for x in prunable_groups(pruned)}
    assert list(after) == ids and after[first.id] == first.channels - 4


def test_a_group_found_on_another_copy_prunes_this_graph():
    g = hwcc.load("zoo:lenet5-digits")
    grp = prunable_groups(g.copy())[0]
    assert prune_group(g, grp, [0, 1]).tensors[grp.tensors[0]].shape[1] == 2


@pytest.mark.parametrize("keep", [[], [-1, 0], [0, 20]])
def test_keep_indices_are_checked(keep):
    g = hwcc.load("zoo:lenet5-digits")
    grp = prunable_groups(g)[0]
    assert grp.channels == 20
    with pytest.raises(HwccError, match="keep indices"):
        prune_group(g, grp, keep)


def test_a_group_of_another_graph_is_refused():
    grp = prunable_groups(hwcc.load("zoo:lenet5-digits"))[0]
    with pytest.raises(HwccError, match="not a group of this graph"):
        prune_group(hwcc.load("zoo:resnet-digits"), grp, [0])


# ---------------------------------------------------------------------- speed
def _calls(fn) -> int:
    """Python function calls ``fn`` makes: a measure of work that, unlike a time, does not
    depend on what else the machine is doing."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        count += event == "call"

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def chain(blocks: int) -> Graph:
    """Conv -> Relu -> Add(residual) blocks: 3 nodes each."""
    g = Graph("chain")
    g.add_input("x", dtypes.FLOAT, (1, 4, 2, 2))
    x = "x"
    w = np.ones((4, 4, 1, 1), np.float32)
    for i in range(blocks):
        g.add_initializer(f"w{i}", w)
        g.add_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}")
        g.add_node("Relu", [f"c{i}"], [f"r{i}"])
        g.add_node("Add", [f"r{i}", x] if i else [f"r{i}", f"r{i}"], [f"a{i}"])
        x = f"a{i}"
    g.outputs.append(head_conv(g, x, np.random.default_rng(0)))
    onnx_io.infer_shapes(g)
    return g


def test_groups_of_a_zoo_model_take_little_work():
    """MobileNet V2 (170 nodes) analysed in a few calls per node (13 when written)."""
    g = hwcc.load("zoo:mobilenet_v2")
    assert _calls(lambda: analyze(g).groups()) < 40 * len(g.nodes)


def test_analysis_work_grows_linearly_with_the_graph():
    small, big = chain(100), chain(800)
    work_small, work_big = (
        _calls(lambda: analyze(small).groups()),
        _calls(lambda: analyze(big).groups()),
    )
    assert len(prunable_groups(big)) == 1  # every block is tied by the residual chain
    assert work_big / work_small < 8 * 1.5  # 8x the nodes (7.5x the calls); quadratic: 64x
