"""finetune's training: it lowers the loss and raises accuracy, distillation moves the
student toward the teacher, pruned zeros (weights and channels) are kept exactly, the same
seed gives the same weights with no global state leaking, zero steps change nothing, the
write-back round trips through ONNX. (Its speed against plain torch is a bench section:
:mod:`bench.finetune_speed`.)

Torch runs on one thread (the ``one_thread`` fixture in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_graphs import ATOL, RTOL, ort_per_sample, zoo

from hwcc.ir import Graph, onnx_io
from hwcc.ir.transform import PassContext, get_pass
from hwcc.train.finetune import FinetuneResult, finetune
from hwcc.train.graph_module import to_torch, torch_outputs, write_back

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")


def accuracy(graph: Graph, x: np.ndarray, y: np.ndarray) -> float:
    return float((ort_per_sample(graph, x).argmax(1) == y).mean())


def perturbed(graph: Graph, scale: float, seed: int = 0) -> Graph:
    """A copy with Gaussian noise of ``scale`` times each initializer's std added."""
    out, rng = graph.copy(), np.random.default_rng(seed)
    for name, a in graph.initializers.items():
        out.add_initializer(
            name, (a + scale * a.std() * rng.standard_normal(a.shape)).astype(a.dtype)
        )
    return out


# ---------------------------------------------------------------------- training
def test_training_lowers_loss_and_raises_accuracy(digits, report_line):
    (x, y), (xt, yt) = digits
    noisy = perturbed(zoo("lenet5-digits"), 1.0)
    before = accuracy(noisy, xt, yt)
    result = finetune(noisy, x, y, steps=60, lr=0.01)
    after = accuracy(result.graph, xt, yt)
    assert isinstance(result, FinetuneResult) and result.steps == 60 and len(result.losses) == 60
    assert np.mean(result.losses[-10:]) < 0.25 * np.mean(result.losses[:10])
    assert after > before + 0.1 and after > 0.9
    report_line(
        f"finetune lenet5-digits (noise 1.0 std): test accuracy {before:.3f} -> {after:.3f} "
        f"in 60 steps, loss {np.mean(result.losses[:10]):.3f} -> {np.mean(result.losses[-10:]):.4f}"
    )


def _kl_and_agreement(student: Graph, teacher_out: np.ndarray, x: np.ndarray, t: float = 4.0):
    s = torch_outputs(student, x)[0]
    log_p = torch.log_softmax(torch.from_numpy(teacher_out) / t, 1)
    log_q = torch.log_softmax(torch.from_numpy(s) / t, 1)
    kl = float((log_p.exp() * (log_p - log_q)).sum(1).mean())
    return kl, float((s.argmax(1) == teacher_out.argmax(1)).mean())


def test_distillation_moves_student_toward_teacher(digits, report_line):
    (x, _), (xt, _) = digits
    teacher = zoo("lenet5-digits")
    student = perturbed(teacher, 1.0)
    t_out = torch_outputs(teacher, xt)[0]
    kl0, agree0 = _kl_and_agreement(student, t_out, xt)
    result = finetune(student, x, teacher=teacher, steps=60)
    kl1, agree1 = _kl_and_agreement(result.graph, t_out, xt)
    assert kl1 < 0.2 * kl0 and agree1 > agree0 + 0.1
    # precomputed teacher outputs are the same target as the teacher graph
    again = finetune(student, x, teacher=torch_outputs(teacher, x)[0], steps=60)
    assert _same_weights(again.graph, result.graph)
    report_line(
        f"distil lenet5-digits: KL(teacher||student) {kl0:.3f} -> {kl1:.4f}, "
        f"top-1 agreement {agree0:.3f} -> {agree1:.3f}"
    )


def _same_weights(a: Graph, b: Graph) -> bool:
    return all(np.array_equal(v, b.initializer(k)) for k, v in a.initializers.items())


def _assert_zero_pattern_kept(before: Graph, after: Graph) -> int:
    changed = 0
    for name, w in before.initializers.items():
        trained = after.initializer(name)
        assert trained.shape == w.shape and trained.dtype == w.dtype, name
        assert np.array_equal(trained == 0, w == 0), f"{name}: zero pattern changed"
        changed += int(not np.array_equal(trained, w))
    return changed


def test_weight_pruned_model_keeps_its_zeros(digits):
    (x, y), _ = digits
    ctx = PassContext(verify=False, knobs={"prune_weights": {"density": 0.1}})
    sparse = get_pass("prune_weights")(zoo("lenet5-digits"), ctx).graph
    weights = [
        sparse.initializer(n.inputs[1]) for n in sparse.nodes if n.op_type in ("Conv", "Gemm")
    ]
    assert all(np.count_nonzero(w) <= 0.11 * w.size for w in weights)
    for optimizer in ("sgd", "adam"):
        result = finetune(sparse, x, y, steps=15, optimizer=optimizer)
        assert _assert_zero_pattern_kept(sparse, result.graph) >= 4  # and it did train


def test_channel_pruned_model_keeps_its_zeros(digits):
    (x, y), (xt, _) = digits
    ctx = PassContext(verify=False, knobs={"prune_channels": {"ratio": 0.5}})
    original = zoo("resnet-digits")
    pruned = get_pass("prune_channels")(original, ctx).graph
    assert sum(a.size for a in pruned.initializers.values()) < sum(
        a.size for a in original.initializers.values()
    )
    # and structured zeros on top: a quarter of each convolution's filters, with their biases
    for node in pruned.find("Conv"):
        w = pruned.initializer(node.inputs[1]).copy()
        w[: len(w) // 4] = 0
        pruned.add_initializer(node.inputs[1], w)
    result = finetune(pruned, x, y, steps=15, optimizer="adam", lr=1e-2)
    assert _assert_zero_pattern_kept(pruned, result.graph) >= 4
    np.testing.assert_allclose(
        torch_outputs(result.graph, xt[:8])[0],
        ort_per_sample(result.graph, xt[:8]),
        rtol=RTOL,
        atol=ATOL,
    )


def test_same_seed_same_weights_and_no_global_state_leaks(digits):
    (x, y), _ = digits
    graph = perturbed(zoo("lenet300-digits"), 0.5)
    rng_state, deterministic = torch.get_rng_state(), torch.are_deterministic_algorithms_enabled()
    seen: list[tuple[int, float]] = []
    first = finetune(
        graph, x, y, steps=20, seed=0, progress=lambda step, loss: seen.append((step, loss))
    )
    assert seen == list(enumerate(first.losses, 1))
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    torch.manual_seed(123)  # the global seed plays no part
    second = finetune(graph, x, y, steps=20, seed=0)
    other = finetune(graph, x, y, steps=20, seed=1)
    assert first.losses == second.losses and _same_weights(first.graph, second.graph)
    assert not _same_weights(first.graph, other.graph)


def test_zero_steps_returns_the_graph_unchanged(digits):
    (x, y), _ = digits
    graph = zoo("lenet300-digits")
    result = finetune(graph, x, y, steps=0)
    assert result.steps == 0 and result.losses == [] and _same_weights(graph, result.graph)
    assert [n.op_type for n in result.graph.nodes] == [n.op_type for n in graph.nodes]


def test_write_back_round_trip_through_onnx(digits, tmp_path):
    (_, _), (xt, _) = digits
    graph = zoo("mobilenet-digits")
    module = to_torch(graph)
    kept = {n: a for n, a in graph.initializers.items()}
    with torch.no_grad():
        for p in module.onnx_parameters.values():
            p.mul_(1.1).add_(0.01)
    trained = write_back(module, graph)
    assert all(graph.initializer(n) is a for n, a in kept.items())  # the input graph is untouched
    frozen = [n for n in kept if n not in module.onnx_parameters]
    assert any("running_mean" in n for n in frozen)  # BatchNormalization statistics are constants
    assert all(trained.initializer(n) is kept[n] for n in frozen)
    for n, p in module.onnx_parameters.items():
        assert trained.initializer(n).dtype == np.float32
        assert np.array_equal(trained.initializer(n), p.detach().numpy())
    path = onnx_io.save(trained, tmp_path / "trained.onnx")
    ref = ort_per_sample(onnx_io.load(path), xt[:8])
    np.testing.assert_allclose(torch_outputs(module, xt[:8])[0], ref, rtol=RTOL, atol=ATOL)
    assert not np.allclose(ref, ort_per_sample(graph, xt[:8]), rtol=RTOL, atol=ATOL)


def _magnitude_model() -> Graph:
    """``y = sqrt((x·W)²) · V``: a magnitude, as an STFT front end computes one; a sample
    that is all zeros (silence) makes ``x·W`` zero, and its gradient meets sqrt at 0."""
    g = Graph("magnitude")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    g.add_input("x", 1, (8, 4))
    g.add_initializer("w", w)
    g.add_initializer("two", np.array(2.0, np.float32))
    g.add_initializer("v", rng.normal(size=(3, 2)).astype(np.float32))
    g.add_node("MatMul", ["x", "w"], ["z"])
    g.add_node("Pow", ["z", "two"], ["p"])
    g.add_node("Sqrt", ["p"], ["m"])
    g.add_node("MatMul", ["m", "v"], ["y"])
    g.outputs.append("y")
    onnx_io.infer_shapes(g)
    return g


def test_sqrt_at_zero_trains_without_nan():
    """d sqrt(u)/du at u = 0 is taken as 0, so a silent sample sends nothing back (it was
    ``0 · inf = nan`` in every step that drew one: every such step was lost)."""
    g = _magnitude_model()
    x = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    x[::4] = 0  # a quarter of the samples are silence
    target = np.random.default_rng(2).normal(size=(64, 2)).astype(np.float32)
    result = finetune(g, {"x": x}, None, teacher=target, steps=80, batch_size=8, seed=0, lr=0.01)
    assert result.skipped == 0 and result.steps == 80
    for name in ("w", "v"):
        assert np.isfinite(result.graph.initializer(name)).all(), name
    assert np.mean(result.losses[-8:]) < 0.8 * np.mean(result.losses[:8])  # it learns


def test_a_step_whose_loss_is_not_finite_is_skipped_not_applied():
    g = _magnitude_model()
    x = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    x[3] = np.nan  # one bad sample: the steps that draw it are skipped
    target = np.zeros((16, 2), np.float32)
    result = finetune(g, {"x": x}, None, teacher=target, steps=8, batch_size=4, seed=0)
    assert result.skipped == 2 and result.steps == 6  # two epochs, one bad batch each
    for name in ("w", "v"):
        assert np.isfinite(result.graph.initializer(name)).all(), name
