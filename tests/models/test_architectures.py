"""Zoo architectures: MAC and parameter counts against the papers, ONNX export, cache."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from hwcc import models
from hwcc.models import onnx_export
from hwcc.models.registry import get_spec


def count_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """MACs of Conv2d (N*M*P*Q*C/groups*R*S) and Linear (rows*in*out) layers, by hooks."""
    macs = collections.Counter()

    def hook(layer, args, out):
        if isinstance(layer, nn.Conv2d):
            n, m, p, q = out.shape
            r, s = layer.kernel_size
            macs["conv"] += n * m * p * q * (layer.in_channels // layer.groups) * r * s
        else:
            rows = args[0].numel() // layer.in_features
            macs["linear"] += rows * layer.in_features * layer.out_features

    handles = [
        layer.register_forward_hook(hook)
        for layer in module.modules()
        if isinstance(layer, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        module(*inputs)
    for handle in handles:
        handle.remove()
    return {"conv": macs["conv"], "linear": macs["linear"], "total": macs["conv"] + macs["linear"]}


def macs_of(name: str) -> dict[str, int]:
    """Counts on the meta device: shapes only, no weight init or arithmetic."""
    with torch.device("meta"):
        module = get_spec(name).builder().eval()
    inputs = tuple(t.to("meta") for t in models.example_inputs(name))
    return count_macs(module, inputs)


# Published multiply-accumulates at batch 1 (the papers' input sizes).
PUBLISHED_MACS = {
    "alexnet": 724e6,  # Krizhevsky et al. 2012 / Eyeriss: 724 M total
    "vgg16": 15.5e9,  # Simonyan & Zisserman 2015
    "googlenet": 1586e6,  # Szegedy et al. 2015, sum of Table 1's "ops" column
    "resnet18": 1.81e9,  # He et al. 2016, Table 1 ("1.8 x 10^9 FLOPs")
    "mobilenet_v1": 569e6,  # Howard et al. 2017, Table 8
    "mobilenet_v2": 300e6,  # Sandler et al. 2018, Table 4
    "lenet300": 266.2e3,  # 784*300 + 300*100 + 100*10
    "lenet5": 2.293e6,  # Caffe LeNet-5
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS))
def test_macs_match_published(name):
    total = macs_of(name)["total"]
    assert total == pytest.approx(PUBLISHED_MACS[name], rel=0.02)


def test_lenet5_digits_is_compute_heavy():
    # Enough MACs that at batch 1 compute, not per-node overhead, dominates CPU latency.
    assert macs_of("lenet5-digits")["total"] >= 1.5e6


def test_alexnet_conv_macs():
    macs = macs_of("alexnet")
    assert macs["conv"] == pytest.approx(666e6, rel=0.02)
    assert macs["total"] == pytest.approx(724e6, rel=0.02)


# GoogLeNet Table 1 "ops" per stage, in M. Row 5a lists 54 M, but its own filter counts
# (256, 160, 320, 32, 128, 128 on 7x7x832) give 51.1 M, so that row alone is checked at 6 %.
GOOGLENET_TABLE1 = {
    "stem.0": (118, 0.02), "stem.3+stem.4": (360, 0.02),
    "inception.0": (128, 0.02), "inception.1": (304, 0.02), "inception.3": (73, 0.02),
    "inception.4": (88, 0.02), "inception.5": (100, 0.02), "inception.6": (119, 0.02),
    "inception.7": (170, 0.02), "inception.9": (54, 0.06), "inception.10": (71, 0.02),
}  # fmt: skip


def test_googlenet_stages_match_table1():
    with torch.device("meta"):
        module = get_spec("googlenet").builder().eval()
    per_stage = collections.Counter()
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Conv2d):
            stage = ".".join(name.split(".")[:2])
            layer.register_forward_hook(
                lambda mod, args, out, stage=stage: per_stage.update(
                    {
                        stage: out.numel()
                        * mod.in_channels
                        // mod.groups
                        * mod.kernel_size[0]
                        * mod.kernel_size[1]
                    }
                )
            )
    with torch.no_grad():
        module(models.example_inputs("googlenet")[0].to("meta"))
    for stages, (published, rel) in GOOGLENET_TABLE1.items():
        measured = sum(per_stage[s] for s in stages.split("+"))
        assert measured == pytest.approx(published * 1e6, rel=rel), stages


# Published parameter counts (weights + biases).
PUBLISHED_PARAMS = {
    "alexnet": 60.97e6,
    "vgg16": 138.36e6,
    "resnet18": 11.69e6,
    "mobilenet_v1": 4.2e6,
    "mobilenet_v2": 3.47e6,
    "squeezenet1_1": 1.235e6,
    "lenet300": 266.6e3,
    "lenet5": 431e3,
    "tpu_mlp": 21.0e6,
}


def test_param_counts_match_published():
    params = {e.name: e.params for e in models.list_models()}
    for name, published in PUBLISHED_PARAMS.items():
        assert params[name] == pytest.approx(published, rel=0.02), name


def test_alexnet_layers_are_the_papers():
    convs = [m for m in models.build_torch("alexnet").modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert (convs[0].kernel_size, convs[0].stride, convs[0].padding) == ((11, 11), (4, 4), (0, 0))


def test_build_is_seeded():
    a = models.build_torch("lenet5").state_dict()
    b = models.build_torch("lenet5").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    before = torch.rand(1)
    torch.manual_seed(123)
    models.build_torch("lenet300")
    assert not torch.equal(torch.rand(1), before)  # global RNG untouched by the build


@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory):
    """One export cache for this module's export tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        yield


EXPECTED_OUTPUT = {
    "lenet300": (1, 10),
    "lenet5": (1, 10),
    "alexnet": (1, 1000),
    "vgg16": (1, 1000),
    "googlenet": (1, 1000),
    "squeezenet1_1": (1, 1000),
    "mobilenet_v1": (1, 1000),
    "mobilenet_v2": (1, 1000),
    "resnet18": (1, 1000),
    "tpu_mlp": (1, 2048),
    "lstm_lm": (1, 35, 10000),
    "transformer_encoder": (1, 32, 128),
}


def _check_export(name: str) -> onnx.ModelProto:
    spec = get_spec(name)
    path = models.model_path(name)
    proto = onnx.load(str(path))
    graph = proto.graph
    assert proto.opset_import[0].version == onnx_export.OPSET
    assert [i.name for i in graph.input] == list(spec.input_shapes)
    assert [o.name for o in graph.output] == ["output"]
    for value in graph.input:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        assert tuple(dims) == spec.input_shapes[value.name]  # fixed, no dim_param
    weights = {t.name for t in graph.initializer}
    used = {x for node in graph.node for x in node.input}
    assert weights <= used, "dangling initializers"
    assert not [n for n in graph.node if n.op_type == "Identity"]

    inputs = models.example_inputs(name)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(graph.input, inputs)}
    (result,) = session.run(None, feeds)
    assert result.shape == EXPECTED_OUTPUT[name]
    with torch.no_grad():
        expected = models.build_torch(name)(*inputs).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-3, atol=1e-4)
    return proto


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n == "alexnet" else n  # 61 M weights: 7 s
        for n in sorted(set(EXPECTED_OUTPUT) - {"vgg16"})
    ],
)
def test_export_runs_in_onnxruntime(name, zoo_cache):
    _check_export(name)


def test_every_architecture_is_covered():
    architectures = {e.name for e in models.list_models() if e.kind == "architecture"}
    assert architectures == set(EXPECTED_OUTPUT)


@pytest.mark.slow
def test_vgg16_export(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _check_export("vgg16")


def test_op_spelling(zoo_cache):
    def ops(name):
        graph = onnx.load(str(models.model_path(name))).graph
        return collections.Counter(n.op_type for n in graph.node)

    lstm = ops("lstm_lm")
    assert lstm["LSTM"] == 2 and lstm["Gather"] == 1 and "Shape" not in lstm
    transformer = ops("transformer_encoder")
    assert transformer["Softmax"] == 2 and transformer["LayerNormalization"] == 4
    assert transformer["MatMul"] >= 2 * 6  # 4 projections + 2 attention products + ...
    assert ops("alexnet")["LRN"] == 2 and ops("googlenet")["LRN"] == 2
    assert ops("resnet18")["Add"] == 8 and "BatchNormalization" not in ops("resnet18")


def test_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = models.model_path("lenet5")
    assert first.parent == tmp_path / "hwcc" / "zoo"
    assert first.name.startswith("lenet5-") and first.suffix == ".onnx"
    mtime = first.stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: calls.append(a))
    second = models.model_path("lenet5")
    assert second == first and second.stat().st_mtime_ns == mtime and not calls
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp files left


def test_new_export_replaces_stale_versions(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "hwcc" / "zoo"
    folder.mkdir(parents=True)
    stale = folder / "lenet300-0123456789ab.onnx"
    others = [folder / "lenet300x-0123456789ab.onnx", folder / "notes.onnx"]
    for path in [stale, *others]:
        path.write_bytes(b"old")
    current = models.model_path("lenet300")
    assert not stale.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [current.name] + [p.name for p in others]
    )


def test_cache_key_changes_with_definition_and_torch(monkeypatch):
    spec = get_spec("resnet18")
    key = onnx_export.definition_hash(spec)
    assert len(key) == 12
    assert onnx_export.definition_hash(get_spec("mobilenet_v2")) != key
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert onnx_export.definition_hash(spec) != key


def test_cache_key_covers_shared_blocks():
    # alexnet's definition uses layers.LRN; resnet-digits uses arch_mobile's blocks.
    assert "hwcc.models.layers" in onnx_export._definition_modules(get_spec("alexnet"))
    assert "hwcc.models.arch_mobile" in onnx_export._definition_modules(get_spec("resnet-digits"))
