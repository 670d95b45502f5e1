"""The IR's verbs keep the networkx edges, use-lists and order in sync (``lint``)."""

import numpy as np
import pytest

from hwcc.ir import Graph, IRError


def chain() -> Graph:
    """x -> Relu(a) -> Neg(b) -> Identity(c) -> y, with an initializer w unused."""
    g = Graph("chain")
    g.add_input("x", 1, (1, 4))
    g.add_initializer("w", np.ones((4,), np.float32))
    g.add_node("Relu", ["x"], ["a"], name="relu")
    g.add_node("Neg", ["a"], ["b"], name="neg")
    g.add_node("Identity", ["b"], ["y"], name="id")
    g.outputs.append("y")
    g.lint()
    return g


def test_producers_users_and_order():
    g = chain()
    assert [n.name for n in g.nodes] == ["relu", "neg", "id"]
    assert g.producer("a").name == "relu"
    assert g.producer("x") is None
    assert [n.name for n in g.users("a")] == ["neg"]
    assert [n.name for n in g.successors(g.node("relu"))] == ["neg"]


def test_add_node_is_placed_after_its_producers():
    g = chain()
    g.add_node("Abs", ["a"], ["c"], name="abs")
    assert [n.name for n in g.nodes] == ["relu", "abs", "neg", "id"]
    g.lint()


def test_set_input_rewires_edges_and_reorders():
    g = chain()
    extra = g.add_node("Abs", ["b"], ["late"], name="late")
    g.set_input(g.node("neg"), 0, "x")  # neg no longer depends on relu
    g.lint()
    assert not g.users("a")
    g.set_input(g.node("relu"), 0, "late")  # relu now after late: order must be repaired
    g.lint()
    order = [n.name for n in g.nodes]
    assert order.index("late") < order.index("relu")
    assert extra in g.predecessors(g.node("relu"))


def test_cycle_is_refused():
    g = chain()
    with pytest.raises(IRError):
        g.set_input(g.node("relu"), 0, "b")
    g.lint()  # the refused edit left the graph as it was
    assert g.node("relu").inputs == ("x",)


def test_replace_all_uses_with_routes_graph_output_names():
    g = chain()
    n = g.replace_all_uses_with("y", "b")  # drop the Identity
    assert n == 0
    assert g.outputs == ["y"]
    assert g.producer("y").name == "neg"
    g.eliminate_dead_code()
    g.lint()
    assert [n.name for n in g.nodes] == ["relu", "neg"]


def test_replace_all_uses_with_rewires_inputs():
    g = chain()
    g.add_node("Abs", ["x"], ["x2"], name="abs")
    count = g.replace_all_uses_with("a", "x2")
    assert count == 1
    g.lint()
    assert g.node("neg").inputs == ("x2",)


def test_erase_refuses_live_nodes_and_dce_removes_dead_ones():
    g = chain()
    with pytest.raises(IRError):
        g.erase_node(g.node("neg"))
    g.add_node("Abs", ["a"], ["unused"], name="dead")
    assert g.eliminate_dead_code() == 1
    assert "w" not in g.tensors  # unused initializer dropped
    g.lint()


def test_copy_is_independent():
    g = chain()
    h = g.copy()
    h.add_node("Abs", ["a"], ["z"], name="abs")
    h.set_input(h.node("neg"), 0, "z")
    h.lint()
    g.lint()
    assert not g.has_node("abs")
    assert g.node("neg").inputs == ("a",)
    assert h.tensors["w"].data is g.tensors["w"].data  # arrays are shared (immutable by contract)


def test_rename_tensor_everywhere():
    g = chain()
    g.rename_tensor("a", "relu_out")
    g.lint()
    assert g.node("relu").outputs == ("relu_out",)
    assert g.node("neg").inputs == ("relu_out",)


def test_lint_catches_a_node_edited_behind_the_graphs_back():
    g = chain()
    g.node("neg").inputs = ("x",)  # bypasses the verbs
    with pytest.raises(IRError):
        g.lint()


def test_duplicate_producer_is_refused():
    g = chain()
    with pytest.raises(IRError):
        g.add_node("Abs", ["x"], ["a"])


def test_dce_drops_an_initializer_whose_last_reader_it_erased():
    g = Graph()
    g.add_input("x", 1, (2,))
    g.add_initializer("w", np.ones(2, np.float32))
    g.add_node("Add", ["x", "w"], ["dead"])
    g.add_node("Relu", ["x"], ["y"])
    g.outputs.append("y")
    assert g.eliminate_dead_code() == 1
    assert list(g.initializers) == []
    g.lint()


def test_a_producer_added_after_its_readers_gets_its_edges():
    g = Graph()
    g.add_input("x", 1, (1,))
    g.add_node("Relu", ["x"], ["y"], name="a")
    g.add_node("Neg", ["y"], ["z"], name="b")
    g.outputs.append("z")
    g.erase_node(g.node("a"), force=True)
    g.add_node("Relu", ["x"], ["y"], name="a2")
    g.lint()
    assert [n.name for n in g.nodes] == ["a2", "b"]
