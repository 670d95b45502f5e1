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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from hwcc.data.activations import split_batches
from hwcc.data.evaluate import Dataset
from hwcc.ir import Graph
from hwcc.ir.verify import Session
from hwcc.ir.workload import analyze
from hwcc.search.config import SearchConfig

__all__ = [
    "LONG_TERM_CAP_STEPS",
    "LONG_TERM_EPOCHS",
    "LONG_TERM_MAX",
    "LONG_TERM_MIN",
    "finetuner",
    "long_term_steps",
    "sample_macs",
    "sized",
    "step_batch",
]

LONG_TERM_EPOCHS = 6
LONG_TERM_MIN = 200
LONG_TERM_MAX = 2000
LONG_TERM_CAP_STEPS = 400


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
    """``config`` with ``long_term_steps`` sized to ``tune`` where it is None."""
    if config.long_term_steps is not None:
        return config
    per_sample = sample_macs(src, tune)
    batch = step_batch(config, per_sample)
    steps = long_term_steps(tune.layout.samples, batch, config.step_macs, per_sample)
    return dataclasses.replace(config, long_term_steps=steps)


def finetuner(
    src: Graph, tune: Dataset, config: SearchConfig, distill: str | None = None
) -> Callable[[Graph, int, int], Graph]:
    """``(graph, steps, seed) -> graph`` fine-tuned on ``tune``, distilled from the input's
    outputs (beside any labels, at ``config.distill_weight``). An op the fine-tuner cannot
    run fails now, not mid-search."""
    if config.short_term_steps <= 0 and not config.long_term_steps:
        return lambda g, steps, seed: g
    from hwcc.train.finetune import finetune  # torch is heavy: imported only to fine-tune
    from hwcc.train.graph_module import to_torch  # torch is heavy: imported only to fine-tune

    to_torch(src)
    alpha = config.distill_weight if tune.labels is not None else 1.0
    teacher = None if alpha == 0 else _outputs(src, tune.inputs)
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
