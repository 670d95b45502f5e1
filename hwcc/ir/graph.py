"""hwcc's intermediate representation: a dataflow graph over ``networkx.DiGraph``.

A :class:`Graph` holds :class:`~hwcc.ir.node.Node` s (one ONNX operator each) and
:class:`~hwcc.ir.node.Tensor` s (every value: graph inputs, initializers, intermediate
activations, outputs). The specification of the IR is in these docstrings and those of
:mod:`hwcc.ir.node`; this is the only module that imports networkx. The verbs that need
no edge bookkeeping of their own are in :mod:`hwcc.ir.graph_edits`.

Invariants, checked by :meth:`Graph.lint`:

1. A node's ``inputs`` are tensor names in ONNX order; ``""`` marks an omitted optional
   input. ``outputs`` likewise. Every tensor has at most one producer.
2. The networkx edges are derived from the inputs and outputs: an edge ``u -> v``
   exists iff some output of ``u`` is an input (or an implicit input, read by a
   subgraph of ``v``) of ``v``. Edges are only ever changed by the verbs of
   :class:`Graph` (``add_node``, ``set_input``, ``replace_all_uses_with``,
   ``erase_node``, ...), never by assigning to a node.
3. ``Graph.nodes`` is a topological order. New nodes are placed right after the
   producers of their inputs, so the order stays close to the source model's.
4. Initializers are numpy arrays on ``Tensor.data``. They are treated as immutable:
   a transform assigns a new array rather than writing into an old one, which lets
   :meth:`Graph.copy` share arrays between copies.

Node attributes are plain Python values (int, float, str, bytes, lists of those, numpy
arrays for tensors); attributes the IR does not interpret (subgraphs, type protos,
attribute references) are held as opaque objects and written back as they were, so
unknown ops, custom domains and control flow pass through untouched.
"""

from __future__ import annotations

import copy as _copy
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import networkx as nx
import numpy as np

from hwcc.ir.graph_edits import GraphEdits
from hwcc.ir.node import Dim, IRError, Node, Tensor

__all__ = ["Dim", "Graph", "IRError", "Node", "Tensor"]


class Graph(GraphEdits):
    """A model: nodes, tensors, graph inputs and outputs, and model-level metadata.

    Attributes:
        name: the graph's name.
        inputs: names of graph inputs, in order (may include initializers, as in
            models of IR version < 4).
        outputs: names of graph outputs, in order.
        tensors: every tensor by name.
        opset_imports: domain -> version.
        meta: model-level data the IR carries but does not interpret (IR version,
            producer, metadata, functions, ...). ``onnx_io`` owns its contents.

    The editing verbs (``set_input``, ``replace_all_uses_with``, ``rename_tensor``, ...)
    come from :class:`~hwcc.ir.graph_edits.GraphEdits`.
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.tensors: dict[str, Tensor] = {}
        self.opset_imports: dict[str, int] = {"": 17}
        self.meta: dict[str, Any] = {}
        self._dg = nx.DiGraph()
        self._nodes: dict[str, Node] = {}
        self._order: list[str] = []
        self._producer: dict[str, str] = {}
        self._users: dict[str, list[str]] = {}
        self._pos: dict[str, int] | None = None  # node -> index in _order, rebuilt on demand
        self._names = itertools.count()

    # ------------------------------------------------------------------ queries
    @property
    def nodes(self) -> list[Node]:
        """All nodes in topological order."""
        return [self._nodes[n] for n in self._order]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self._order)

    def node(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node named {name!r}") from None

    def has_node(self, name: str) -> bool:
        return name in self._nodes

    def tensor(self, name: str) -> Tensor:
        """The tensor called ``name``, created (untyped) on first mention."""
        t = self.tensors.get(name)
        if t is None:
            t = self.tensors[name] = Tensor(name)
        return t

    def producer(self, tensor: str) -> Node | None:
        """The node that computes ``tensor``, or None for inputs and initializers."""
        n = self._producer.get(tensor)
        return self._nodes[n] if n is not None else None

    def users(self, tensor: str) -> list[Node]:
        """Nodes that read ``tensor`` (explicitly or from a subgraph), in graph order."""
        names = dict.fromkeys(self._users.get(tensor, ()))
        pos = self._position()
        return [self._nodes[n] for n in sorted(names, key=pos.__getitem__)]

    def _position(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = {n: i for i, n in enumerate(self._order)}
        return self._pos

    def successors(self, node: Node) -> list[Node]:
        return [self._nodes[n] for n in self._dg.successors(node.name)]

    def predecessors(self, node: Node) -> list[Node]:
        return [self._nodes[n] for n in self._dg.predecessors(node.name)]

    def initializer(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else t.data

    @property
    def initializers(self) -> dict[str, np.ndarray]:
        return {n: t.data for n, t in self.tensors.items() if t.data is not None}

    def real_inputs(self) -> list[str]:
        """Graph inputs that are not initializers: what a caller must feed."""
        return [n for n in self.inputs if self.tensors[n].data is None]

    def is_graph_output(self, tensor: str) -> bool:
        return tensor in self.outputs

    def find(self, op_type: str) -> list[Node]:
        return [n for n in self.nodes if n.op_type == op_type]

    def unique_name(self, base: str) -> str:
        """A node or tensor name not yet used in the graph, derived from ``base``."""
        if base and base not in self._nodes and base not in self.tensors:
            return base
        while True:
            cand = f"{base or 'n'}__{next(self._names)}"
            if cand not in self._nodes and cand not in self.tensors:
                return cand

    # ------------------------------------------------------------------ building
    def add_node(
        self,
        op_type: str,
        inputs: Sequence[str],
        outputs: Sequence[str] | int = 1,
        attrs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        domain: str = "",
        meta: dict[str, Any] | None = None,
        attr_types: dict[str, int] | None = None,
        implicit_inputs: Sequence[str] = (),
        after: Node | None = None,
    ) -> Node:
        """Create a node and wire it in.

        Args:
            op_type: ONNX op name.
            inputs: input tensor names ("" for omitted optional inputs).
            outputs: output tensor names, or how many fresh names to generate.
            attrs: attribute values.
            name: node name; a fresh one is generated from ``op_type`` if omitted.
            domain: operator domain.
            meta: annotations.
            attr_types: ONNX attribute type codes for attributes whose type cannot be
                told from the value (empty lists).
            implicit_inputs: outer-scope tensors read by subgraphs.
            after: place the node after this one in the order (default: right after
                the last producer of its inputs).

        Returns:
            The new node.
        """
        name = self.unique_name(name or op_type.lower())
        if isinstance(outputs, int):
            outputs = [self.unique_name(f"{name}_out{i}") for i in range(outputs)]
        node = Node(
            name=name,
            op_type=op_type,
            domain=domain,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            attrs=dict(attrs or {}),
            attr_types=dict(attr_types or {}),
            implicit_inputs=tuple(implicit_inputs),
            meta=dict(meta or {}),
        )
        for o in node.outputs:
            if not o:
                continue
            if o in self._producer:
                raise IRError(f"tensor {o!r} already has a producer ({self._producer[o]})")
            if self.tensor(o).data is not None:
                raise IRError(f"tensor {o!r} is an initializer and cannot be a node output")
        self._nodes[name] = node
        self._dg.add_node(name)
        for o in node.outputs:
            if o:
                self._producer[o] = name
                for user in self._users.get(o, ()):  # readers wired before their producer
                    self._dg.add_edge(name, user)
        for t in self._reads(node):
            self.tensor(t)
            self._link(t, name)
        self._place(node, after)
        return node

    def _reads(self, node: Node) -> list[str]:
        return [t for t in itertools.chain(node.inputs, node.implicit_inputs) if t]

    def _link(self, tensor: str, user: str) -> None:
        self._users.setdefault(tensor, []).append(user)
        p = self._producer.get(tensor)
        if p is not None:
            self._dg.add_edge(p, user)

    def _unlink(self, tensor: str, user: str) -> None:
        users = self._users.get(tensor, [])
        users.remove(user)
        p = self._producer.get(tensor)
        if p is not None and not self._reads_from(user, p):
            if self._dg.has_edge(p, user):
                self._dg.remove_edge(p, user)

    def _reads_from(self, user: str, producer: str) -> bool:
        node = self._nodes[user]
        return any(self._producer.get(t) == producer for t in self._reads(node))

    def _place(self, node: Node, after: Node | None) -> None:
        if after is not None:
            pos = self._order.index(after.name) + 1
        else:
            preds = {self._producer[t] for t in self._reads(node) if t in self._producer}
            pos = 0
            if preds:
                pos = max(i for i, n in enumerate(self._order) if n in preds) + 1
        self._order.insert(pos, node.name)
        self._pos = None
        # A node placed before its users? Only possible when wiring existing users to
        # its outputs afterwards; ``toposort`` restores the invariant.
        if any(u in self._order[:pos] for o in node.outputs for u in self._users.get(o, ())):
            self.toposort()

    # ------------------------------------------------------------------ removing
    def erase_node(self, node: Node, *, force: bool = False) -> None:
        """Remove ``node``. Its outputs must be unused unless ``force``."""
        if not force:
            for o in node.outputs:
                if o and (self._users.get(o) or o in self.outputs):
                    raise IRError(f"cannot erase {node.name}: its output {o!r} is still used")
        for t in self._reads(node):
            self._unlink(t, node.name)
        for o in node.outputs:
            if o and self._producer.get(o) == node.name:
                del self._producer[o]
                if not self._users.get(o) and o not in self.outputs:
                    self.tensors.pop(o, None)
        self._dg.remove_node(node.name)
        del self._nodes[node.name]
        self._order.remove(node.name)
        self._pos = None

    def eliminate_dead_code(self) -> int:
        """Erase nodes whose results reach no graph output, and unused initializers.

        Nodes of unknown side effects are kept only if they are live; ONNX operators
        have none. Returns the number of nodes erased.
        """
        live: set[str] = set()
        roots = [self._producer[o] for o in self.outputs if o in self._producer]
        for r in roots:
            live.add(r)
            live |= nx.ancestors(self._dg, r)
        dead = [n for n in reversed(self._order) if n not in live]
        for n in dead:
            self.erase_node(self._nodes[n], force=True)
        for name in [n for n in self._users if not self._users[n]]:
            del self._users[name]
        used = set(self.inputs) | set(self.outputs) | set(self._users)
        for name in [n for n, t in self.tensors.items() if t.data is not None and n not in used]:
            del self.tensors[name]
        return len(dead)

    def toposort(self) -> None:
        """Re-establish topological order, keeping the current order where it is valid."""
        rank = {n: i for i, n in enumerate(self._order)}
        try:
            order = list(
                nx.lexicographical_topological_sort(self._dg, key=lambda n: rank.get(n, 0))
            )
        except nx.NetworkXUnfeasible as e:
            raise IRError("the graph has a cycle") from e
        self._order = order
        self._pos = None

    # ------------------------------------------------------------------ whole graph
    def copy(self) -> Graph:
        """A copy whose nodes, tensors and edges are independent of this graph's.

        Initializer arrays are shared (they are immutable by contract); opaque
        attribute values are deep-copied.
        """
        g = Graph(self.name)
        g.inputs, g.outputs = list(self.inputs), list(self.outputs)
        g.opset_imports = dict(self.opset_imports)
        g.meta = _copy.copy(self.meta)
        g.tensors = {
            n: Tensor(t.name, t.elem_type, t.shape, t.data, dict(t.meta))
            for n, t in self.tensors.items()
        }
        g._nodes = {
            n: Node(
                v.name,
                v.op_type,
                v.domain,
                v.inputs,
                v.outputs,
                _copy.deepcopy(v.attrs),
                dict(v.attr_types),
                v.implicit_inputs,
                _copy.deepcopy(v.meta),
            )
            for n, v in self._nodes.items()
        }
        g._dg = self._dg.copy()
        g._order = list(self._order)
        g._pos = None
        g._producer = dict(self._producer)
        g._users = {k: list(v) for k, v in self._users.items()}
        g._names = itertools.count(next(_copy.copy(self._names)))
        return g

    def lint(self) -> None:
        """Check every invariant in the module docstring; raise ``IRError`` if broken."""
        seen: set[str] = set()
        available = set(self.inputs) | {n for n, t in self.tensors.items() if t.data is not None}
        producer: dict[str, str] = {}
        for name in self._order:
            node = self._nodes[name]
            for t in self._reads(node):
                if t not in available and t not in producer:
                    # A subgraph may read values defined in an enclosing scope of the
                    # model; at top level everything must be defined before use.
                    raise IRError(f"{name} reads {t!r} before it is defined")
                if name not in self._users.get(t, []):
                    raise IRError(f"use-list of {t!r} is missing {name}")
                p = producer.get(t)
                if p is not None and not self._dg.has_edge(p, name):
                    raise IRError(f"missing edge {p} -> {name}")
            for o in node.outputs:
                if not o:
                    continue
                if o in producer or o in available:
                    raise IRError(f"tensor {o!r} is defined twice")
                producer[o] = name
                if self._producer.get(o) != name:
                    raise IRError(f"producer map is stale for {o!r}")
            seen.add(name)
        if seen != set(self._nodes) or set(self._dg.nodes) != seen:
            raise IRError("node order, node table and networkx graph disagree")
        for u, v in self._dg.edges:
            if not self._reads_from(v, u):
                raise IRError(f"edge {u} -> {v} has no tensor behind it")
        for o in self.outputs:
            if o not in producer and o not in available:
                raise IRError(f"graph output {o!r} is never computed")

    def subgraph_nodes(self, names: Iterable[str]) -> list[Node]:
        wanted = set(names)
        return [n for n in self.nodes if n.name in wanted]

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self)} nodes, {len(self.initializers)} initializers)"
