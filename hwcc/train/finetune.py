"""Fine-tuning an ``ir.Graph``'s weights in torch, on labels, by distillation, or both.

:func:`finetune` runs the graph as a :class:`~hwcc.train.graph_module.GraphModule` and
minimises, with SGD (momentum 0.9) or Adam, over minibatches ``B`` drawn without
replacement from the ``N`` samples (reshuffled each epoch):

* with labels ``y``: the cross-entropy of the first output ``s``,
  ``L_y = −(1/|B|) Σ_b log softmax(s_b)[y_b]``;
* with a teacher: distillation from a teacher's first output ``t`` (Hinton, Vinyals,
  Dean 2015) at temperature ``T``, with ``p^T = softmax(t/T)`` and ``q^T = softmax(s/T)``:
  ``L = T² · (1/|B|) Σ_b KL(p^T_b ‖ q^T_b)
  = T² · (1/|B|) Σ_b Σ_c p^T_bc (log p^T_bc − log q^T_bc)``;
  ``T²`` keeps the gradients' scale independent of ``T`` near the teacher. An output with
  one value per sample (no class axis) is a probability when the teacher's values lie in [0, 1]:
  the loss is then the mean Bernoulli ``KL(t ‖ s) = t log(t/s) + (1−t) log((1−t)/(1−s))``;
  otherwise the mean squared error ``mean((s − t)²)``;
* with both: ``L = (1 − α) · L_y + α · L_t``, the labels' loss and the teacher's at
  weight ``α`` (as Hinton et al.: the soft targets keep a pruned network near its function).
  Far from the teacher its gradient ``T (q^T − p^T)`` can be ``T`` times the labels':
  SGD at 0.01 took resnet-digits at half width to chance with it (Adam, whose steps do
  not scale with the gradient: 97.2 %; SGD at ``T = 1``: 96.9 %).

The learning rate holds at ``lr`` for the first 70 % of the steps, then follows a cosine
to 0 (``schedule="hold-cosine"``; Loshchilov and Hutter 2017, without restarts) from step
``h = ⌊0.7 · steps⌋``: ``lr_t = lr · (1 + cos(π (t − h) / (steps − h))) / 2``;
``"cosine"`` has ``h = 0``, ``"constant"`` never decays. On the glyphs models (300 Adam
steps at 1e-3, test fonts) a constant rate took the *unpruned* models from 93.5 / 92.6 %
to 91.0 / 89.5 % (the weights still move by about ``lr`` a step at the end); the cosine
kept them (93.1 / 92.5 %) but recovered a network cut to half its width much less
(resnet-glyphs 29.5 % against 59.5 %, mobilenet-glyphs 43.9 % against 59.0 %); holding
first did both (93.1 %; 51.1 / 55.9 %), with the teacher at ``α = 0.5`` 93.5 %, 59.5 / 57.7 %.

How samples are batched depends on the data's layout (:mod:`hwcc.data.layout`). When
every input holds samples on axis 0 and the inputs share their axis 0 (the classic
layout), a minibatch is ``batch_size`` samples fed at once, the graph's batch axis
replaced by them. Otherwise (stacked runs, one run fed to every run, a recurrent state
whose batch is on axis 1, a model whose axis 0 is time) a minibatch is
``max(1, batch_size // samples_per_run)`` whole runs, each fed in the model's own input
shapes and their losses averaged: samples are never regrouped, so a state stays with its
run and consecutive frames stay in order, whatever axis holds an input's batch.

Pruned weights stay pruned: for each trainable tensor ``W`` the mask ``M = [W₀ ≠ 0]`` is
taken from its values at the start. Each step uses the masked gradient ``M ⊙ ∇W`` and
then sets ``W ← M ⊙ W``, so a weight that was exactly zero is exactly zero at the end
(momentum or Adam's moments cannot revive it).

Runs are deterministic: minibatches from ``numpy.random.default_rng(seed)``, torch seeded
inside a forked RNG with deterministic algorithms, both settings restored afterwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from hwcc.data.activations import input_shapes
from hwcc.data.layout import Layout, data_layout
from hwcc.errors import HwccError
from hwcc.ir import Graph
from hwcc.ir.dtypes import numpy_dtype
from hwcc.train.distill import distiller, label_loss, mixed, teacher_loss
from hwcc.train.graph_module import (
    GraphModule,
    Inputs,
    as_feeds,
    to_torch,
    write_back,
)

__all__ = ["FinetuneResult", "default_lr", "finetune"]

_DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}
# Distilling a network towards its own original's outputs asks for small corrections, and
# Adam's steps are about ``lr`` per weight whatever the gradient's size: where the
# gradient is round-off (every weight the pruning did not disturb) that is a random walk.
# At 1e-3, 60 steps took the *unpruned* ddddocr recogniser's agreement with itself to 79 %
# (1e-4: 93 %), mobilenet-digits to NaN; with its LSTM pruned 512 to 312, 95.5 % to 79 %
# (1e-4: loss 4.1 to 0.27). A compile checks the rate first: hwcc.search.finetuning.probed.
_DISTILL_LR = {"sgd": 1e-3, "adam": 1e-4}


def default_lr(optimizer: str, labels: bool) -> float:
    """The peak learning rate when none is given: with labels, or distilling alone."""
    return (_DEFAULT_LR if labels else _DISTILL_LR)[optimizer]


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` returns.

    Attributes:
        graph: a copy of the input graph with the trained weights.
        losses: the training loss of each step (before that step's update).
        steps: the number of optimizer steps taken.
        skipped: steps whose loss or gradient was not finite: their update was not
            applied (one such step would turn every weight it reaches into nan).
    """

    graph: Graph
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    skipped: int = 0


def finetune(
    graph: Graph,
    inputs: Inputs,
    labels: np.ndarray | None = None,
    *,
    teacher: Graph | np.ndarray | None = None,
    steps: int = 100,
    lr: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    temperature: float = 4.0,
    distill: str | None = None,
    optimizer: str = "sgd",
    alpha: float = 0.5,
    schedule: str = "hold-cosine",
    progress: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Fine-tunes ``graph``'s weights on data (see the module docstring for the loss).

    Args:
        graph: the model to train; not modified.
        inputs: an array ``[N, ...]`` for a one-input graph, or arrays by input name, the
            graph's batch dimension replaced by the ``N`` samples; or arrays in any layout
            of :mod:`hwcc.data.layout` (see the module docstring).
        labels: int class labels ``[N]`` (or ``[N, ...]`` for dense outputs): train with
            cross-entropy on the first output.
        teacher: the model to distil from: a graph (the original model), or its first
            output precomputed for the ``N`` samples (for data in runs: the runs' first
            outputs joined along axis 0). At least one of ``labels`` and ``teacher``.
        steps: optimizer steps; 0 returns a copy of ``graph`` unchanged.
        lr: the peak learning rate; default 0.01 for SGD, 1e-3 for Adam with labels, ten
            times less when distilling from a teacher alone (``_DISTILL_LR``: small
            corrections to a trained network, not a random walk on it).
        batch_size: samples per step (all ``N`` if fewer).
        seed: seeds the minibatch order and torch; the same seed gives the same weights.
        temperature: distillation temperature ``T``.
        distill: what to distil, named by the metric the run is judged by (``top1``,
            ``per-step``, ``binary``, ``cosine``; see :func:`hwcc.train.distill.distiller`);
            None: read off the teacher's outputs.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adam"``.
        alpha: the teacher's weight in the loss when there are labels too, in [0, 1].
        schedule: ``"hold-cosine"``, ``"cosine"`` or ``"constant"`` (module docstring).
        progress: called after each step with the step number (from 1) and its loss.

    Returns:
        The trained graph, the losses, and the number of steps.

    Raises:
        HwccError: bad arguments, mismatched data, or ops torch cannot run.
    """
    _check_settings(steps, batch_size, optimizer, temperature, labels, teacher)
    _check_mix(alpha, schedule)
    if steps == 0:
        return FinetuneResult(graph.copy(), [], 0)
    module = to_torch(graph)
    if not any(True for _ in module.parameters()):
        hint = "weights held in Constant nodes become initializers by the fold_constants pass"
        raise HwccError(f"{graph.name} has no weights to fine-tune (no float initializers)", hint)
    if _on_axis0(graph, inputs) and _batch_flows(module, graph, inputs):
        feeds = as_feeds(module, inputs)
        n = len(next(iter(feeds.values())))
        loss_fn = mixed(
            None if labels is None else label_loss(labels, n),
            None if teacher is None else teacher_loss(teacher, feeds, n, temperature, distill),
            alpha,
        )
        size = min(batch_size, n)

        def step_loss(idx: np.ndarray) -> torch.Tensor:
            index = torch.from_numpy(idx)
            out = module(**{k: v.index_select(0, index) for k, v in feeds.items()})[0]
            return loss_fn(out, index)
    else:
        runs = _Runs(module, graph, inputs)
        n = runs.layout.runs
        loss_fn = mixed(
            None if labels is None else runs.label_loss(labels),
            None if teacher is None else runs.teacher_loss(teacher, temperature, distill),
            alpha,
        )
        size = min(max(1, batch_size // runs.layout.samples_per_run), n)

        def step_loss(idx: np.ndarray) -> torch.Tensor:
            return sum(loss_fn(runs(int(i)), int(i)) for i in idx) / len(idx)

    losses: list[float] = []
    with _deterministic(seed), torch.enable_grad():
        masks = [(p, p != 0) for p in module.parameters() if not bool(torch.all(p != 0))]
        rate = lr if lr is not None else default_lr(optimizer, labels is not None)
        opt = _optimizer(optimizer, module.parameters(), rate)
        decay = _decay(schedule, steps)
        module.train()
        skipped = 0
        for step, idx in enumerate(_minibatches(n, size, steps, seed), 1):
            for group in opt.param_groups:
                group["lr"] = rate * decay(step - 1)
            loss = step_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for p, keep in masks:
                if p.grad is not None:
                    p.grad.masked_fill_(~keep, 0.0)
            if not _finite(loss, module.parameters()):
                skipped += 1
                losses.append(float(loss.detach()))
                continue
            opt.step()
            with torch.no_grad():
                for p, keep in masks:
                    p.masked_fill_(~keep, 0.0)
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step, losses[-1])
    return FinetuneResult(write_back(module, graph), losses, steps - skipped, skipped)


def _finite(loss: torch.Tensor, params) -> bool:
    """Whether the loss and every gradient are finite."""
    if not bool(torch.isfinite(loss)):
        return False
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)


def _on_axis0(graph: Graph, inputs: Inputs) -> bool:
    """The classic layout: every array holds the same number of samples on axis 0, in the
    input's rank, and the inputs that fix their axis 0 fix it to one size (a missing
    input is reported by :func:`as_feeds`)."""
    if not isinstance(inputs, Mapping):
        return True
    shapes = input_shapes(graph, graph.real_inputs())
    if any(name not in inputs for name in shapes):
        return True
    arrays = {name: np.asarray(inputs[name]) for name in shapes}
    ranks = all(a.ndim == len(shapes[k]) >= 1 for k, a in arrays.items())
    lengths = {len(a) if a.ndim else -1 for a in arrays.values()}
    fixed = {s[0] for s in shapes.values() if s and isinstance(s[0], int)}
    return ranks and len(lengths) == 1 and len(fixed) <= 1


def _batch_flows(module: GraphModule, graph: Graph, inputs: Inputs) -> bool:
    """Whether samples stacked on axis 0 stay on axis 0 of the first output. Not so in a
    model that moves its batch inside (a CNN whose features become an LSTM's time-major
    sequence, reshaped back with the batch of 1 it was exported with): such a model is
    trained one run at a time, at its own shapes."""
    out, names = graph.tensors[graph.outputs[0]].shape, graph.real_inputs()
    first = input_shapes(graph, names)[names[0]] if names else ()
    if not out or not first or not isinstance(out[0], int) or not isinstance(first[0], int):
        return True  # a dynamic batch: the graph was written for any number of samples
    if not isinstance(inputs, Mapping):
        inputs = {names[0]: inputs}
    if any(k not in inputs for k in names):
        return True  # as_feeds names the missing input
    arrays = {k: np.asarray(inputs[k]) for k in names}
    batch = first[0]
    if min(len(a) for a in arrays.values()) < 2 * batch:
        return True  # too few samples to tell; one minibatch is one run anyway
    feeds = as_feeds(module, {k: a[: 2 * batch] for k, a in arrays.items()})
    try:
        with torch.no_grad():
            got = tuple(module(**feeds)[0].shape)
    except RuntimeError:  # a Reshape to the exported batch of 1 cannot take two samples
        return False
    return got == (2 * out[0], *out[1:])


class _Runs:
    """The data as whole runs (:mod:`hwcc.data.layout`): ``runs(i)`` is run ``i``'s first
    output from the module being trained."""

    def __init__(self, module: GraphModule, graph: Graph, inputs: Mapping[str, np.ndarray]):
        names = graph.real_inputs()
        arrays = {n: np.asarray(inputs[n]) for n in names}
        self.layout: Layout = data_layout(input_shapes(graph, names), arrays)
        self.module, self.arrays = module, arrays
        self.types = {n: numpy_dtype(graph.tensors[n].elem_type) for n in names}

    def feed(self, i: int) -> dict[str, torch.Tensor]:
        run = self.layout.run(self.arrays, i)
        return {
            k: torch.from_numpy(np.ascontiguousarray(a.astype(self.types[k], copy=False)))
            for k, a in run.items()
        }

    def __call__(self, i: int) -> torch.Tensor:
        return self.module(**self.feed(i))[0]

    def per_run(self, rows: np.ndarray | torch.Tensor, what: str) -> list:
        """``rows`` (one entry per sample, runs in order) cut into one chunk per run."""
        r = self.layout.runs
        if len(rows) % r:
            raise HwccError(
                f"{len(rows)} {what} for {r} runs of the data",
                f"give {what} for every run's samples, the runs in order",
            )
        step = len(rows) // r
        return [rows[i * step : (i + 1) * step] for i in range(r)]

    def label_loss(self, labels) -> Callable:
        """``loss(output, run) -> scalar``: cross-entropy against run ``run``'s labels."""
        target = torch.from_numpy(np.asarray(labels).astype(np.int64))
        chunks = self.per_run(target, "labels")
        return lambda out, i: F.cross_entropy(out, chunks[i])

    def teacher_loss(self, teacher, temperature: float, distill: str | None) -> Callable:
        """``loss(output, run) -> scalar``: distillation from the teacher's run ``run``."""
        if isinstance(teacher, Graph):
            teacher = self._outputs(to_torch(teacher))
        soft = torch.from_numpy(np.asarray(teacher, dtype=np.float32))
        prepare, distil = distiller(soft, temperature, distill)
        chunks = self.per_run(prepare(soft), "teacher outputs")
        return lambda out, i: distil(out, chunks[i])

    def _outputs(self, teacher: GraphModule) -> np.ndarray:
        teacher.eval()
        with torch.no_grad():
            outs = [teacher(**self.feed(i))[0] for i in range(self.layout.runs)]
        return torch.cat([o.reshape(-1, *o.shape[1:]) for o in outs]).numpy()


def _check_settings(steps, batch_size, optimizer, temperature, labels, teacher) -> None:
    if steps < 0 or batch_size < 1:
        raise HwccError(
            f"steps={steps}, batch_size={batch_size}: steps must be >= 0, batch_size >= 1"
        )
    if optimizer not in _DEFAULT_LR:
        raise HwccError(f"unknown optimizer {optimizer!r}", f"use one of {', '.join(_DEFAULT_LR)}")
    if temperature <= 0:
        raise HwccError(f"temperature must be positive, not {temperature}")
    if labels is None and teacher is None:
        raise HwccError(
            "finetune needs labels or a teacher",
            "give labels to train on, the original model as teacher to distil from, or both",
        )


def _check_mix(alpha: float, schedule: str) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise HwccError(f"alpha must lie in [0, 1], not {alpha}", "it is the teacher's weight")
    if schedule not in _SCHEDULES:
        raise HwccError(
            f"unknown learning-rate schedule {schedule!r}", f"use one of {', '.join(_SCHEDULES)}"
        )


_SCHEDULES = {"hold-cosine": 0.7, "cosine": 0.0, "constant": 1.0}  # the share held at lr


def _decay(schedule: str, steps: int) -> Callable[[int], float]:
    """The learning rate's factor at step ``t`` (from 0): 1 at the first step."""
    hold = int(_SCHEDULES[schedule] * steps)
    if hold >= steps:
        return lambda t: 1.0
    return lambda t: (
        1.0 if t < hold else 0.5 * (1.0 + math.cos(math.pi * (t - hold) / (steps - hold)))
    )


def _optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    makers = {
        "sgd": lambda: torch.optim.SGD(params, lr=lr, momentum=0.9),
        "adam": lambda: torch.optim.Adam(params, lr=lr),
    }
    return makers[name]()


def _minibatches(n: int, size: int, steps: int, seed: int) -> Iterator[np.ndarray]:
    """``steps`` index arrays of ``size`` samples, each epoch a fresh permutation."""
    rng = np.random.default_rng(seed)
    done = 0
    while True:
        order = rng.permutation(n)
        for start in range(0, n - size + 1, size):
            if done == steps:
                return
            yield order[start : start + size]
            done += 1


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seeded torch with deterministic algorithms; the global state is restored on exit."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
