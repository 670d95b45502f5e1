"""prune_channels through a Slice along the channel axis: the layer's channel space is cut
at the slice's bounds, each part becomes its own group unless something couples them
again, and the slice's bounds are rewritten to the positions kept.

The case that asks for it is an STFT front end, as silero-vad writes it: one Conv makes
the real and imaginary parts of every frequency bin (``2·F`` filters), two Slices take
``[:F]`` and ``[F:]``, and ``sqrt(re² + im²)`` feeds the encoder, so bin ``j`` is filters
``j`` and ``F + j`` together. As for every coupling: silent channels removed change
nothing (onnxruntime, explicit tolerances), live ones do, and slices the rule cannot map
(a step, bounds computed at run time, bounds inside a position) block the channels."""

from __future__ import annotations

import numpy as np
import pytest
from channel_checks import ATOL, RTOL, assert_channels_removed, check_runs, prune
from onnx import helper, numpy_helper

import hwcc
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.transform import PassContext
from hwcc.ir.verify import compare
from hwcc.passes.lib.channel_prune import prune_group
from hwcc.passes.lib.depgraph import analyze
from hwcc.testing import assert_equivalent

torch = pytest.importorskip("torch")
nn = torch.nn

BINS = 6


class Spectrum(nn.Module):
    """A learned STFT (a strided Conv1d with 2·BINS filters), its magnitude, an encoder."""

    def __init__(self):
        super().__init__()
        self.stft = nn.Conv1d(1, 2 * BINS, 16, stride=8, bias=False)
        self.encoder = nn.Conv1d(BINS, 5, 3, padding=1)

    def forward(self, x):
        z = self.stft(x)
        re, im = z[:, :BINS], z[:, BINS:]
        return self.encoder(torch.sqrt(re**2 + im**2 + 1e-6))


class TwoHeads(nn.Module):
    """Parts of one layer's channels read by unrelated layers (negative bounds included):
    nothing couples them, so each part prunes on its own."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 10, 3, padding=1)
        self.left, self.right = nn.Conv2d(4, 2, 1), nn.Conv2d(6, 2, 1)

    def forward(self, x):
        z = torch.relu(self.stem(x))
        return self.left(z[:, :4]) + self.right(z[:, -6:])


def folded(g):
    """The exporter computes the bounds (Unsqueeze of constants): fold them, as every
    compile does."""
    return PassManager(["fold_constants", "eliminate_dead"], PassContext()).run(g).graph


def stft_group(g):
    return next(grp for grp in analyze(g).groups() if grp.producers == ("/stft/Conv",))


def test_an_stft_bin_is_its_real_and_imaginary_filters(export_torch):
    net = Spectrum()
    silent = [1, 4]
    with torch.no_grad():
        for j in silent:  # bin j silent: both of its filters zero, so its magnitude is ~0
            net.stft.weight[j] = 0
            net.stft.weight[BINS + j] = 0
            net.encoder.weight[:, j] = 0  # sqrt(1e-6) is not 0: the encoder ignores it
    g = folded(export_torch(net, torch.randn(2, 1, 128)))
    grp = stft_group(g)
    assert grp.prunable, grp.reason
    assert grp.channels == BINS and grp.id == "/stft/Conv"
    assert grp.consumers == ("/encoder/Conv",)
    result = prune(g, group=grp.id, k=2)
    assert result.details["pruned"] == {grp.id: (BINS, BINS - 2)}
    after = result.graph
    assert after.tensors[after.node("/stft/Conv").inputs[1]].data.shape == (2 * (BINS - 2), 1, 16)
    assert_channels_removed(g, after, grp, 2)
    check_runs(g, after)
    assert_equivalent(g, after, rtol=RTOL, atol=ATOL)
    # the two slices now cut the 8 remaining filters at 4
    bounds = sorted(
        (int(after.tensors[n.inputs[1]].data[0]), int(after.tensors[n.inputs[2]].data[0]))
        for n in after.nodes
        if n.op_type == "Slice"
    )
    assert bounds[0] == (0, BINS - 2) and bounds[1][0] == BINS - 2
    # removing live bins changes the outputs: the test can fail
    live = prune_group(g, grp, silent)
    assert not compare(g, live, rtol=RTOL, atol=ATOL).passed


def test_uncoupled_parts_of_a_layer_prune_on_their_own(export_torch):
    net = TwoHeads()
    with torch.no_grad():
        net.stem.weight[[1, 7]] = 0  # channel 1 of the left part, 7 = 3 of the right part
        net.stem.bias[[1, 7]] = 0
    g = folded(export_torch(net, torch.randn(1, 3, 6, 6)))
    groups = {grp.id: grp for grp in analyze(g).groups() if grp.producers == ("/stem/Conv",)}
    assert sorted(groups) == ["/stem/Conv", "/stem/Conv#2"]
    head, tail = groups["/stem/Conv"], groups["/stem/Conv#2"]
    assert (head.channels, tail.channels) == (4, 6) and head.prunable and tail.prunable
    assert head.consumers == ("/left/Conv",) and tail.consumers == ("/right/Conv",)
    both = prune(g, group=head.id, k=1).graph
    both = prune(both, group=tail.id, k=1).graph
    assert both.tensors["/stem/Conv_output_0"].shape[1] == 8
    check_runs(g, both)
    assert_equivalent(g, both, rtol=RTOL, atol=ATOL)
    live = prune_group(g, tail, [0, 1, 2, 4, 5])  # channel 3 of the tail is 7: silent
    assert_equivalent(g, live, rtol=RTOL, atol=ATOL)
    live = prune_group(g, tail, [1, 2, 3, 4, 5])
    assert not compare(g, live, rtol=RTOL, atol=ATOL).passed


def _sliced(starts, ends, steps=None, computed=False):
    """Conv (8 filters) -> Slice on the channel axis -> Conv, hand-written."""
    w1 = numpy_helper.from_array(np.ones((8, 3, 1, 1), np.float32), "w1")
    inits = [w1, numpy_helper.from_array(np.array(ends, np.int64), "ends")]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"])]
    if computed:  # the start is read from the data at run time
        nodes += [
            helper.make_node("Shape", ["x"], ["s"], start=2, end=3),
            helper.make_node("Sub", ["s", "s"], ["starts"]),
        ]
    else:
        inits.append(numpy_helper.from_array(np.array(starts, np.int64), "starts"))
    ins = ["c", "starts", "ends", "axes"]
    if steps is not None:
        inits.append(numpy_helper.from_array(np.array(steps, np.int64), "steps"))
        ins.append("steps")
    nodes.append(helper.make_node("Slice", ins, ["z"]))
    width = len(range(8)[slice(starts[0], ends[0], (steps or [1])[0])])
    inits.append(numpy_helper.from_array(np.ones((2, width, 1, 1), np.float32), "w2"))
    nodes.append(helper.make_node("Conv", ["z", "w2"], ["y"]))
    x = helper.make_tensor_value_info("x", 1, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", 1, [1, 2, 4, 4])
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    return hwcc.load(model)


@pytest.mark.parametrize(
    "why, kwargs",
    [
        ("a step", dict(starts=[0], ends=[8], steps=[2])),
        ("computed bounds", dict(starts=[0], ends=[4], computed=True)),
    ],
)
def test_slices_the_rule_cannot_map_block_the_channels(why, kwargs):
    (grp, _) = analyze(_sliced(**kwargs)).groups()
    assert not grp.prunable and "slices them" in grp.reason, why


def test_channels_a_slice_drops_are_a_group_of_dead_filters():
    g = _sliced([2], [8])
    head, tail, _ = analyze(g).groups()
    assert (head.channels, tail.channels) == (2, 6) and head.prunable and tail.prunable
    assert head.consumers == () and len(tail.consumers) == 1
    # filters 0 and 1 are read by nobody: removing one changes nothing
    after = prune_group(g, head, [0])
    check_runs(g, after)
    assert_equivalent(g, after, rtol=0, atol=0)
    after = prune_group(g, tail, [0, 2, 3, 4, 5])
    check_runs(g, after)
    assert after.tensors["z"].shape[1] == 5
