"""Running an ``ir.Graph`` in torch: :func:`to_torch`, :func:`torch_outputs`, :func:`write_back`.

:func:`to_torch` turns a graph into a :class:`GraphModule` that interprets the graph node
by node, one torch function per op type (see :mod:`hwcc.train.ops`). Float
initializers that are weights of Conv, ConvTranspose, Gemm, MatMul and
LayerNormalization, and BatchNormalization's scale and bias, become trainable
``nn.Parameter`` s; everything else (BatchNormalization's running statistics, shapes,
integer tensors, the operands of a node marked ``structural``) is a constant.
BatchNormalization uses its running statistics (unless the graph was exported in training
mode) and Dropout is the identity, so training changes
the weights, never the function the graph computes from them. :func:`write_back` puts the
trained values back into a copy of the graph.

The bodies of If, Loop and Scan are modules nested in the graph's (see
:mod:`hwcc.train.ops.control_ops`): their own weights train with the rest and are written
back into the body; an outer weight a body uses is one parameter, of the outer module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from hwcc.errors import HwccError
from hwcc.ir import Graph, Node
from hwcc.ir.dtypes import numpy_dtype
from hwcc.train.ops import OPS, BuildContext, op_spec, reject
from hwcc.train.ops.control_ops import bodies, body_graph, weight_uses

__all__ = ["GraphModule", "Inputs", "as_feeds", "to_torch", "torch_outputs", "write_back"]

Inputs = Mapping[str, np.ndarray] | np.ndarray


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
        trainable = _trainable(graph)
        ctx = BuildContext(
            graph,
            constants,
            _fixed_batch(graph),
            lambda node, attr: self._nest(node, attr, ctx, trainable),
        )
        self._keys: dict[str, str] = {}  # tensor name -> attribute holding its value
        self._params: dict[str, str] = {}  # trainable tensor name -> attribute
        self._steps: list[_Step] = []
        self.bodies: dict[tuple[str, str], GraphModule] = {}  # (node, attribute) -> body
        for name, array in graph.initializers.items():
            self._store(name, array, name in trainable)
        for node in graph.nodes:
            spec = op_spec(node.op_type, node.domain)
            _check_outputs(graph, node, spec.outputs)
            fn = spec.build(node, ctx)
            if spec.folds:
                constants[node.outputs[0]] = value = fn()
                self._store(node.outputs[0], value, False)
            else:
                inputs = (*node.inputs, *node.implicit_inputs)
                self._steps.append(_Step(fn, inputs, node.outputs, spec.outputs != 1))

    def _nest(self, node: Node, attr: str, ctx: BuildContext, fed: set[str]) -> GraphModule:
        """The module of the graph attribute ``attr`` of ``node``, nested in this one."""
        try:
            body = GraphModule(body_graph(node, attr, ctx, fed))
        except HwccError as e:
            raise HwccError(
                f"in the {attr} of node {node.name!r} ({node.op_type}): {e.message}", e.hint
            ) from None
        self.add_module(f"body_{len(self.bodies)}", body)
        self.bodies[(node.name, attr)] = body
        return body

    def _store(self, name: str, array: np.ndarray, trainable: bool) -> None:
        key = re.sub(r"\W", "_", name)
        key = f"{'w' if trainable else 'c'}_{key}_{len(self._keys)}"
        try:
            # A copy: the graph's arrays stay untouched.
            value = torch.from_numpy(np.array(array, copy=True))
        except TypeError:
            raise HwccError(
                f"tensor {name!r} of graph {self.graph.name!r} has dtype "
                f"{array.dtype}, which torch does not have",
                "cast it to a numeric type torch has",
            ) from None
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
        return self.evaluate(self._bind(args, kwargs))

    def evaluate(self, values: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The outputs from the tensors ``values`` names (the inputs, unchecked)."""
        env = {name: getattr(self, key) for name, key in self._keys.items()}
        env.update(values)
        for step in self._steps:
            out = step.fn(*[env[i] if i else None for i in step.inputs])
            if step.many:
                env.update((o, v) for o, v in zip(step.outputs, out) if o)
            else:
                env[step.outputs[0]] = out
        return tuple(env[o] for o in self.output_names)

    def _bind(self, args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
        if len(args) > len(self.input_names):
            raise HwccError(
                f"{len(args)} inputs given, the graph has {len(self.input_names)}",
                f"pass {', '.join(self.input_names)}",
            )
        feeds = dict(zip(self.input_names, args)) | kwargs
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [n for n in feeds if n not in self.input_names]
        if missing or unknown:
            raise HwccError(
                f"inputs do not match the graph: missing {missing}, unknown {unknown}",
                f"the graph's inputs are {', '.join(self.input_names)}",
            )
        return {
            n: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v))
            for n, v in feeds.items()
        }


def to_torch(graph: Graph) -> GraphModule:
    """Builds the torch module that runs ``graph`` (see :class:`GraphModule`).

    Raises:
        HwccError: some node cannot be run in torch; raised here, before any training.
    """
    return GraphModule(graph)


def _check_supported(graph: Graph) -> None:
    bad = [n for n in graph.nodes if op_spec(n.op_type, n.domain) is None]
    if bad:
        listed = ", ".join(
            f"{n.op_type} (node {n.name!r}{', domain ' + n.domain if n.domain else ''})"
            for n in bad[:8]
        )
        more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
        raise HwccError(
            f"graph {graph.name!r} has ops the torch executor cannot run: {listed}{more}",
            "fine-tune only graphs of supported ops (or rewrite those nodes first); supported: "
            + ", ".join(sorted(OPS)),
        )


def _check_outputs(graph: Graph, node: Node, count: int) -> None:
    if count < 0:
        return
    extra = [o for o in node.outputs[count:] if o and (graph.users(o) or graph.is_graph_output(o))]
    if extra:
        raise reject(
            node,
            f"its optional output(s) {extra} are used but not computed",
            f"use only the first {count} output(s) of {node.op_type}",
        )


def _trainable(graph: Graph) -> set[str]:
    """The float initializers read at a weight position, here or in a body; not those of
    a node marked ``structural`` (the 0/1 matrix that scatters a pruned state back to the
    caller's size is the model's interface, not a weight)."""
    names = set()
    for node in graph.nodes:
        if node.meta.get("structural"):
            continue
        weights = op_spec(node.op_type, node.domain).weights
        used = {node.inputs[i] for i in weights if i < len(node.inputs)}
        for _, body in bodies(node):
            used |= weight_uses(body)
        for name in used:
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
                f"graph {graph.name!r}",
                "write back into the graph the module was built from",
            )
        out.add_initializer(name, value.astype(old.dtype, copy=True), out.tensors[name].elem_type)
    for (node, attr), body in module.bodies.items():
        _write_body(body, out.node(node).attr(attr).proto.g)
    return out


def _write_body(module: GraphModule, proto: onnx.GraphProto) -> None:
    """Puts the parameters of a body's module into the body's graph, in place."""
    inits = {t.name: t for t in proto.initializer}
    for name, param in module.onnx_parameters.items():
        old = inits[name]
        value = param.detach().cpu().numpy().astype(numpy_dtype(old.data_type))
        old.CopyFrom(numpy_helper.from_array(value, name))
    for (node, attr), body in module.bodies.items():
        outputs = list(module.graph.node(node).outputs)
        n = next(n for n in proto.node if list(n.output) == outputs)
        _write_body(body, next(a.g for a in n.attribute if a.name == attr))


def torch_outputs(
    graph: Graph | GraphModule, inputs: Inputs, batch_size: int = 256
) -> list[np.ndarray]:
    """Runs a graph in torch over many samples, without gradients.

    Args:
        graph: a graph, or a module from :func:`to_torch`.
        inputs: an array ``[N, ...]`` for a one-input graph, or arrays by input name.
        batch_size: samples per run.

    Returns:
        One array ``[N, ...]`` per graph output, in graph output order.
    """
    module = graph if isinstance(graph, GraphModule) else to_torch(graph)
    feeds = as_feeds(module, inputs)
    n = len(next(iter(feeds.values())))
    chunks: list[tuple[torch.Tensor, ...]] = []
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                chunks.append(
                    module(**{k: v[start : start + batch_size] for k, v in feeds.items()})
                )
    finally:
        module.train(was_training)
    return [torch.cat([c[i] for c in chunks]).numpy() for i in range(len(module.output_names))]


def as_feeds(module: GraphModule, inputs: Inputs) -> dict[str, torch.Tensor]:
    """The inputs as tensors of the graph's dtypes, all with the same sample count."""
    names = module.input_names
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise HwccError(
                f"one array given for a graph with inputs {names}",
                "give a dict of arrays, one per input name",
            )
        inputs = {names[0]: inputs}
    missing = [n for n in names if n not in inputs]
    if missing:
        raise HwccError(f"no data for input(s) {missing}", f"give arrays for {names}")
    feeds = {}
    for name in names:
        elem = module.graph.tensors[name].elem_type
        array = np.asarray(inputs[name])
        array = array.astype(numpy_dtype(elem)) if elem else array
        feeds[name] = torch.from_numpy(np.ascontiguousarray(array))
    counts = {name: len(v) for name, v in feeds.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise HwccError(
            f"the inputs have different or zero sample counts: {counts}",
            "give every input the same number of samples along axis 0",
        )
    return feeds
