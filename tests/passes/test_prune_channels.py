"""prune_channels: removing all-zero channels leaves the outputs unchanged (onnxruntime,
explicit tolerances) through every kind of coupling; every prunable group of every zoo
model prunes to a valid model of the expected shapes; the knobs, the criteria, and the
cases where the pass must not fire."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwcc
from hwcc.errors import HwccError
from hwcc.ir import Graph, dtypes, onnx_io, workload
from hwcc.ir.transform import PassContext, get_pass
from hwcc.ir.verify import compare, random_feeds
from hwcc.passes.lib.channel_prune import prune_group, prune_groups
from hwcc.passes.lib.depgraph import analyze, prunable_groups
from hwcc.passes.prune_channels import kept_count, prune_k
from hwcc.testing import assert_equivalent

torch = pytest.importorskip("torch")
nn = torch.nn

RTOL, ATOL = 1e-5, 1e-5
# prunable groups of each zoo model, and all groups (prunable or not)
ZOO_GROUPS = {
    "lenet300": (2, 3),
    "lenet5": (3, 4),
    "alexnet": (2, 8),
    "googlenet": (55, 58),
    "mobilenet_v1": (14, 15),
    "mobilenet_v2": (25, 26),
    "resnet18": (12, 13),
    "squeezenet1_1": (25, 26),
    "tpu_mlp": (4, 5),
    "lstm_lm": (0, 1),
    "transformer_encoder": (2, 12),
    "lenet300-digits": (2, 3),
    "lenet5-digits": (3, 4),
    "mobilenet-digits": (6, 7),
    "resnet-digits": (5, 6),
    "vgg16": (15, 16),
}
ZOO = [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16" else n for n in ZOO_GROUPS]


def prune(graph: Graph, verify: bool = False, data=None, **knobs):
    ctx = PassContext(knobs={"prune_channels": knobs}, verify=verify, data=data)
    return get_pass("prune_channels")(graph, ctx)


def find_group(graph: Graph, producer: str):
    """The group whose producers include the node named ``/{producer}/...``."""
    for grp in analyze(graph).groups():
        if any(p.startswith(f"/{producer}/") for p in grp.producers):
            return grp
    raise AssertionError(f"no group with producer {producer}")


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


# ---------------------------------------------------------------------- torch models
def conv_bn(cin, cout, k=3, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.a1, self.a2 = conv_bn(8, 8), conv_bn(8, 8, relu=False)
        self.b1, self.b2 = conv_bn(8, 8), conv_bn(8, 8, relu=False)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.a2(self.a1(x)) + x)
        x = torch.relu(x + self.b2(self.b1(x)))
        return self.head(x)


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand, self.dw, self.project = (
            conv_bn(3, 12, 1),
            conv_bn(12, 12, 3, groups=12),
            conv_bn(12, 5, 1),
        )

    def forward(self, x):
        return self.project(self.dw(self.expand(x)))


class Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right, self.mix = conv_bn(3, 4), conv_bn(3, 6, 1), conv_bn(10, 3, 1)

    def forward(self, x):
        return self.mix(torch.cat([self.left(x), self.right(x)], dim=1))


class FlattenGemm(nn.Module):
    def __init__(self, reshape: bool):
        super().__init__()
        self.feat, self.fc, self.reshape = conv_bn(3, 6), nn.Linear(6 * 5 * 5, 7), reshape

    def forward(self, x):
        x = self.feat(x)
        return self.fc(x.reshape(2, 6 * 5 * 5) if self.reshape else torch.flatten(x, 1))


class SqueezeExcite(nn.Module):
    """conv -> x·s, s = sigmoid(conv(relu(conv(GAP x)))) (or the Linear form) -> conv."""

    def __init__(self, linear: bool):
        super().__init__()
        self.feat, self.out, self.linear = conv_bn(3, 8), conv_bn(8, 4, 1), linear
        self.pool = nn.AdaptiveAvgPool2d(1)
        if linear:
            self.reduce, self.expand = nn.Linear(8, 3), nn.Linear(3, 8)
        else:
            self.reduce, self.expand = nn.Conv2d(8, 3, 1), nn.Conv2d(3, 8, 1)

    def forward(self, x):
        x = self.feat(x)
        s = self.pool(x)
        if self.linear:
            s = nn.functional.hardsigmoid(self.expand(torch.relu(self.reduce(torch.flatten(s, 1)))))
            s = s.reshape(2, 8, 1, 1)
        else:
            s = torch.sigmoid(self.expand(torch.relu(self.reduce(s))))
        return self.out(x * s)


def randomize_bn(net):
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-1, 1)


class TokenMLP(nn.Module):
    """A transformer's feed-forward block on [N, T, D] tokens: MatMul + Add bias, GELU."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(torch.relu(h) * torch.sigmoid(h) + nn.functional.gelu(torch.relu(h)))


@torch.no_grad()
def silence(block, channels, extra=()):
    """Make ``channels`` of a block's output exactly 0. For a conv_bn block a zero filter
    and bias give 0 before BatchNormalization, which maps it to β − μ·γ/σ, so β and μ are
    zeroed too, and ReLU keeps 0 at 0; a Linear needs a zero row and bias. ``extra``
    layers (depthwise filters, the SE expand layer) get zero filters as well, so that
    every member's filter of the channel is zero."""
    conv, bn = (block, None) if isinstance(block, nn.Linear) else (block[0], block[1])
    for c in channels:
        for layer in (conv, *extra):
            layer.weight[c] = 0
            layer.bias[c] = 0
        if bn is not None:
            bn.bias[c] = 0
            bn.running_mean[c] = 0


def build(kind):
    """(module, producer name, [(block to silence, extra layers)], example input)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5)
    if kind == "residual":
        net = Residual()
        return net, "stem", [(net.stem, ()), (net.a2, ()), (net.b2, ())], x
    if kind == "depthwise":
        net = Depthwise()
        return net, "expand", [(net.expand, (net.dw[0],)), (net.dw, ())], x
    if kind == "concat":
        net = Branches()
        return net, "right", [(net.right, ())], x
    if kind in ("flatten", "reshape"):
        net = FlattenGemm(kind == "reshape")
        return net, "feat", [(net.feat, ())], x
    if kind == "matmul":
        net = TokenMLP()
        return net, "fc1", [(net.fc1, ())], torch.randn(2, 5, 8)
    net = SqueezeExcite(kind == "se_linear")
    return net, "feat", [(net.feat, (net.expand,))], x


CASES = ["residual", "depthwise", "concat", "flatten", "reshape", "se_conv", "se_linear", "matmul"]


@pytest.mark.parametrize("kind", CASES)
def test_removing_silent_channels_keeps_outputs(kind, export_torch):
    net, producer, blocks, x = build(kind)
    randomize_bn(net)
    zero = [1, 4]
    for block, extra in blocks:
        silence(block, zero, extra)
    g = export_torch(net, x)
    grp = find_group(g, producer)
    assert grp.prunable, grp.reason
    # the pass, told to remove 2 channels of the group, picks the silent ones by L2 norm
    result = prune(g, group=grp.id, k=2)
    assert result.modified and result.details["pruned"] == {
        grp.id: (grp.channels, grp.channels - 2)
    }
    assert_channels_removed(g, result.graph, grp, 2)
    assert_equivalent(g, result.graph, rtol=RTOL, atol=ATOL)
    # and removing the same channels by hand gives the same graph
    by_hand = prune_group(g, grp, [c for c in range(grp.channels) if c not in zero])
    assert_equivalent(result.graph, by_hand, rtol=0, atol=0, check_model=False)
    # removing the live channels instead changes the outputs: the test can fail
    live = prune_group(g, grp, zero)
    assert not compare(g, live, rtol=RTOL, atol=ATOL).passed


@pytest.mark.parametrize("kind", ["residual", "concat", "se_conv"])
def test_a_dynamic_batch_dim_does_not_stop_pruning(kind):
    import io
    import warnings

    net, producer, blocks, x = build(kind)
    randomize_bn(net)
    for block, extra in blocks:
        silence(block, [0], extra)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(),
            (x,),
            buf,
            dynamo=False,
            training=torch.onnx.TrainingMode.EVAL,
            do_constant_folding=False,
            input_names=["x0"],
            output_names=["y"],
            dynamic_axes={"x0": {0: "N"}, "y": {0: "N"}},
        )
    g = hwcc.load(onnx.load_from_string(buf.getvalue()), allow_dynamic=True)
    assert g.tensors["x0"].shape[0] == "N"
    grp = find_group(g, producer)
    after = prune_group(g, grp, range(1, grp.channels))
    feeds = {"x0": np.random.default_rng(0).normal(size=(3, *x.shape[1:])).astype(np.float32)}
    assert_equivalent(g, after, feeds, rtol=RTOL, atol=ATOL)


def test_structure_of_each_coupling(export_torch):
    """What shrinks, node by node, for the couplings of the differential test."""
    ops = {}
    for kind in CASES:
        net, producer, _, x = build(kind)
        g = export_torch(net, x)
        grp = find_group(g, producer)
        ops[kind] = (
            Counter(g.node(n).op_type for n in grp.producers),
            Counter(g.node(n).op_type for n in grp.consumers),
        )
    assert ops["residual"] == (Counter(Conv=3), Counter(Conv=3))  # stem, a2, b2 -> a1, b1, head
    assert ops["depthwise"] == (Counter(Conv=1), Counter(Conv=1))
    assert ops["concat"] == (Counter(Conv=1), Counter(Conv=1))
    assert ops["flatten"] == (Counter(Conv=1), Counter(Gemm=1))
    assert ops["reshape"] == (Counter(Conv=1), Counter(Gemm=1))
    assert ops["se_conv"] == (Counter(Conv=2), Counter(Conv=2))  # feat + expand -> reduce, out
    assert ops["se_linear"] == (Counter(Conv=1, Gemm=1), Counter(Conv=1, Gemm=1))
    assert ops["matmul"] == (Counter(MatMul=1), Counter(MatMul=1))


# ---------------------------------------------------------------------- the zoo
@pytest.mark.parametrize("name", ZOO)
def test_zoo_groups_each_lose_one_channel(name, report_line):
    """How many groups each zoo model has; then k = 1 in every prunable group at once:
    one valid model that runs with the expected shapes, every group's tensors one
    channel narrower (each group alone: the slow test below)."""
    g = hwcc.load(f"zoo:{name}")
    groups = analyze(g).groups()
    prunable = [x for x in groups if x.prunable]
    assert (len(prunable), len(groups)) == ZOO_GROUPS[name]
    assert len({x.id for x in groups}) == len(groups)  # ids are unique
    assert all(x.reason for x in groups if not x.prunable)
    report_line(f"prune_channels: {name}: {len(prunable)} prunable channel groups of {len(groups)}")
    if not prunable:
        result = prune(g, ratio=0.5)
        assert not result.modified and "no prunable channel group" in result.reason
        return
    after = prune_groups(g, {grp: range(1, grp.channels) for grp in prunable})
    assert_channels_removed(g, after, prunable[0], 1, *[(grp, 1) for grp in prunable[1:]])
    check_runs(g, after)


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_each_group_alone_loses_k_channels(name):
    g = hwcc.load(f"zoo:{name}")
    for grp in prunable_groups(g):
        k = max(1, grp.channels // 4)
        after = prune_group(g, grp, range(k, grp.channels))
        assert_channels_removed(g, after, grp, k)
        check_runs(g, after)


PROPERTY_MODELS = [
    "lenet300-digits",
    "lenet5-digits",
    "mobilenet-digits",
    "resnet-digits",
    "resnet18",
    "mobilenet_v2",
]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(PROPERTY_MODELS),
    pick=st.integers(0, 10**6),
    frac=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**16),
)
def test_property_random_group_random_k(model, pick, frac, seed):
    g = hwcc.load(f"zoo:{model}")
    groups = prunable_groups(g)
    grp = groups[pick % len(groups)]
    k = 1 + int(frac * (grp.channels - 1)) if grp.channels > 1 else 0
    k = min(k, grp.channels - 1)
    keep = np.sort(
        np.random.default_rng(seed).choice(grp.channels, grp.channels - k, replace=False)
    )
    after = prune_group(g, grp, keep)
    assert_channels_removed(g, after, grp, k)
    check_runs(g, after)


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
