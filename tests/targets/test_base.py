"""The target contract: registry, TOML loading, host routing, batch scaling, errors."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hwcc
from hwcc.errors import HwccError
from hwcc.targets import base
from hwcc.targets.base import (
    Cost,
    CostContext,
    NotPrepared,
    Target,
    list_targets,
    load_target,
    register_family,
)


@register_family("test_counting")
class CountingTarget(Target):
    """1 ns per MAC and 1 pJ per MAC; runs Gemm only."""

    def supports(self, layer):
        return None if layer.op_type == "Gemm" else f"{layer.op_type} is not a Gemm"

    def cost_layer(self, layer, ctx):
        return Cost(layer.macs * 1e-9, layer.macs * 1e-12, {"macs": layer.macs})


@register_family("test_host")
class HostTarget(Target):
    """1 us per op of any kind."""

    def cost_layer(self, layer, ctx):
        return Cost(1e-6, 1e-9, note="host kernel")


def write_toml(tmp_path, name, family, host=None):
    path = tmp_path / f"{name}.toml"
    lines = [
        f'family = "{family}"',
        'description = "test"',
        'provenance = "model"',
        'validated_against = ["hand arithmetic"]',
    ]
    if host:
        lines.append(f'host = "{host}"')
    path.write_text("\n".join(lines) + "\n[params]\nx = 1\n")
    return path


def fc_relu_graph():
    w = numpy_helper.from_array(np.ones((4, 8), np.float32), "w")  # transB: [out, in]
    g = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
            helper.make_node("Relu", ["h"], ["y"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    return hwcc.load(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    )


def test_every_bundled_target_loads_and_says_where_its_numbers_come_from():
    targets = list_targets()
    names = {t.name for t in targets}
    assert {"cpu", "gpu", "tpu", "eie", "eyeriss"} <= names
    for t in targets:
        d = t.describe()
        assert d["provenance"] in ("measured", "model")
        assert d["validated_against"], (
            f"{t.name} names no published figure or measurement it was checked against"
        )


def test_unsupported_layers_run_on_the_host_and_are_counted_apart(tmp_path, monkeypatch):
    host = write_toml(tmp_path, "myhost", "test_host")
    monkeypatch.setattr("hwcc.targets.base._target_files", lambda: {"myhost": host})
    target = load_target(write_toml(tmp_path, "acc", "test_counting", host="myhost"))
    gc = target.cost(fc_relu_graph())
    fc, relu = gc.layer("fc"), gc.layer("relu")
    assert fc.on == "acc" and fc.cost.latency_s == pytest.approx(32e-9)  # 1·8·4 MACs at 1 ns
    assert relu.on == "myhost" and relu.cost.latency_s == pytest.approx(1e-6)
    assert relu.cost.note.startswith("Relu is not a Gemm")
    assert gc.host_latency_s == pytest.approx(1e-6)
    assert gc.latency_s == pytest.approx(1e-6 + 32e-9)
    assert gc.to_dict()["total"]["latency_s"] == pytest.approx(gc.latency_s)


def test_batch_scales_work_but_not_weights(tmp_path):
    target = load_target(write_toml(tmp_path, "acc", "test_counting"))
    graph = fc_relu_graph()
    graph.outputs[:] = ["h"]
    graph.eliminate_dead_code()
    one = target.cost(graph).layer("fc")
    four = target.cost(graph, CostContext(batch=4)).layer("fc")
    assert four.cost.latency_s == pytest.approx(4 * one.cost.latency_s)
    assert four.layer.weight_bytes == one.layer.weight_bytes
    with pytest.raises(HwccError, match="batch"):
        target.cost(graph, CostContext(batch=0))


def test_no_host_means_a_clear_error(tmp_path):
    target = load_target(write_toml(tmp_path, "acc", "test_counting"))
    with pytest.raises(HwccError, match="cannot run relu"):
        target.cost(fc_relu_graph())


def test_unknown_target_family_and_bad_toml(tmp_path):
    with pytest.raises(HwccError, match="known targets"):
        load_target("no-such-chip")
    with pytest.raises(HwccError, match="family"):
        load_target(write_toml(tmp_path, "x", "no_such_family"))
    bad = tmp_path / "bad.toml"
    bad.write_text("family = \n")
    with pytest.raises(HwccError, match="not valid TOML"):
        load_target(bad)


def test_a_layer_the_workload_view_cannot_read_is_never_priced_as_free(tmp_path, monkeypatch):
    w = numpy_helper.from_array(np.ones((4, 8), np.float32), "w")
    g = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1),
            helper.make_node("Frob", ["y"], ["z"], name="frob", domain="com.example"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
        initializer=[w],
    )
    graph = hwcc.load(
        helper.make_model(
            g,
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
            ir_version=10,
        )
    )

    @register_family("test_everything")
    class Everything(Target):
        def cost_layer(self, layer, ctx):
            return Cost(layer.macs * 1e-9, 0.0)

    with pytest.raises(HwccError, match="cannot price frob"):
        load_target(write_toml(tmp_path, "acc", "test_everything")).cost(graph)
    host = write_toml(tmp_path, "myhost", "test_host")
    monkeypatch.setattr("hwcc.targets.base._target_files", lambda: {"myhost": host})
    gc = load_target(write_toml(tmp_path, "acc2", "test_everything", host="myhost")).cost(graph)
    assert gc.layer("frob").on == "myhost" and "unknown op" in gc.layer("frob").cost.note


@register_family("test_measured_host")
class MeasuredHost(Target):
    """A host with a table: it prices only the layers it was prepared for."""

    def __init__(self, name, spec, source=None):
        super().__init__(name, spec, source)
        self.measured: list[list[str]] = []

    def prepare_layers(self, layers, ctx):
        self.measured.append([x.name for x in layers])

    def cost_layer(self, layer, ctx):
        if not any(layer.name in batch for batch in self.measured):
            raise NotPrepared(f"{layer.name} was not measured")
        return Cost(1e-6, 1e-9, note="looked up")


def test_prepare_readies_the_host_for_exactly_the_layers_it_will_run(tmp_path, monkeypatch):
    """The accelerator runs the Gemm and sends the Relu to its host: cost() alone is a
    lookup that misses; prepare() has the host measure the Relu, and only it; price() is
    prepare() then cost()."""
    host = write_toml(tmp_path, "myhost", "test_measured_host")
    monkeypatch.setattr("hwcc.targets.base._target_files", lambda: {"myhost": host})
    target = load_target(write_toml(tmp_path, "acc", "test_counting", host="myhost"))
    graph = fc_relu_graph()
    with pytest.raises(NotPrepared, match="relu was not measured"):
        target.cost(graph)
    target.prepare(graph)
    assert target.host_target.measured == [["relu"]]
    gc = target.cost(graph)
    assert gc.layer("relu").on == "myhost" and gc.layer("relu").cost.note.endswith("[looked up]")
    assert target.price(graph).to_dict() == gc.to_dict()
    assert target.host_target.measured == [["relu"], ["relu"]]  # the host knows what it lacks


def test_the_host_is_loaded_once_per_target(tmp_path, monkeypatch):
    host = write_toml(tmp_path, "myhost", "test_host")
    monkeypatch.setattr("hwcc.targets.base._target_files", lambda: {"myhost": host})
    target = load_target(write_toml(tmp_path, "acc", "test_counting", host="myhost"))
    loaded = []
    real = base.load_target
    monkeypatch.setattr(base, "load_target", lambda name: loaded.append(name) or real(name))
    for _ in range(3):
        target.price(fc_relu_graph())
    assert loaded == ["myhost"]
    assert target.host_target is target.host_target
