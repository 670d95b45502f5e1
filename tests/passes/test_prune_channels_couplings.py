"""prune_channels through every kind of coupling: removing all-zero channels leaves the
outputs unchanged (onnxruntime, explicit tolerances) in residual, depthwise, concat,
flatten, reshape, squeeze-excite and token-MLP torch models, also with a dynamic batch
dim; and what shrinks, node by node, for each coupling. The checks are in
tests/passes/channel_checks.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from channel_checks import ATOL, RTOL, assert_channels_removed, prune

import hwcc
from hwcc.ir import Graph
from hwcc.ir.pass_manager import PassManager
from hwcc.ir.specialise import specialise
from hwcc.ir.transform import PassContext
from hwcc.ir.verify import compare
from hwcc.passes.lib.channel_prune import prune_group
from hwcc.passes.lib.depgraph import analyze
from hwcc.testing import assert_equivalent

torch = pytest.importorskip("torch")
nn = torch.nn


def find_group(graph: Graph, producer: str):
    """The group whose producers include the node named ``/{producer}/...``."""
    for grp in analyze(graph).groups():
        if any(p.startswith(f"/{producer}/") for p in grp.producers):
            return grp
    raise AssertionError(f"no group with producer {producer}")


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


class Neck(nn.Module):
    """A detector neck: a feature map upsampled (by scale, or to a size) and fused with a
    finer one, as FPN and YOLO necks do with Resize and Concat."""

    def __init__(self, by_size: bool):
        super().__init__()
        self.by_size = by_size
        self.coarse, self.fine = conv_bn(3, 8, 3), conv_bn(3, 4, 3)
        self.head = nn.Conv2d(12, 4, 1)

    def forward(self, x):
        c = self.coarse(x[:, :, ::2, ::2])
        if self.by_size:
            up = nn.functional.interpolate(c, size=tuple(x.shape[2:]), mode="nearest")
        else:
            up = nn.functional.interpolate(c, scale_factor=2.0, mode="nearest")
        return self.head(torch.cat([up, self.fine(x)], 1))


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
    if kind in ("resize_scale", "resize_size"):
        net = Neck(kind == "resize_size")
        return net, "coarse", [(net.coarse, ())], torch.randn(2, 3, 6, 6)
    if kind == "matmul":
        net = TokenMLP()
        return net, "fc1", [(net.fc1, ())], torch.randn(2, 5, 8)
    net = SqueezeExcite(kind == "se_linear")
    return net, "feat", [(net.feat, (net.expand,))], x


CASES = [
    "residual",
    "depthwise",
    "concat",
    "flatten",
    "reshape",
    "se_conv",
    "se_linear",
    "matmul",
    "resize_scale",
    "resize_size",
]


@pytest.mark.parametrize("kind", CASES)
def test_removing_silent_channels_keeps_outputs(kind, export_torch):
    net, producer, blocks, x = build(kind)
    randomize_bn(net)
    zero = [1, 4]
    for block, extra in blocks:
        silence(block, zero, extra)
    g = export_torch(net, x)
    if kind.startswith("resize"):  # the exporter computes the scales and sizes: fold them,
        g = specialise(g).graph  # as every compile does
        g = PassManager(["fold_constants", "eliminate_dead"], PassContext()).run(g).graph
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


def test_a_resize_that_scales_the_channels_blocks_them():
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    scales = numpy_helper.from_array(np.array([1, 2, 1, 1], np.float32), "scales")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="nearest"),
    ]
    x = helper.make_tensor_value_info("x", 1, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", 1, [1, 8, 4, 4])
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], [w, scales]),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    (grp,) = analyze(hwcc.load(model)).groups()
    assert not grp.prunable and "scales the channel axis" in grp.reason
