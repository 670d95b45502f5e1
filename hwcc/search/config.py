"""The search's options: one frozen object, recorded whole in every artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hwcc.errors import HwccError
from hwcc.ir.transform import search_passes
from hwcc.passes.lib.importance import CRITERIA

__all__ = ["FINETUNE_TOP", "HEAVY_TOP", "SearchConfig"]


def _default_passes() -> tuple[str, ...]:
    return tuple(search_passes(default_only=True))


DEFAULT_ACCURACY_DROP = 0.05  # five points: the fidelity a deployment would still accept


FINETUNE_TOP = 4
"""Proposals an iteration fine-tunes, at most (:mod:`hwcc.search.finetuning`)."""
HEAVY_TOP = 2
"""... at least, however heavy a fine-tune step."""


@dataclass(frozen=True)
class SearchConfig:
    """Options of the search; every one is recorded in the artifact.

    Attributes:
        passes: the passes that propose changes (default: the passes that declare
            ``search_default``, see :func:`hwcc.ir.transform.search_passes`).
        initial_reduction: ``r0``, the first step as a fraction of ``R0``.
        decay: ``d``, each step is ``d`` times the previous one.
        max_iterations: the most iterations.
        max_units: propose for at most this many units per iteration (0: all).
        max_step_fraction: a unit may take at most this share of its steps (smallest first)
            in one iteration: 0.5 removes at most half a layer's channels at once.
        finetune_top: fine-tune only this many of each iteration's proposals, the most
            promising by their accuracy before fine-tuning (0: every proposal, as NetAdapt);
            None: sized to the model (:func:`hwcc.search.finetuning.sized`): 4, down to 2
            as a fine-tune step's cost nears the ``step_macs`` cap.
        short_term_steps: fine-tune steps for each proposal.
        long_term_steps: fine-tune steps after the loop (and for a recovery; a share of
            them after a measured miss, :func:`hwcc.search.run.long_term_steps_now`);
            None: sized to the fine-tune data, six epochs within bounds
            (:mod:`hwcc.search.finetuning`).
        lr: fine-tune learning rate (None: the fine-tuner's default for the optimizer, ten
            times lower when distilling from the input model than when training to labels).
        optimizer: ``adam`` (default: it recovered heavily pruned proposals where SGD at
            0.01 diverged, e.g. resnet-digits' stem halved: 77 % against 10 % after 30 steps)
            or ``sgd``.
        distill_weight: with labelled data, the weight ``α`` of distillation from the input
            model in the fine-tune loss, the labels' cross-entropy weighing ``1 − α``
            (:func:`hwcc.train.finetune.finetune`; 0: labels alone). Without labels the
            input model is the only teacher.
        batch_size: fine-tune batch size, at most.
        step_macs: forward multiply-accumulates one fine-tune step may cost (0: no cap):
            the batch shrinks for a heavy model, 32 samples of a 0.15 GMAC classifier but
            1 of a 3.6 GMAC transformer, so that a proposal's fine-tune costs about the
            same whatever the model (a step of 5e9 MACs takes about half a second here).
        max_accuracy_drop: stop before accuracy falls more than this below the input
            model's (a fraction, 0.01 = one point); default :data:`DEFAULT_ACCURACY_DROP`
            (a compile that met its budget by answering one class for every input is no
            use to anyone); None: no floor.
        one_shot: start with every channel group pruned at once, each by its measured
            sensitivity (:mod:`hwcc.search.oneshot`), then refine with NetAdapt's loop. Off
            by default: on the three pretrained models tried (ddddocr's and PP-OCR's
            recognisers, smart-turn) no allocation stayed above the accuracy floor after
            fine-tuning, and the attempts cost 2.5 to 4 minutes of each compile.
        int8_start: start with every MatMul and Gemm in dynamic int8 where the target
            runs such kernels (the cpu), when that lowers the budgeted metric and holds the
            accuracy floor (:mod:`hwcc.search.int8_start`). On by default: on the one
            practice model with large MatMuls (smart-turn) it alone reached 0.68x at
            98.4 % agreement, where pruning stopped at 0.77x and 82.8 %.
        criterion: how a pass that prunes picks what goes (its ``criterion`` knob):
            ``activation``, the mean |value| each channel carries into the next layers,
            measured on the fine-tune data (``Hooks.importance``; see
            :mod:`hwcc.passes.lib.importance`), or ``l2``/``l1``, the filters' norm
            (NetAdapt's). ``activation`` by default: a filter's norm misses the folded
            bias a channel carries through its activation, and on the searches compared
            (20 iterations, 30 steps each, no floor) L2 took resnet-glyphs to 25 % in its
            first step where ``activation`` kept 81 %, and ended at 0.35x at 61 % against
            75 %; on the other three zoo models it is within two points at most marks and
            lost one: mobilenet-digits at 0.48x, 58 % against 78 % (``bench/criterion.py``).
        seed: seeds every random choice.
    """

    passes: tuple[str, ...] = field(default_factory=_default_passes)
    initial_reduction: float = 0.1
    decay: float = 0.96
    max_iterations: int = 40
    max_units: int = 0
    max_step_fraction: float = 0.5
    finetune_top: int | None = None
    short_term_steps: int = 30
    long_term_steps: int | None = None
    lr: float | None = None
    optimizer: str = "adam"
    distill_weight: float = 0.5
    batch_size: int = 32
    step_macs: float = 5e9
    max_accuracy_drop: float | None = DEFAULT_ACCURACY_DROP
    one_shot: bool = False
    int8_start: bool = True
    criterion: str = "activation"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.max_step_fraction <= 1:
            raise HwccError(
                f"max_step_fraction={self.max_step_fraction}: give a share in (0, 1]",
                "0.5: a unit may take at most half its steps (channels) in one iteration",
            )
        if self.step_macs < 0:
            raise HwccError(f"step_macs={self.step_macs}: give 0 (no cap) or more")
        if not 0 <= self.distill_weight <= 1:
            raise HwccError(f"distill_weight={self.distill_weight}: give a weight in [0, 1]")
        if self.criterion not in CRITERIA:
            raise HwccError(
                f"criterion={self.criterion!r}: not a pruning criterion",
                f"use one of: {', '.join(CRITERIA)}",
            )
        if self.finetune_top is not None and self.finetune_top < 0:
            raise HwccError(f"finetune_top={self.finetune_top}: give 0 (every proposal) or more")

    def pass_knobs(self) -> dict[str, Any]:
        """Knobs the search sets on every pass that declares them (under each step's)."""
        return {"criterion": self.criterion}

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
