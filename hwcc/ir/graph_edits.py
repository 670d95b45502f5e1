"""The verbs of :class:`hwcc.ir.graph.Graph` that edit through its wiring primitives.

They add graph inputs and initializers, rewire node inputs, replace uses and rename or
forget tensors. Each keeps the invariants of :mod:`hwcc.ir.graph` by going through the
graph's wiring primitives (``_link``, ``_unlink``, ``toposort``); none touches an edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwcc.ir.dtypes import onnx_type_of
from hwcc.ir.node import Dim, IRError, Node, Tensor


class GraphEdits:
    """The verbs that add values, change what existing nodes read and rename tensors.

    A mixin of :class:`hwcc.ir.graph.Graph`, which holds the state below and the wiring
    primitives the verbs call.
    """

    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, Tensor]
    _nodes: dict[str, Node]
    _producer: dict[str, str]  # tensor -> the node that computes it
    _users: dict[str, list[str]]  # tensor -> the nodes that read it

    # ------------------------------------------------------------------ building
    def add_input(self, name: str, elem_type: int, shape: Sequence[Dim]) -> Tensor:
        t = self.tensor(name)
        t.elem_type, t.shape = elem_type, tuple(shape)
        self.inputs.append(name)
        return t

    def add_initializer(self, name: str, array: np.ndarray, elem_type: int | None = None) -> Tensor:
        """Add a constant tensor. ``elem_type`` defaults from the array's dtype."""
        t = self.tensor(name)
        if t.name in self._producer:
            raise IRError(f"tensor {name!r} is already computed by a node")
        array = np.asarray(array)
        t.data = array
        t.elem_type = elem_type if elem_type is not None else onnx_type_of(array.dtype)
        t.shape = tuple(int(d) for d in array.shape)
        return t

    # ------------------------------------------------------------------ rewiring
    def set_input(self, node: Node, index: int, tensor: str) -> None:
        """Make input ``index`` of ``node`` read ``tensor`` (``""`` to omit it)."""
        old = node.inputs[index]
        if old == tensor:
            return
        ins = list(node.inputs)
        ins[index] = tensor
        node.inputs = tuple(ins)
        if old:
            self._unlink(old, node.name)
        if tensor:
            self.tensor(tensor)
            self._link(tensor, node.name)
            try:
                self._ensure_order(tensor, node)
            except IRError:
                self.set_input(node, index, old)  # leave the graph as it was
                raise

    def set_inputs(self, node: Node, inputs: Sequence[str]) -> None:
        """Replace all of ``node``'s inputs."""
        for t in self._reads(node):
            self._unlink(t, node.name)
        node.inputs = tuple(inputs)
        for t in self._reads(node):
            self.tensor(t)
            self._link(t, node.name)
            self._ensure_order(t, node)

    def _ensure_order(self, tensor: str, user: Node) -> None:
        p = self._producer.get(tensor)
        if p is not None:
            pos = self._position()
            if pos[p] > pos[user.name]:
                self.toposort()

    def replace_all_uses_with(self, old: str, new: str) -> int:
        """Make every reader of tensor ``old`` read ``new`` instead.

        If ``old`` is a graph output, the output keeps its name: ``new``'s producer
        is renamed to write ``old`` directly, which needs ``new`` to be computed by a
        node and not be a graph output itself. Tensors read implicitly by subgraphs
        cannot be replaced (the subgraph would have to be rewritten).

        Returns:
            The number of node inputs rewired.
        """
        if old == new:
            return 0
        count = 0
        for user in self.users(old):
            if old in user.implicit_inputs:
                raise IRError(f"{old!r} is read by a subgraph of {user.name}; cannot replace it")
            for i, t in enumerate(user.inputs):
                if t == old:
                    self.set_input(user, i, new)
                    count += 1
        if old in self.outputs:
            self._move_output_name(old, new)
        return count

    def _move_output_name(self, out_name: str, new: str) -> None:
        prod = self.producer(new)
        if prod is None or new in self.outputs or new in self.inputs:
            raise IRError(
                f"cannot route graph output {out_name!r} to {new!r}: it is not computed by a node"
            )
        old_t = self.tensors[out_name]
        idx = self.outputs.index(out_name)
        if out_name in self._producer:
            # The old producer keeps computing a value nobody reads, under a fresh name.
            self.rename_tensor(out_name, self.unique_name(out_name + "_dead"))
        else:
            self.tensors.pop(out_name, None)
        self.outputs[idx] = new
        self.rename_tensor(new, out_name)
        t = self.tensors[out_name]
        t.meta = {**old_t.meta, **t.meta}
        t.elem_type = t.elem_type or old_t.elem_type
        if t.shape is None:
            t.shape = old_t.shape

    def rename_tensor(self, old: str, new: str) -> None:
        """Rename tensor ``old`` to the unused name ``new`` everywhere it appears:
        its producer's outputs, its readers' inputs, and the graph's inputs and outputs.
        """
        if new in self.tensors:
            raise IRError(f"tensor name {new!r} is taken")
        readers = self.users(old)
        if any(old in r.implicit_inputs for r in readers):
            raise IRError(f"{old!r} is read by a subgraph; cannot rename it")
        t = self.tensors.pop(old, None) or Tensor(old)
        t.name = new
        self.tensors[new] = t
        prod = self._producer.pop(old, None)
        if prod is not None:
            node = self._nodes[prod]
            node.outputs = tuple(new if o == old else o for o in node.outputs)
            self._producer[new] = prod
        self._users[new] = self._users.pop(old, [])
        for r in readers:
            r.inputs = tuple(new if i == old else i for i in r.inputs)
        self.inputs = [new if i == old else i for i in self.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def remove_unused_tensors(self) -> None:
        """Forget tensors that nothing produces, reads, or exports."""
        keep = set(self.inputs) | set(self.outputs) | set(self._producer)
        keep |= {t for t, u in self._users.items() if u}
        for name in [n for n in self.tensors if n not in keep]:
            del self.tensors[name]
