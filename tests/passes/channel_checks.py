"""Checks for the prune_channels tests (tests/passes/test_prune_channels_*.py): the
tolerances, running the pass with knobs, that every tensor of a group lost the channels
it should, and that a pruned model is valid and runs in onnxruntime with the shapes the IR
says."""

from __future__ import annotations

import onnx
import onnxruntime as ort

from hwcc.ir import Graph, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import random_feeds
from hwcc.passes.lib.depgraph import analyze

RTOL, ATOL = 1e-5, 1e-5


def hidden_group(graph: Graph):
    """The group of the hidden units of the recurrent layer named ``rnn``."""
    return next(g for g in analyze(graph).groups() if g.producers == ("rnn",))


def keep_but(group, drop) -> list[int]:
    """The positions of ``group`` other than ``drop``."""
    return [i for i in range(group.channels) if i not in drop]


def prune(graph: Graph, verify: bool = False, data=None, **knobs):
    ctx = PassContext(knobs={"prune_channels": knobs}, verify=verify, data=data)
    return get_pass("prune_channels")(graph, ctx)


def assert_channels_removed(before: Graph, after: Graph, group, k: int, *others) -> None:
    """Every tensor of ``group`` lost ``k`` channels per segment of the group (times the
    elements per channel after a Flatten), and likewise for the ``(group, k)`` pairs of
    ``others`` pruned at the same time; the graph outputs kept their shapes."""
    removed = {grp.root: n for grp, n in [(group, k), *others]}
    a = group.analysis
    for grp in [group] + [x for x, _ in others]:
        for t in grp.tensors:
            lay = a.layout[t]
            gone = sum(removed.get(a.find(s), 0) for s in lay.spaces)
            assert (
                after.tensors[t].shape[lay.axis]
                == before.tensors[t].shape[lay.axis] - gone * lay.inner
            ), t
    for o in before.outputs:
        assert after.tensors[o].shape == before.tensors[o].shape


def check_runs(before: Graph, after: Graph) -> None:
    """A valid model (onnx.checker, full check) that onnxruntime runs with the shapes the
    IR says for every tensor, graph outputs unchanged. Every computed tensor is exposed as
    an extra output (which changes no node), and the model is serialised once for both."""
    proto = onnx_io.to_proto(after)
    shown = [
        t
        for t, x in after.tensors.items()
        if after.producer(t) is not None and x.is_static and t not in after.outputs
    ]
    proto.graph.output.extend(
        onnx.helper.make_tensor_value_info(t, after.tensors[t].elem_type, after.tensors[t].shape)
        for t in shown
    )
    blob = proto.SerializeToString()
    onnx.checker.check_model(blob, full_check=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    got = session.run(None, random_feeds(before, 0))
    for name, value in zip(list(after.outputs) + shown, got):
        assert value.shape == tuple(after.tensors[name].shape), name
    for name in before.outputs:
        assert after.tensors[name].shape == before.tensors[name].shape
