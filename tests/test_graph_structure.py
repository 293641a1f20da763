"""`ir.Graph` builds its `networkx.DiGraph` when an algorithm needs it, and edits keep it true."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import networkx as nx

from archdsl.frontend import build_graph_text
from archdsl.graph.ir import Graph, Node
from archdsl.graph.ops import Add, Dense, Input, Relu
from archdsl.lang.source import Source, Span

SPAN = Span(Source("x.arch", ""), 1, 1, 1, 2)


def _node(op: object, *inputs: str) -> Node:
    return Node(op=op, inputs=inputs, span=SPAN)  # type: ignore[arg-type]


def _diamond() -> Graph:
    graph = Graph("g")
    graph.add("x", _node(Input((4,))))
    graph.add("a", _node(Dense(4), "x"))
    graph.add("b", _node(Relu(), "x"))
    graph.add("sum", _node(Add(), "a", "b"))
    graph.add("twice", _node(Add(), "sum", "sum"))
    graph.outputs = ("twice",)
    return graph


def _edges(graph: Graph) -> set[tuple[str, str]]:
    return set(graph.digraph().edges)


def _rebuilt(graph: Graph) -> Graph:
    """The same nodes added afresh, in the same order."""
    other = Graph(graph.name)
    for name in list(graph._nodes):
        other._nodes[name] = graph.node(name)
    return other


def test_algorithms_read_the_nodes_inputs() -> None:
    graph = _diamond()
    assert _edges(graph) == {("x", "a"), ("x", "b"), ("a", "sum"), ("b", "sum"), ("sum", "twice")}
    assert sorted(graph.users("x")) == ["a", "b"] and graph.users("twice") == []
    assert graph.ancestors("sum") == {"x", "a", "b"}
    assert graph.unused() == {"twice"}
    assert graph.order() == ["x", "a", "b", "sum", "twice"]


def test_edits_after_an_algorithm_are_seen_by_the_next() -> None:
    graph = _diamond()
    assert graph.users("a") == ["sum"]  # builds the DiGraph
    graph.add("late", _node(Dense(4), "x"))
    graph.replace("sum", _node(Add(), "late", "b"))  # rewired to a node added after it
    assert graph.users("a") == [] and graph.users("late") == ["sum"]
    assert graph.unused() == {"a", "twice"}
    order = graph.order()
    assert order.index("late") < order.index("sum") and sorted(order) == sorted(graph._nodes)
    graph.remove("a")
    assert "a" not in graph.digraph() and graph.ancestors("twice") == {"x", "b", "late", "sum"}
    fresh = _rebuilt(graph)
    assert _edges(graph) == _edges(fresh) and graph.order() == list(
        nx.lexicographical_topological_sort(fresh.digraph(), key=list(graph._nodes).index)
    )


def test_a_shape_only_edit_keeps_the_structure_and_copies_share_it() -> None:
    graph = _diamond()
    structure = graph._structure()
    order = graph.order()
    graph.replace("a", dataclasses.replace(graph.node("a"), shape=(4,)))
    assert graph._structure() is structure and graph.order() is order
    copy = graph.copy()
    assert copy._structure() is structure
    copy.remove("twice")  # the copy's edit leaves the original whole
    assert "twice" in graph.digraph() and "twice" not in copy.digraph()
    assert graph._structure() is structure


def test_a_cycle_is_still_found() -> None:
    graph = _diamond()
    graph.replace("a", _node(Dense(4), "twice"))
    try:
        graph.order()
    except nx.NetworkXUnfeasible:
        pass
    else:
        raise AssertionError("a cycle was ordered")


def test_checking_a_plain_network_does_not_import_networkx(tmp_path: Path) -> None:
    """A network with no shortcut to insert and no `use ... upto` needs no graph algorithm."""
    spec = tmp_path / "plain.arch"
    spec.write_text(
        "network N {\n    input 8x8x3\n    conv 4 3x3 same -> relu\n"
        "    residual {\n        conv 4 3x3 same\n    }\n    flatten -> dense 2\n}\n"
    )
    code = (
        "import sys\nfrom archdsl.cli import main\n"
        f"assert main(['check', '-q', {str(spec)!r}]) == 0\n"
        "assert 'networkx' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # and the graph it checked is the one networkx would order the same way
    graph = build_graph_text(spec.read_text())
    index = list(graph._nodes).index
    assert graph.order() == list(nx.lexicographical_topological_sort(graph.digraph(), key=index))
