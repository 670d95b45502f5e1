"""prune_channels' criteria: the L2 and L1 scores sum over every member filter of a group,
and the activation criterion removes a channel that is dead on the data (given as arrays
or a file), matches mean activations computed by hand on the digits, and needs arrays
named like the model's inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from channel_checks import ATOL, RTOL, prune

import hwcc
from hwcc.errors import HwccError
from hwcc.ir import onnx_io
from hwcc.ir.verify import compare
from hwcc.passes.lib.depgraph import analyze
from hwcc.testing import assert_equivalent

torch = pytest.importorskip("torch")
nn = torch.nn


# ---------------------------------------------------------------------- criteria
def test_l2_and_l1_scores_sum_over_every_member_filter():
    from hwcc.passes.lib.importance import scores

    g = hwcc.load("zoo:mobilenet-digits")
    a = analyze(g)
    grp = next(x for x in a.groups() if len(x.producers) == 3)  # a residual group
    filters = [g.initializer(g.node(p).inputs[1]) for p in grp.producers]
    dw = [
        g.initializer(g.node(n).inputs[1])
        for n in grp.nodes
        if g.node(n).op_type == "Conv" and g.node(n).attr("group", 1) > 1
    ]
    rows = [w.reshape(w.shape[0], -1).astype(np.float64) for w in filters + dw]
    want_l2 = np.sqrt(sum((r * r).sum(axis=1) for r in rows))
    want_l1 = sum(np.abs(r).sum(axis=1) for r in rows)
    got = scores(a, [grp], "l2")[grp.id], scores(a, [grp], "l1")[grp.id]
    np.testing.assert_allclose(got[0], want_l2, rtol=1e-12)
    np.testing.assert_allclose(got[1], want_l1, rtol=1e-12)


class DeadChannel(nn.Module):
    """Channel 2 has the largest filter but a bias that keeps it below 0 for inputs in
    [0, 1): ReLU makes it dead on that data, and only the activation criterion sees it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 6, 1), nn.Conv2d(6, 3, 1)
        with torch.no_grad():
            self.a.weight.uniform_(-0.5, 0.5)
            self.a.weight[2] = -3.0
            self.a.bias.uniform_(0.1, 0.2)
            self.a.bias[2] = -1.0

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("as_file", [False, True])
def test_activation_criterion_removes_the_dead_channel(as_file, export_torch, tmp_path):
    torch.manual_seed(0)
    g = export_torch(DeadChannel(), torch.rand(4, 2, 3, 3))
    data = {"x0": np.random.default_rng(0).uniform(0, 1, (12, 2, 3, 3)).astype(np.float32)}
    if as_file:
        np.savez(tmp_path / "d.npz", labels=np.zeros(12), **data)
        data = str(tmp_path / "d.npz")
    by_data = prune(g, data=data, group="/a/Conv", k=1, criterion="activation").graph
    by_norm = prune(g, group="/a/Conv", k=1, criterion="l2").graph
    feeds = {"x0": np.random.default_rng(1).uniform(0, 1, (4, 2, 3, 3)).astype(np.float32)}
    # the dead one went
    assert_equivalent(g, by_data, feeds, rtol=RTOL, atol=ATOL, check_model=False)
    assert not compare(g, by_norm, rtol=RTOL, atol=ATOL, feeds=feeds).passed  # a live one went


def test_activation_criterion_on_the_digits(tmp_path):
    from hwcc.models import digits
    from hwcc.passes.lib.importance import scores

    g = hwcc.load("zoo:lenet5-digits")
    path = digits.write_npz("test", tmp_path / "test.npz")
    a = analyze(g)
    grp = a.groups()[0]
    score = scores(a, [grp], "activation", str(path))[grp.id]
    # by hand: mean |input of the next conv| per channel over the whole test split
    probe = onnx_io.to_proto(g)
    t = g.tensors[grp.tensors[-1]]
    probe.graph.output.append(onnx.helper.make_tensor_value_info(t.name, t.elem_type, t.shape))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.load(path)["input"]
    acts = np.concatenate(
        [session.run([t.name], {"input": x[i : i + 1]})[0] for i in range(len(x))]
    )
    np.testing.assert_allclose(score, np.abs(acts).mean(axis=(0, 2, 3)), rtol=1e-6)
    result = prune(g, data=str(path), ratio=0.25, criterion="activation")
    assert result.details["pruned"]["/0/Conv"] == (20, 15)


def test_activation_criterion_needs_arrays_named_like_the_inputs():
    g = hwcc.load("zoo:lenet5-digits")
    with pytest.raises(HwccError, match="no array for model input"):
        prune(
            g,
            data={"images": np.zeros((2, 1, 8, 8), np.float32)},
            ratio=0.5,
            criterion="activation",
        )


class ConstantChannel(nn.Module):
    """Channel 2 has the smallest filter and a large bias: after ReLU it is a constant
    of about 3 that the next layer adds in. L2 removes it, the activation criterion keeps
    it (what PP-OCRv4's recogniser does with its folded biases through hard-swish)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 6, 1), nn.Conv2d(6, 3, 1)
        with torch.no_grad():
            self.a.weight.uniform_(0.3, 0.6)
            self.a.weight[2] = 0.01
            self.a.bias.uniform_(0.0, 0.1)
            self.a.bias[2] = 3.0

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_activation_keeps_the_constant_channel_that_l2_removes(export_torch):
    torch.manual_seed(0)
    g = export_torch(ConstantChannel(), torch.rand(4, 2, 3, 3))
    data = {"x0": np.random.default_rng(0).uniform(0, 1, (12, 2, 3, 3)).astype(np.float32)}
    feeds = {"x0": np.random.default_rng(1).uniform(0, 1, (4, 2, 3, 3)).astype(np.float32)}
    want = ort_run(g, feeds)

    def error(criterion):
        pruned = prune(g, data=data, group="/a/Conv", k=1, criterion=criterion).graph
        return float(np.abs(ort_run(pruned, feeds) - want).max())

    assert error("activation") < error("l2") / 3


def ort_run(g, feeds):
    from hwcc.ir.verify import run_onnx

    return run_onnx(g, feeds)[0]


@pytest.mark.parametrize("name", ["zoo:lenet5-digits", "zoo:mobilenet-digits"])
def test_activation_means_measured_once_score_as_the_data_does(name, tmp_path):
    """What a search measures once per network (activation_means) gives every group the
    scores that measuring on the data itself gives; a tensor whose channel count no longer
    matches is measured again, on the data the means carry."""
    from hwcc.models import digits
    from hwcc.passes.lib.importance import ActivationMeans, activation_means, scores

    g = hwcc.load(name)
    data = str(digits.write_npz("test", tmp_path / "test.npz"))
    a = analyze(g)
    groups = [x for x in a.groups() if x.prunable]
    once = activation_means(g, data)
    direct = scores(a, groups, "activation", data)
    measured = scores(a, groups, "activation", once)
    for grp in groups:
        np.testing.assert_allclose(measured[grp.id], direct[grp.id], rtol=1e-12)
    stale = ActivationMeans({t: v[:-1] for t, v in once.means.items()}, data)
    again = scores(a, groups, "activation", stale)
    for grp in groups:
        np.testing.assert_allclose(again[grp.id], direct[grp.id], rtol=1e-12)
