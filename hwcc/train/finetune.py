"""Running an ``ir.Graph`` in torch and fine-tuning its weights.

:func:`to_torch` turns a graph into a :class:`GraphModule` that interprets the graph node
by node, one torch function per op type (see :mod:`hwcc.train.ops`). Float
initializers that are weights of Conv, ConvTranspose, Gemm, MatMul and
LayerNormalization, and BatchNormalization's scale and bias, become trainable
``nn.Parameter`` s; everything else (BatchNormalization's running statistics, shapes,
integer tensors) is a constant. BatchNormalization always uses its running statistics
and Dropout is the identity, so training changes the weights, never the function the
graph computes from them. :func:`write_back` puts the trained values back into a copy of
the graph.

:func:`finetune` minimises, with SGD (momentum 0.9) or Adam, over minibatches ``B`` drawn
without replacement from the ``N`` samples (reshuffled each epoch):

* with labels ``y``: the cross-entropy of the first output ``s``,
  ``L = −(1/|B|) Σ_b log softmax(s_b)[y_b]``;
* without labels: distillation from a teacher's first output ``t`` (Hinton, Vinyals,
  Dean 2015) at temperature ``T``, with ``p^T = softmax(t/T)`` and ``q^T = softmax(s/T)``:
  ``L = T² · (1/|B|) Σ_b KL(p^T_b ‖ q^T_b) = T² · (1/|B|) Σ_b Σ_c p^T_bc (log p^T_bc − log q^T_bc)``;
  the ``T²`` keeps the gradients' scale independent of ``T``.

Pruned weights stay pruned: for each trainable tensor ``W`` the mask ``M = [W₀ ≠ 0]`` is
taken from its values at the start. Each step uses the masked gradient ``M ⊙ ∇W`` and
then sets ``W ← M ⊙ W``, so a weight that was exactly zero is exactly zero at the end
(momentum or Adam's moments cannot revive it).

Runs are deterministic: the minibatch order comes from ``numpy.random.default_rng(seed)``,
torch is seeded with ``seed`` inside a forked RNG and runs with deterministic algorithms;
the global RNG state and the deterministic-algorithms setting are restored afterwards.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwcc.train.ops import OPS, BuildContext, reject
from hwcc.ir.dtypes import numpy_dtype
from hwcc.errors import HwccError
from hwcc.ir import Graph, Node

__all__ = ["FinetuneResult", "GraphModule", "finetune", "to_torch", "torch_outputs", "write_back"]

Inputs = Mapping[str, np.ndarray] | np.ndarray
_DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}
_ONNX_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class _Step:
    fn: Callable
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    many: bool


class GraphModule(nn.Module):
    """An ``ir.Graph`` run by torch.

    ``forward`` takes the graph's real inputs (those that are not initializers)
    positionally in graph input order or by name, as tensors or arrays, with any batch
    size in place of the graph's fixed one; it returns a tuple with one tensor per graph
    output, in graph output order (a 1-tuple for one output).

    Args:
        graph: the graph; not modified.

    Attributes:
        graph: that graph.
        input_names: the inputs ``forward`` takes, in order.
        output_names: the outputs it returns, in order.

    Raises:
        HwccError: the graph has nodes torch cannot run (all of them are named).
    """

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.input_names = graph.real_inputs()
        self.output_names = list(graph.outputs)
        _check_supported(graph)
        constants = dict(graph.initializers)
        ctx = BuildContext(graph, constants, _fixed_batch(graph))
        trainable = _trainable(graph)
        self._keys: dict[str, str] = {}  # tensor name -> attribute holding its value
        self._params: dict[str, str] = {}  # trainable tensor name -> attribute
        self._steps: list[_Step] = []
        for name, array in graph.initializers.items():
            self._store(name, array, name in trainable)
        for node in graph.nodes:
            spec = OPS[node.op_type]
            _check_outputs(graph, node, spec.outputs)
            fn = spec.build(node, ctx)
            if spec.folds:
                constants[node.outputs[0]] = value = fn()
                self._store(node.outputs[0], value, False)
            else:
                self._steps.append(_Step(fn, node.inputs, node.outputs, spec.outputs != 1))

    def _store(self, name: str, array: np.ndarray, trainable: bool) -> None:
        key = re.sub(r"\W", "_", name)
        key = f"{'w' if trainable else 'c'}_{key}_{len(self._keys)}"
        try:
            value = torch.from_numpy(np.array(array, copy=True))  # the graph's arrays stay untouched
        except TypeError:
            raise HwccError(f"tensor {name!r} of graph {self.graph.name!r} has dtype {array.dtype}, "
                            "which torch does not have", "cast it to a numeric type torch has") from None
        if trainable:
            self.register_parameter(key, nn.Parameter(value))
            self._params[name] = key
        else:
            self.register_buffer(key, value)
        self._keys[name] = key

    @property
    def onnx_parameters(self) -> dict[str, nn.Parameter]:
        """The trainable tensors, by their name in the graph."""
        return {name: getattr(self, key) for name, key in self._params.items()}

    def forward(self, *args, **kwargs) -> tuple[torch.Tensor, ...]:
        env = {name: getattr(self, key) for name, key in self._keys.items()}
        env.update(self._bind(args, kwargs))
        for step in self._steps:
            out = step.fn(*[env[i] if i else None for i in step.inputs])
            if step.many:
                env.update((o, v) for o, v in zip(step.outputs, out) if o)
            else:
                env[step.outputs[0]] = out
        return tuple(env[o] for o in self.output_names)

    def _bind(self, args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
        if len(args) > len(self.input_names):
            raise HwccError(f"{len(args)} inputs given, the graph has {len(self.input_names)}",
                            f"pass {', '.join(self.input_names)}")
        feeds = dict(zip(self.input_names, args)) | kwargs
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self.input_names]
        if missing or unknown:
            raise HwccError(f"inputs do not match the graph: missing {missing}, unknown {unknown}",
                            f"the graph's inputs are {', '.join(self.input_names)}")
        return {n: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v))
                for n, v in feeds.items()}


def to_torch(graph: Graph) -> GraphModule:
    """Builds the torch module that runs ``graph`` (see :class:`GraphModule`).

    Raises:
        HwccError: some node cannot be run in torch; raised here, before any training.
    """
    return GraphModule(graph)


def _check_supported(graph: Graph) -> None:
    bad = [n for n in graph.nodes if n.domain not in _ONNX_DOMAINS or n.op_type not in OPS]
    if bad:
        listed = ", ".join(f"{n.op_type} (node {n.name!r}{', domain ' + n.domain if n.domain else ''})"
                           for n in bad[:8])
        more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
        raise HwccError(
            f"graph {graph.name!r} has ops the torch executor cannot run: {listed}{more}",
            "fine-tune only graphs of supported ops (or rewrite those nodes first); supported: "
            + ", ".join(sorted(OPS)))


def _check_outputs(graph: Graph, node: Node, count: int) -> None:
    if count < 0:
        return
    extra = [o for o in node.outputs[count:] if o and (graph.users(o) or graph.is_graph_output(o))]
    if extra:
        raise reject(node, f"its optional output(s) {extra} are used but not computed",
                     f"use only the first {count} output(s) of {node.op_type}")


def _trainable(graph: Graph) -> set[str]:
    names = set()
    for node in graph.nodes:
        for i in OPS[node.op_type].weights:
            name = node.inputs[i] if i < len(node.inputs) else ""
            data = graph.initializer(name) if name else None
            if data is not None and data.dtype.kind == "f":
                names.add(name)
    return names


def _fixed_batch(graph: Graph) -> int | None:
    firsts = {(graph.tensors[n].shape or (None,))[0] for n in graph.real_inputs()}
    batch = firsts.pop() if len(firsts) == 1 else None
    return batch if isinstance(batch, int) else None


def write_back(module: GraphModule, graph: Graph) -> Graph:
    """A copy of ``graph`` whose trainable initializers hold ``module``'s parameters.

    Args:
        module: a module built from ``graph`` (or from a graph with the same weights).
        graph: the graph to copy; not modified. Other tensors and nodes are kept as they are.

    Returns:
        The new graph; each written array has the original dtype and shape.

    Raises:
        HwccError: a parameter has no initializer of the same shape in ``graph``.
    """
    out = graph.copy()
    for name, param in module.onnx_parameters.items():
        old = out.initializer(name)
        value = param.detach().cpu().numpy()
        if old is None or old.shape != value.shape:
            raise HwccError(
                f"the module's weight {name!r} {tuple(value.shape)} has no matching initializer in "
                f"graph {graph.name!r}", "write back into the graph the module was built from")
        out.add_initializer(name, value.astype(old.dtype, copy=True), out.tensors[name].elem_type)
    return out


def torch_outputs(graph: Graph | GraphModule, inputs: Inputs, batch_size: int = 256) -> list[np.ndarray]:
    """Runs a graph in torch over many samples, without gradients.

    Args:
        graph: a graph, or a module from :func:`to_torch`.
        inputs: an array ``[N, ...]`` for a one-input graph, or arrays by input name.
        batch_size: samples per run.

    Returns:
        One array ``[N, ...]`` per graph output, in graph output order.
    """
    module = graph if isinstance(graph, GraphModule) else to_torch(graph)
    feeds = _feeds(module, inputs)
    n = len(next(iter(feeds.values())))
    chunks: list[tuple[torch.Tensor, ...]] = []
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                chunks.append(module(**{k: v[start:start + batch_size] for k, v in feeds.items()}))
    finally:
        module.train(was_training)
    return [torch.cat([c[i] for c in chunks]).numpy() for i in range(len(module.output_names))]


def _feeds(module: GraphModule, inputs: Inputs) -> dict[str, torch.Tensor]:
    """The inputs as tensors of the graph's dtypes, all with the same sample count."""
    names = module.input_names
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise HwccError(f"one array given for a graph with inputs {names}",
                            "give a dict of arrays, one per input name")
        inputs = {names[0]: inputs}
    missing = [n for n in names if n not in inputs]
    if missing:
        raise HwccError(f"no data for input(s) {missing}", f"give arrays for {names}")
    feeds = {}
    for name in names:
        elem = module.graph.tensors[name].elem_type
        array = np.asarray(inputs[name])
        feeds[name] = torch.from_numpy(np.ascontiguousarray(array.astype(numpy_dtype(elem)) if elem else array))
    counts = {name: len(v) for name, v in feeds.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise HwccError(f"the inputs have different or zero sample counts: {counts}",
                        "give every input the same number of samples along axis 0")
    return feeds


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` returns.

    Attributes:
        graph: a copy of the input graph with the trained weights.
        losses: the training loss of each step (before that step's update).
        steps: the number of optimizer steps taken.
    """

    graph: Graph
    losses: list[float] = field(default_factory=list)
    steps: int = 0


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
    optimizer: str = "sgd",
    progress: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Fine-tunes ``graph``'s weights on data (see the module docstring for the loss).

    Args:
        graph: the model to train; not modified.
        inputs: an array ``[N, ...]`` for a one-input graph, or arrays by input name, the
            graph's batch dimension replaced by the ``N`` samples.
        labels: int class labels ``[N]`` (or ``[N, ...]`` for dense outputs): train with
            cross-entropy on the first output.
        teacher: without labels, the model to distil from: a graph (the original model),
            or its first output precomputed for the ``N`` samples.
        steps: optimizer steps; 0 returns a copy of ``graph`` unchanged.
        lr: learning rate; default 0.01 for SGD, 1e-3 for Adam.
        batch_size: samples per step (all ``N`` if fewer).
        seed: seeds the minibatch order and torch; the same seed gives the same weights.
        temperature: distillation temperature ``T``.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adam"``.
        progress: called after each step with the step number (from 1) and its loss.

    Returns:
        The trained graph, the losses, and the number of steps.

    Raises:
        HwccError: bad arguments, mismatched data, or ops torch cannot run.
    """
    _check_settings(steps, batch_size, optimizer, temperature, labels, teacher)
    if steps == 0:
        return FinetuneResult(graph.copy(), [], 0)
    module = to_torch(graph)
    feeds = _feeds(module, inputs)
    n = len(next(iter(feeds.values())))
    loss_fn = _loss(labels, teacher, feeds, n, temperature)
    losses: list[float] = []
    with _deterministic(seed), torch.enable_grad():
        masks = [(p, p != 0) for p in module.parameters() if not bool(torch.all(p != 0))]
        opt = _optimizer(optimizer, module.parameters(), lr if lr is not None else _DEFAULT_LR[optimizer])
        module.train()
        for step, idx in enumerate(_minibatches(n, min(batch_size, n), steps, seed), 1):
            index = torch.from_numpy(idx)
            out = module(**{k: v.index_select(0, index) for k, v in feeds.items()})[0]
            loss = loss_fn(out, index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for p, keep in masks:
                if p.grad is not None:
                    p.grad.masked_fill_(~keep, 0.0)
            opt.step()
            with torch.no_grad():
                for p, keep in masks:
                    p.masked_fill_(~keep, 0.0)
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step, losses[-1])
    return FinetuneResult(write_back(module, graph), losses, steps)


def _check_settings(steps, batch_size, optimizer, temperature, labels, teacher) -> None:
    if steps < 0 or batch_size < 1:
        raise HwccError(f"steps={steps}, batch_size={batch_size}: steps must be >= 0, batch_size >= 1")
    if optimizer not in _DEFAULT_LR:
        raise HwccError(f"unknown optimizer {optimizer!r}", f"use one of {', '.join(_DEFAULT_LR)}")
    if temperature <= 0:
        raise HwccError(f"temperature must be positive, not {temperature}")
    if (labels is None) == (teacher is None):
        raise HwccError("finetune needs exactly one of labels and teacher",
                        "give labels to train on, or the original model as teacher to distil from")


def _loss(labels, teacher, feeds, n: int, temperature: float) -> Callable:
    """``loss(output, sample_index) -> scalar`` for labels or a teacher."""
    if labels is not None:
        target = torch.from_numpy(np.asarray(labels).astype(np.int64))
        if len(target) != n:
            raise HwccError(f"{len(target)} labels for {n} samples", "give one label per sample")
        return lambda out, idx: F.cross_entropy(out, target.index_select(0, idx))
    if isinstance(teacher, Graph):
        teacher = torch_outputs(teacher, {k: v.numpy() for k, v in feeds.items()})[0]
    soft = torch.from_numpy(np.asarray(teacher, dtype=np.float32))
    if len(soft) != n:
        raise HwccError(f"teacher outputs for {len(soft)} samples, inputs have {n}",
                        "give the teacher's outputs for the same samples, in the same order")
    log_p = F.log_softmax(soft / temperature, dim=1)

    def distill(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        log_q = F.log_softmax(out / temperature, dim=1)
        kl = F.kl_div(log_q, log_p.index_select(0, idx), reduction="batchmean", log_target=True)
        return kl * temperature**2

    return distill


def _optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    makers = {"sgd": lambda: torch.optim.SGD(params, lr=lr, momentum=0.9),
              "adam": lambda: torch.optim.Adam(params, lr=lr)}
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
            yield order[start:start + size]
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
