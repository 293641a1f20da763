"""The IR: named `Node`s in a DAG held by `networkx.DiGraph`, its invariants and text dump."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import networkx as nx

from archdsl.graph.ops import Input, Op, Residual
from archdsl.graph.shapes import Shape, format_shape
from archdsl.lang.source import Span


@dataclass(frozen=True)
class Node:
    """One layer of the network.

    `inputs` is the source of truth for operand order (a `DiGraph` cannot hold the
    two edges of `add(x, x)`); graph edges are derived from it.
    """

    op: Op
    inputs: tuple[str, ...]
    span: Span = field(compare=False, repr=False)
    """The user code that caused this node, even for inserted ones."""
    shape: Shape | None = None
    """Per-example output shape, set by `infer_shapes`."""
    synthetic: bool = False
    """Inserted by a pass (a residual projection), not written by the user."""
    frozen: bool = False
    """Parameters take no gradient and no update; batch norm stays in inference mode."""
    aux: str | None = None
    """The auxiliary head this node belongs to, if any."""
    trace: tuple[Span, ...] = field(default=(), compare=False, repr=False)
    """Call sites of the block instantiations that made this node, innermost first."""


@dataclass(frozen=True)
class ShapeCheck:
    """A `: HxWxC` assertion in the spec: `node` must have shape `expected`."""

    node: str
    expected: Shape
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class AuxHead:
    """An auxiliary classifier: its output node and its loss weight."""

    output: str
    weight: float
    span: Span = field(compare=False, repr=False)


class Graph:
    """A DAG of named `Node`s. Wraps `networkx.DiGraph`: this class alone knows its layout.

    Nodes live in a dict (fast lookup, insertion order breaks topological ties); the
    `DiGraph` holds the derived edges for algorithms and is shared copy-on-write, so
    a pass that only replaces nodes' shapes copies no structure.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._nodes: dict[str, Node] = {}
        self._g: nx.DiGraph = nx.DiGraph()
        self._shared = False
        self._order: list[str] | None = None
        self.outputs: tuple[str, ...] = ()
        self.aux: dict[str, AuxHead] = {}
        self.arguments: dict[str, object] = {}
        """The network arguments this graph was built with."""
        self.checks: list[ShapeCheck] = []
        """Shape assertions, checked after inference."""
        self.span: Span | None = None
        """The network definition."""

    def _own_structure(self) -> None:
        if self._shared:
            self._g = self._g.copy()
            self._shared = False
        self._order = None

    def add(self, name: str, node: Node) -> None:
        """Add a node and the edges from its inputs."""
        if name in self._nodes:
            raise KeyError(f"node {name!r} exists")
        self._own_structure()
        self._nodes[name] = node
        self._g.add_node(name)
        for source in dict.fromkeys(node.inputs):
            self._g.add_edge(source, name)

    def replace(self, name: str, node: Node) -> None:
        """Swap the node stored under `name`, rewiring edges if its inputs changed."""
        old = self._nodes[name]
        if old.inputs != node.inputs:
            self._own_structure()
            for source in dict.fromkeys(old.inputs):
                self._g.remove_edge(source, name)
            for source in dict.fromkeys(node.inputs):
                self._g.add_edge(source, name)
        self._nodes[name] = node

    def remove(self, name: str) -> None:
        """Drop a node and its edges (used when `use ... upto` cuts a network)."""
        self._own_structure()
        del self._nodes[name]
        self._g.remove_node(name)

    def node(self, name: str) -> Node:
        """The node stored under `name`."""
        return self._nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.order())

    def users(self, name: str) -> list[str]:
        """Names of the nodes that take `name` as an input."""
        return list(self._g.successors(name))

    def unused(self) -> set[str]:
        """The nodes no node takes as an input."""
        return {name for name, users in self._g.out_degree() if users == 0}

    def ancestors(self, name: str) -> set[str]:
        """Every node that `name` depends on."""
        return nx.ancestors(self._g, name)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The `input` nodes."""
        return tuple(n for n, node in self._nodes.items() if isinstance(node.op, Input))

    @property
    def output(self) -> str:
        """The main output."""
        return self.outputs[0]

    def order(self) -> list[str]:
        """Topological order; ties broken by the order nodes were added.

        Lowering adds every node after its inputs, and then that order is the answer
        (the first node not yet placed always has all its inputs placed), found in one
        pass over the inputs instead of networkx's heap; a graph a pass has rewired
        (a residual now reading a shortcut added after it) takes networkx's sort.
        """
        if self._order is None:
            index = {name: i for i, name in enumerate(self._nodes)}
            if all(
                index.get(source, i) < i
                for i, node in enumerate(self._nodes.values())
                for source in node.inputs
            ):
                self._order = list(self._nodes)
            else:
                self._order = list(
                    nx.lexicographical_topological_sort(self._g, key=index.__getitem__)
                )
        return self._order

    def items(self) -> Iterator[tuple[str, Node]]:
        """`(name, node)` pairs in topological order."""
        nodes = self._nodes
        for name in self.order():
            yield name, nodes[name]

    def copy(self) -> Graph:
        """A copy whose nodes may be replaced without touching this graph."""
        other = Graph(self.name)
        other._nodes = dict(self._nodes)
        other._g = self._g
        other._shared = self._shared = True
        other._order = self._order
        other.outputs = self.outputs
        other.aux = dict(self.aux)
        other.arguments = dict(self.arguments)
        other.checks = list(self.checks)
        other.span = self.span
        return other

    def digraph(self) -> nx.DiGraph:
        """The underlying networkx graph, read-only, for algorithms and drawing."""
        return nx.freeze(self._g.copy())


def verify(graph: Graph, *, shapes: bool = False, residuals: bool = False) -> None:
    """Check the IR's invariants; a failure is a compiler bug, not a user error.

    `shapes`: every node has a shape; `residuals`: every residual adds equal shapes
    (true once `insert_projections` has run).

    Raises:
        AssertionError: an invariant does not hold.
    """
    nodes = graph._nodes
    for name, node in nodes.items():
        for source in node.inputs:
            assert source in nodes, f"{name}: input {source!r} is not a node"
    try:
        order = graph.order()
    except nx.NetworkXUnfeasible:
        raise AssertionError(f"cycle: {nx.find_cycle(graph._g)}") from None
    inputs = graph.inputs
    assert len(inputs) == 1, f"expected one input node, got {inputs}"
    assert graph.outputs, "no output"
    for name in graph.outputs:
        assert name in nodes, f"output {name!r} is not a node"
    for head in graph.aux.values():
        assert head.output in nodes, f"aux output {head.output!r} is not a node"
    reachable = {inputs[0]}
    for name in order:
        node = nodes[name]
        arity = node.op.arity
        if arity is None:
            assert node.inputs, f"{name}: no inputs"
        else:
            assert len(node.inputs) == arity, (
                f"{name}: `{node.op.name}` takes {arity} inputs, has {len(node.inputs)}"
            )
        for source in node.inputs:
            if source in reachable:
                reachable.add(name)
            if node.aux is None:
                assert nodes[source].aux is None, f"{name} on the main path uses aux node {source}"
        assert name in reachable, f"{name} is not reachable from the input"
        if shapes:
            assert node.shape is not None, f"{name}: no shape"
            if residuals and isinstance(node.op, Residual):
                body, shortcut = (nodes[i].shape for i in node.inputs)
                assert body == shortcut, f"{name}: residual operands {body} != {shortcut}"


def format_graph(graph: Graph) -> str:
    """One line per node: `name = op(inputs) : shape`, marks for inserted/frozen/aux."""
    lines = [f"graph {graph.name} {{"]
    for name, node in graph.items():
        args = ", ".join(node.inputs)
        attrs = node.op.describe()
        head = f"{node.op.name}[{attrs}]" if attrs else node.op.name
        shape = f" : {format_shape(node.shape)}" if node.shape is not None else ""
        marks = [
            mark
            for mark, on in (
                ("inserted", node.synthetic),
                ("frozen", node.frozen),
                (f"aux {node.aux}", node.aux is not None),
            )
            if on
        ]
        suffix = f"  # {', '.join(marks)}" if marks else ""
        lines.append(f"  {name} = {head}({args}){shape}{suffix}")
    lines.append(f"  return {', '.join(graph.outputs)}")
    for aux_name, head in graph.aux.items():
        lines.append(f"  aux {aux_name} = {head.output} weight {head.weight}")
    lines.append("}")
    return "\n".join(lines)


def with_shape(node: Node, shape: Shape) -> Node:
    """The node with its shape set.

    By hand, on the hottest path of the passes: `dataclasses.replace`, or even the
    frozen `__init__` (one `object.__setattr__` per field), costs more than the shape
    rule it records; a `Node` has no `__post_init__` to skip.
    """
    new = object.__new__(Node)
    fields = new.__dict__
    fields.update(node.__dict__)
    fields["shape"] = shape
    return new
