"""prune_channels on attention and on other reshapes that split the channel axis: heads
of multi-head attention (separate and fused query/key/value projections, the head count
read from the graph's Reshape), a channel shuffle, and the rules that let a group pass
Transpose, Softmax, LayerNormalization, Slice and a product of two computed tensors.

As for every coupling: removing heads whose projections are all zero leaves the outputs
unchanged (onnxruntime, explicit tolerances), removing live ones changes them, and each
rule has a case where it must not let the channels through."""

from __future__ import annotations

import numpy as np
import pytest
from channel_checks import ATOL, RTOL, assert_channels_removed, check_runs, prune
from onnx import TensorProto, helper, numpy_helper

import hwcc
from hwcc.ir import Graph
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.transform import PassContext
from hwcc.ir.verify import compare
from hwcc.passes.lib.channel_prune import prune_group
from hwcc.passes.lib.depgraph import analyze
from hwcc.testing import assert_equivalent

torch = pytest.importorskip("torch")
nn = torch.nn


class Attention(nn.Module):
    """Multi-head self-attention as most torch code writes it (and a feed-forward part).
    ``fused`` projects query, key and value with one Linear and splits it into
    ``(3, heads, head_dim)``, as PaddleOCR's SVTR and timm's ViT do."""

    def __init__(self, dim=12, heads=3, fused=False):
        super().__init__()
        self.heads, self.d, self.fused = heads, dim // heads, fused
        if fused:
            self.qkv = nn.Linear(dim, 3 * dim)
        else:
            self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        b, s, c = x.shape
        if self.fused:
            qkv = self.qkv(x).reshape(b, s, 3, self.heads, self.d).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            q, k, v = (
                p(x).reshape(b, s, self.heads, self.d).transpose(1, 2)
                for p in (self.q, self.k, self.v)
            )
        att = torch.softmax((q * self.d**-0.5) @ k.transpose(-2, -1), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, s, c)
        return self.norm(x + self.out(y))


@torch.no_grad()
def silence_heads(net: Attention, heads) -> None:
    """Zero the query, key and value weights and biases of ``heads``: the head's query
    and key are 0, so its scores are equal and it averages a value of 0, which the output
    projection reads as nothing."""
    d, dim = net.d, net.heads * net.d
    for h in heads:
        rows = slice(h * d, (h + 1) * d)
        if net.fused:
            for part in range(3):
                r = slice(part * dim + h * d, part * dim + (h + 1) * d)
                net.qkv.weight[r] = 0
                net.qkv.bias[r] = 0
        else:
            for p in (net.q, net.k, net.v):
                p.weight[rows] = 0
                p.bias[rows] = 0


def folded(graph: Graph) -> Graph:
    """The exporters compute the reshapes' targets from constants: fold them, as every
    compile does in its cleanup."""
    return PassManager(["fold_constants", "eliminate_dead"], PassContext()).run(graph).graph


def head_group(graph: Graph):
    groups = [g for g in analyze(graph).groups() if g.prunable]
    heads = [g for g in groups if g.channels == 3]
    assert len(heads) == 1, [(g.id, g.channels) for g in groups]
    return heads[0]


@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
def test_removing_silent_heads_keeps_outputs(fused, export_torch):
    torch.manual_seed(0)
    net = Attention(fused=fused)
    silence_heads(net, [1])
    x = torch.randn(2, 5, 12)
    g = folded(export_torch(net, x))
    grp = head_group(g)
    assert len(grp.producers) == (1 if fused else 3)
    result = prune(g, group=grp.id, k=1)  # the pass picks the silent head by L2 norm
    assert result.modified and result.details["pruned"] == {grp.id: (3, 2)}
    assert_channels_removed(g, result.graph, grp, 1)
    check_runs(g, result.graph)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)
    by_hand = prune_group(g, grp, [0, 2])
    assert_equivalent(result.graph, by_hand, rtol=0, atol=0, check_model=False)
    live = prune_group(g, grp, [1, 2])  # removing a live head changes the outputs
    assert not compare(g, live, rtol=RTOL, atol=ATOL).passed


@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
def test_a_pruned_head_shrinks_every_projection_by_head_dim(fused, export_torch):
    torch.manual_seed(1)
    net = Attention(dim=16, heads=4, fused=fused)
    g = folded(export_torch(net, torch.randn(1, 6, 16)))
    grp = next(x for x in analyze(g).groups() if x.prunable and x.channels == 4)
    after = prune_group(g, grp, [0, 3])
    shapes = sorted(
        after.tensors[n.inputs[1]].data.shape
        for n in after.nodes
        if n.op_type == "MatMul" and after.tensors[n.inputs[1]].data is not None
    )
    if fused:  # qkv: 16 -> 3·2 heads·4; out: 2·4 -> 16
        assert shapes == [(8, 16), (16, 24)]
    else:
        assert shapes == [(8, 16), (16, 8), (16, 8), (16, 8)]
    reshapes = [after.tensors[n.outputs[0]].shape for n in after.nodes if n.op_type == "Reshape"]
    assert (1, 6, 8) in reshapes and any(2 in s[2:4] for s in reshapes if len(s) >= 4)
    check_runs(g, after)


def test_the_dynamo_exporter_gives_the_same_head_group():
    import warnings

    torch.manual_seed(0)
    net = Attention().eval()
    silence_heads(net, [2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (torch.randn(2, 5, 12),), dynamo=True, verbose=False)
    g = folded(hwcc.load(program.model_proto))
    grp = head_group(g)
    after = prune_group(g, grp, [0, 1])
    assert_equivalent(g, after, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------ graphs built by hand
def _model(nodes, inits, x_shape, y_shape, opset=17) -> Graph:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    return hwcc.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_a_channel_shuffle_ties_each_channel_across_the_groups():
    """ShuffleNet's shuffle: [N, 8, H, W] -> [N, 2, 4, H, W] -> swap -> [N, 8, H, W]. The
    first conv's channel i and 4 + i land side by side; they can only go together."""
    w1 = _rand(8, 3, 1, 1)
    w1[[1, 5]] = 0  # unit 1: channels 1 and 5 of the first conv
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("Reshape", ["a", "s1"], ["b"]),
        helper.make_node("Transpose", ["b"], ["c"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["c", "s2"], ["d"]),
        helper.make_node("Conv", ["d", "w2"], ["y"]),
    ]
    inits = {
        "w1": w1,
        "w2": _rand(4, 8, 1, 1, seed=1),
        "s1": np.array([1, 2, 4, 5, 5], np.int64),
        "s2": np.array([1, 8, 5, 5], np.int64),
    }
    g = _model(nodes, inits, [1, 3, 5, 5], [1, 4, 5, 5])
    (grp,) = [x for x in analyze(g).groups() if x.prunable]
    assert grp.channels == 4
    silent = prune_group(g, grp, [0, 2, 3])
    assert silent.tensors["a"].shape == (1, 6, 5, 5) and silent.tensors["d"].shape == (1, 6, 5, 5)
    assert_equivalent(g, silent, rtol=RTOL, atol=ATOL)
    assert not compare(g, prune_group(g, grp, [1, 2, 3]), rtol=RTOL, atol=ATOL).passed


def _attention_core(softmax_axis=-1, norm_axis=None):
    """x [1, 5, 8] -> q = x·Wq, k = x·Wk -> scores q·kᵀ [1, 5, 5] -> softmax -> ·x."""
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Softmax", ["s"], ["p"], axis=softmax_axis),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
    ]
    nodes.insert(0, nodes.pop())  # v before its use
    inits = {"wq": _rand(8, 6), "wk": _rand(8, 6, seed=1), "wv": _rand(8, 4, seed=2)}
    return nodes, inits


def test_a_contraction_of_two_computed_tensors_ties_their_channels():
    """q·kᵀ contracts the query's and the key's channels: they are one group, which
    leaves the product (so the scores' Softmax over the last axis does not matter)."""
    nodes, inits = _attention_core()
    inits["wq"][:, 2] = 0  # channel 2 of the query is 0: its key channel adds nothing
    g = _model(nodes, inits, [1, 5, 8], [1, 5, 4])
    groups = {x.channels: x for x in analyze(g).groups()}
    qk = groups[6]
    assert qk.prunable, qk.reason
    assert [g.node(n).inputs[1] for n in qk.producers] == ["wq", "wk"]
    assert_equivalent(g, prune_group(g, qk, [0, 1, 3, 4, 5]), rtol=RTOL, atol=ATOL)
    assert not compare(g, prune_group(g, qk, [0, 1, 2, 3, 4]), rtol=RTOL, atol=ATOL).passed


def test_a_softmax_across_the_channels_blocks_them():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Softmax", ["h"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "w2"], ["y"]),
    ]
    g = _model(nodes, {"w": _rand(8, 6), "w2": _rand(6, 3)}, [1, 5, 8], [1, 5, 3])
    grp = next(x for x in analyze(g).groups() if x.channels == 6)
    assert not grp.prunable and "normalises across them" in grp.reason
    # before opset 13 Softmax(axis=1) normalises over the flattened [5·6] tail: blocked too
    nodes[1] = helper.make_node("Softmax", ["h"], ["p"], axis=1)
    g = _model(nodes, {"w": _rand(8, 6), "w2": _rand(6, 3)}, [1, 5, 8], [1, 5, 3], opset=11)
    assert not next(x for x in analyze(g).groups() if x.channels == 6).prunable


def test_a_softmax_along_another_axis_lets_them_through():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Softmax", ["h"], ["p"], axis=1),
        helper.make_node("MatMul", ["p", "w2"], ["y"]),
    ]
    w = _rand(8, 6)
    w[:, 4] = 0
    w2 = _rand(6, 3, seed=1)
    w2[4] = 0
    g = _model(nodes, {"w": w, "w2": w2}, [1, 5, 8], [1, 5, 3])
    grp = next(x for x in analyze(g).groups() if x.channels == 6)
    assert grp.prunable, grp.reason
    assert_equivalent(g, prune_group(g, grp, [0, 1, 2, 3, 5]), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("axis, prunable", [(1, False), (2, True)])
def test_layer_normalization_blocks_only_the_axes_it_normalises(axis, prunable):
    """[1, 6, 5, 4] with channels on axis 1: a norm over the axes from 2 keeps them
    apart; one over the axes from 1 mixes them."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"]),
        helper.make_node("LayerNormalization", ["h", "scale", "bias"], ["n"], axis=axis),
        helper.make_node("Conv", ["n", "w2"], ["y"]),
    ]
    shape = (5, 4) if prunable else (6, 5, 4)
    inits = {
        "w": _rand(6, 3, 1, 1),
        "w2": _rand(2, 6, 1, 1, seed=1),
        "scale": np.ones(shape, np.float32),
        "bias": np.zeros(shape, np.float32),
    }
    g = _model(nodes, inits, [1, 3, 5, 4], [1, 2, 5, 4])
    grp = next(x for x in analyze(g).groups() if x.channels == 6)
    assert grp.prunable == prunable, grp.reason
    if prunable:
        check_runs(g, prune_group(g, grp, [0, 1, 2]))


def test_a_reshape_that_interleaves_channels_with_tokens_still_blocks():
    """[1, 5, 6] -> [1, 6, 5] by Reshape (not a transpose) scatters each channel."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Reshape", ["h", "s"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    inits = {"w": _rand(8, 6), "w2": _rand(5, 3), "s": np.array([1, 6, 5], np.int64)}
    g = _model(nodes, inits, [1, 5, 8], [1, 6, 3])
    grp = next(x for x in analyze(g).groups() if x.channels == 6)
    assert not grp.prunable and "mixes the channels" in grp.reason
