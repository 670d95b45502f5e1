"""The compile's fine-tuning: the batch a step takes, the long-term fine-tune's length
sized to the data, and the ``(graph, steps, seed) -> graph`` hook the search calls.

**The long-term fine-tune** (after the loop, and for a recovery before the accuracy floor
would stop the search) runs ``SearchConfig.long_term_steps`` steps, or, when that is None,
a length sized to the fine-tune data::

    steps = clamp(⌊E · S / B⌋, LONG_TERM_MIN, LONG_TERM_MAX),   E = LONG_TERM_EPOCHS

for ``S`` samples at ``B`` samples a step, and no more than the forward multiply-
accumulates of ``LONG_TERM_CAP_STEPS`` steps at the ``step_macs`` cap, so that a heavy
model's long fine-tune stays a few minutes here (at the cap a step takes about half a
second). Six epochs, because recovery kept growing up to about there: resnet-glyphs cut
to half its width (10 % before fine-tuning) reached 37.9 % after 200 steps of 32 on its
4000 training glyphs, 69.6 % after three epochs (375 steps), 86.4 % after six (750) and
89.7 % after twelve (1500); mobilenet-glyphs 79.7 % after six (the glyphs' test fonts,
labels and the input model as teacher, Adam at 1e-3, :func:`hwcc.train.finetune.finetune`).

**How many proposals an iteration fine-tunes** (``SearchConfig.finetune_top``, when None):
the most promising by their accuracy before fine-tuning, as many as cost no more than
``FINETUNE_TOP`` fine-tunes at half the ``step_macs`` cap, ``HEAVY_TOP`` to
``FINETUNE_TOP`` of them::

    top = clamp(⌊FINETUNE_TOP · (step_macs / 2) / (B · m)⌋, HEAVY_TOP, FINETUNE_TOP)

for a step of ``B`` samples of ``m`` forward MACs each: four for a model whose step costs
up to half the cap, two for one at the cap. In the 70 iterations of 11 practice compiles
that fine-tuned four (eight models of ``bench.practice``, cpu 70 %), the proposal kept
was the first of that order in 55, the second in 14 and the third in one: on a heavy
model the third and fourth cost half of each iteration's fine-tuning for one pick in 70.

**The learning rate** of a fine-tune that distils the input model alone (no labels, no
``lr`` given) is checked on the input before the search (:func:`probed`): the unchanged
model, fine-tuned ``PROBE_STEPS`` steps towards itself at the default rate, must still
agree with itself at ``PROBE_FLOOR`` on the fine-tune data (its first 64 samples), else
the rate is cut tenfold and tried again, ``PROBE_CUTS`` times at most, and no further once
a cut gains nothing (the larger rate is kept: a sample that flips at any rate, a decision
on the edge, is not the rate's doing; smart-turn kept 98.4 % at both 1e-6 and 1e-7). At
its minimum the loss is flat, so a rate that moves the model there is noise the search
would pay for in every proposal. It is the network's sharpness that sets the rate: 10
Adam steps at 1e-4 kept the PP-OCR classifier and the orientation classifier at 100 %
agreement with themselves, and took the PP-OCRv4 recogniser to 86.7 % (1e-5: 96.3 %, 1e-6: 99.6 %);
there a step of 1e-6 along the gradient raised the gradient's norm from 0.0017 to 0.21,
a curvature of about 2e5, where SGD is stable only below 2 / 2e5 = 1e-5.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from hwcc.data.activations import split_batches
from hwcc.data.evaluate import Dataset
from hwcc.data.metrics import Metric
from hwcc.ir import Graph
from hwcc.ir.verify import Session
from hwcc.ir.workload import analyze
from hwcc.search.config import FINETUNE_TOP, HEAVY_TOP, SearchConfig

__all__ = [
    "finetune_top",
    "LONG_TERM_CAP_STEPS",
    "LONG_TERM_EPOCHS",
    "LONG_TERM_MAX",
    "LONG_TERM_MIN",
    "PROBE_CUTS",
    "PROBE_FLOOR",
    "PROBE_STEPS",
    "finetuner",
    "long_term_steps",
    "probed",
    "sample_macs",
    "teacher_outputs",
    "sized",
    "step_batch",
]

LONG_TERM_EPOCHS = 6
LONG_TERM_MIN = 200
LONG_TERM_MAX = 2000
LONG_TERM_CAP_STEPS = 400
PROBE_STEPS = 10
PROBE_FLOOR = 0.99
PROBE_CUTS = 3


def sample_macs(src: Graph, tune: Dataset) -> float:
    """Forward multiply-accumulates of one sample of ``tune`` through ``src``."""
    return analyze(src).macs / max(tune.layout.samples_per_run, 1)


def step_batch(config: SearchConfig, per_sample: float) -> int:
    """Samples per fine-tune step: ``config.batch_size``, fewer for a model whose samples
    (``per_sample`` MACs each) cost so much that the batch would pass ``config.step_macs``."""
    if not config.step_macs:
        return config.batch_size
    return max(1, min(config.batch_size, int(config.step_macs // max(per_sample, 1))))


def long_term_steps(samples: int, batch: int, step_macs: float, sample_macs: float) -> int:
    """The long-term fine-tune's steps for ``samples`` fine-tune samples at ``batch`` a
    step, each sample costing ``sample_macs`` forward MACs (module docstring)."""
    epoch = max(1, samples // max(batch, 1))
    steps = min(max(LONG_TERM_EPOCHS * epoch, LONG_TERM_MIN), LONG_TERM_MAX)
    if step_macs and sample_macs > 0:
        affordable = int(LONG_TERM_CAP_STEPS * step_macs // (batch * sample_macs))
        steps = min(steps, max(affordable, 1))
    return steps


def sized(config: SearchConfig, src: Graph, tune: Dataset) -> SearchConfig:
    """``config`` with ``long_term_steps`` sized to ``tune`` and ``finetune_top`` to the
    model's step where they are None (module docstring)."""
    per_sample = sample_macs(src, tune)
    batch = step_batch(config, per_sample)
    if config.long_term_steps is None:
        steps = long_term_steps(tune.layout.samples, batch, config.step_macs, per_sample)
        config = dataclasses.replace(config, long_term_steps=steps)
    if config.finetune_top is None:
        config = dataclasses.replace(config, finetune_top=finetune_top(config, batch * per_sample))
    return config


def finetune_top(config: SearchConfig, step: float) -> int:
    """Proposals an iteration fine-tunes for a step of ``step`` forward MACs (module
    docstring); :data:`FINETUNE_TOP` without a cap."""
    if not config.step_macs or step <= 0:
        return FINETUNE_TOP
    fit = int(FINETUNE_TOP * config.step_macs / 2 // step)
    return min(max(fit, HEAVY_TOP), FINETUNE_TOP)


def probed(
    config: SearchConfig, src: Graph, tune: Dataset, teacher: np.ndarray | None, metric: Metric
) -> tuple[SearchConfig, str | None]:
    """``(config, notice)``: ``config`` with ``lr`` set where the fine-tune distils the
    input alone and no ``lr`` was given, checked on the input (module docstring); the
    notice says what was cut, and why, or that no rate passed. ``teacher``: the input's
    outputs on ``tune`` (:func:`teacher_outputs`); ``metric`` judges agreement."""
    if config.lr is not None or tune.labels is not None or teacher is None or not _tunes(config):
        return config, None
    from hwcc.train.finetune import default_lr, finetune  # torch: imported only to fine-tune

    probe = tune.head(64)
    batch = step_batch(config, sample_macs(src, tune))
    lr = first = default_lr(config.optimizer, labels=False)
    kept: list[str] = []
    best, stalled = -1.0, False
    for _ in range(PROBE_CUTS + 1):
        moved = finetune(
            src,
            tune.inputs,
            teacher=teacher,
            steps=PROBE_STEPS,
            lr=lr,
            batch_size=batch,
            seed=config.seed,
            optimizer=config.optimizer,
            schedule="constant",
        ).graph
        out = _outputs(moved, probe)
        agreement = float(metric(out, teacher[: len(out)], None))
        kept.append(f"{agreement:.1%} at {_rate(lr)}")
        if agreement >= PROBE_FLOOR:
            break
        if agreement <= best:  # the cut gained nothing: what is left is not the rate's doing
            lr, agreement, stalled = lr * 10, best, True
            break
        best = agreement
        lr /= 10
    else:
        lr *= 10
    config = dataclasses.replace(config, lr=lr)
    tried = (
        f"{PROBE_STEPS} {config.optimizer} steps towards its own outputs left the unchanged "
        f"model agreeing with itself on {', '.join(kept)}"
    )
    if stalled:
        return config, (
            f"fine-tuning moves this model off itself at any rate ({tried}): the search "
            f"fine-tunes at {_rate(lr)}, below which a smaller rate kept no more; its "
            "fine-tunes may cost fidelity (give --lr to choose the rate)"
        )
    if agreement < PROBE_FLOOR:
        return config, (
            f"no learning rate tried keeps the model itself ({tried}): the search fine-tunes "
            f"at {_rate(lr)}, and its fine-tunes may cost fidelity; give --lr to choose the rate"
        )
    if lr == first:
        return config, None
    return config, (
        f"the default learning rate moves this model off itself ({tried}): the search "
        f"fine-tunes at {_rate(lr)}"
    )


def _rate(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def teacher_outputs(src: Graph, tune: Dataset, config: SearchConfig) -> np.ndarray | None:
    """The input's first output on ``tune``, what the fine-tunes distil; None where they
    do not (no fine-tuning, or labels alone)."""
    return _outputs(src, tune.inputs) if _alpha(config, tune) and _tunes(config) else None


def _alpha(config: SearchConfig, tune: Dataset) -> float:
    """The teacher's weight in the fine-tune loss: ``distill_weight`` beside labels, else 1."""
    return config.distill_weight if tune.labels is not None else 1.0


def _tunes(config: SearchConfig) -> bool:
    return config.short_term_steps > 0 or bool(config.long_term_steps)


def finetuner(
    src: Graph,
    tune: Dataset,
    config: SearchConfig,
    distill: str | None = None,
    teacher: np.ndarray | None = None,
) -> Callable[[Graph, int, int], Graph]:
    """``(graph, steps, seed) -> graph`` fine-tuned on ``tune``, distilled from the input's
    outputs (beside any labels, at ``config.distill_weight``; ``teacher``: those outputs,
    when already computed). An op the fine-tuner cannot run fails now, not mid-search."""
    if not _tunes(config):
        return lambda g, steps, seed: g
    from hwcc.train.finetune import finetune  # torch is heavy: imported only to fine-tune
    from hwcc.train.graph_module import to_torch  # torch is heavy: imported only to fine-tune

    to_torch(src)
    alpha = _alpha(config, tune)
    if teacher is None:
        teacher = teacher_outputs(src, tune, config)
    batch = step_batch(config, sample_macs(src, tune))

    def run(g: Graph, steps: int, seed: int) -> Graph:
        if steps <= 0:
            return g
        return finetune(
            g,
            tune.inputs,
            tune.labels,
            teacher=teacher,
            steps=steps,
            lr=config.lr,
            batch_size=batch,
            seed=seed,
            optimizer=config.optimizer,
            distill=distill,
            alpha=alpha,
        ).graph

    return run


def _outputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    s = Session(graph)
    return np.concatenate([s.run(f)[0] for f in split_batches(graph, inputs)])
