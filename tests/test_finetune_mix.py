"""finetune with labels and a teacher together, and its learning-rate schedules: the first
step's loss is the weighted sum computed by hand, each weight's end points reduce to the
single losses, and the rate holds and then decays as documented, at every step.

Torch runs on one thread (the ``one_thread`` fixture in tests/conftest.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from finetune_graphs import zoo

from hwcc.errors import HwccError
from hwcc.search.config import SearchConfig
from hwcc.train import finetune as ft
from hwcc.train.finetune import finetune
from hwcc.train.graph_module import torch_outputs

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_thread")

T = 4.0


def _by_hand(graph, x, y, teacher_out, alpha: float) -> float:
    """``(1 − α) · CE(s, y) + α · T² · KL(softmax(t/T) ‖ softmax(s/T))``, batch mean."""
    s = torch.from_numpy(torch_outputs(graph, x)[0]).double()
    t = torch.from_numpy(teacher_out).double()
    ce = torch.nn.functional.cross_entropy(s, torch.from_numpy(y).long())
    log_p, log_q = torch.log_softmax(t / T, 1), torch.log_softmax(s / T, 1)
    kl = (log_p.exp() * (log_p - log_q)).sum(1).mean() * T**2
    return float((1 - alpha) * ce + alpha * kl)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_first_loss_is_the_weighted_sum(digits, alpha):
    (x, y), _ = digits
    x, y = x[:16], y[:16]
    student, teacher = zoo("lenet300-digits"), zoo("lenet5-digits")
    t_out = torch_outputs(teacher, x)[0]
    got = finetune(student, x, y, teacher=t_out, alpha=alpha, steps=1, batch_size=16, lr=1e-6)
    assert got.losses[0] == pytest.approx(_by_hand(student, x, y, t_out, alpha), rel=1e-4)


def test_alpha_ends_reduce_to_the_single_losses(digits):
    (x, y), _ = digits
    x, y = x[:64], y[:64]
    graph, teacher = zoo("lenet300-digits"), zoo("lenet5-digits")
    kw = {"steps": 5, "batch_size": 16, "optimizer": "adam", "seed": 3, "lr": 1e-3}
    labels_only = finetune(graph, x, y, **kw)
    with_teacher_at_0 = finetune(graph, x, y, teacher=teacher, alpha=0.0, **kw)
    teacher_only = finetune(graph, x, teacher=teacher, **kw)
    with_labels_at_1 = finetune(graph, x, y, teacher=teacher, alpha=1.0, **kw)
    np.testing.assert_allclose(labels_only.losses, with_teacher_at_0.losses, rtol=1e-6)
    np.testing.assert_allclose(teacher_only.losses, with_labels_at_1.losses, rtol=1e-6)


@pytest.mark.parametrize(
    "schedule, steps, want",
    [
        ("constant", 4, [1, 1, 1, 1]),
        (
            "cosine",
            4,
            [1, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2],
        ),
        # 10 steps: held for the first 7, then a cosine over the last 3
        ("hold-cosine", 10, [1] * 7 + [1, 0.75, 0.25]),
        ("hold-cosine", 1, [1]),
    ],
)
def test_schedule_factors(schedule, steps, want):
    decay = ft._decay(schedule, steps)
    assert [decay(t) for t in range(steps)] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "hold-cosine"])
def test_each_step_uses_its_scheduled_rate(digits, monkeypatch, schedule):
    (x, y), _ = digits
    used: list[float] = []
    make = ft._optimizer

    def recording(name, params, lr):
        opt = make(name, params, lr)
        step = opt.step
        opt.step = lambda *a, **k: (used.append(opt.param_groups[0]["lr"]), step(*a, **k))[1]
        return opt

    monkeypatch.setattr(ft, "_optimizer", recording)
    finetune(zoo("lenet300-digits"), x, y, steps=10, lr=0.02, schedule=schedule)
    decay = ft._decay(schedule, 10)
    assert used == pytest.approx([0.02 * decay(t) for t in range(10)], rel=1e-12)


def test_bad_mix_settings_are_clear_errors(digits):
    (x, y), _ = digits
    graph = zoo("lenet300-digits")
    with pytest.raises(HwccError, match="alpha must lie in"):
        finetune(graph, x, y, teacher=graph, alpha=1.5, steps=1)
    with pytest.raises(HwccError, match="unknown learning-rate schedule 'linear'"):
        finetune(graph, x, y, steps=1, schedule="linear")
    with pytest.raises(HwccError, match="distill_weight=-0.1"):
        SearchConfig(distill_weight=-0.1)
