"""Find runs of identical, chained blocks in a checked graph (what `repeat` makes).

A block instance is the set of nodes under one numbered scope (`layer3.5.*`; lowering
numbers repeat iterations and unnamed block calls). Consecutive instances form a
`Run` when they are the same computation (same ops, shapes, wiring, marks) and each
feeds the next: one external input, one node used outside. A backend may then
compile the block once and loop it over stacked parameters (`jax.lax.scan`)
instead of unrolling it, which is what makes ResNet-152 compile in seconds.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from archdsl.graph.ir import Graph

EXTERNAL = "<in>"
"""The relative name the body uses for the value flowing into an instance."""


@dataclass(frozen=True)
class Run:
    """`len(instances) >= 2` chained copies of one block.

    `body` lists the block's nodes by name relative to an instance (`conv1`,
    `residual.shortcut`), in graph order, each with its relative inputs
    (`EXTERNAL` for the instance's input); `output` is the relative name of the node
    the next instance (or the rest of the graph) reads.
    """

    instances: tuple[str, ...]
    """Scope prefixes in order, e.g. `("layer3.1", ..., "layer3.35")`."""
    body: tuple[tuple[str, tuple[str, ...]], ...]
    output: str
    input: str
    """The graph node feeding the first instance."""

    def node(self, instance: int, relative: str) -> str:
        """The graph name of a body node in one instance."""
        return f"{self.instances[instance]}.{relative}"

    @property
    def nodes(self) -> frozenset[str]:
        """Every graph node the run covers."""
        return frozenset(
            self.node(i, rel) for i in range(len(self.instances)) for rel, _ in self.body
        )

    @property
    def last(self) -> str:
        """The graph node the run's result stands for (the last instance's output)."""
        return self.node(len(self.instances) - 1, self.output)


@dataclass(frozen=True)
class _Instance:
    prefix: str
    signature: Hashable
    body: tuple[tuple[str, tuple[str, ...]], ...]
    input: str
    output: str


def _scopes(name: str) -> list[tuple[str, str, int]]:
    """`(parent, prefix, index)` for each numbered scope of `name`, outermost first."""
    parts = name.split(".")
    return [
        (".".join(parts[:i]), ".".join(parts[: i + 1]), int(part))
        for i, part in enumerate(parts[:-1])
        if part.isdigit()
    ]


def _instance(
    graph: Graph, prefix: str, members: list[str], used_outside: set[str]
) -> _Instance | None:
    """The instance's signature, or None if it is not one-in, one-out."""
    inside = set(members)
    cut = len(prefix) + 1
    externals: set[str] = set()
    rows = []
    body = []
    for name in members:
        node = graph.node(name)
        if node.aux is not None or not node.inputs:
            return None
        inputs = []
        for source in node.inputs:
            if source in inside:
                inputs.append(source[cut:])
            else:
                externals.add(source)
                inputs.append(EXTERNAL)
        rel = name[cut:]
        body.append((rel, tuple(inputs)))
        rows.append((rel, node.op, node.shape, tuple(inputs), node.frozen, node.synthetic))
    outs = [name for name in members if name in used_outside]
    if len(externals) != 1 or len(outs) != 1:
        return None
    (source,) = externals
    (out,) = outs
    if graph.node(source).shape != graph.node(out).shape:
        return None
    return _Instance(prefix, (tuple(rows), out[cut:]), tuple(body), source, out)


def find_runs(graph: Graph, *, min_length: int = 2) -> list[Run]:
    """Maximal runs of at least `min_length` identical chained instances, outermost scopes first.

    Nodes covered by a run at one scope depth are not looked at again deeper in.
    """
    order = graph.order()
    consumers: dict[str, set[str]] = {name: set() for name in order}
    for name in order:
        for source in graph.node(name).inputs:
            consumers[source].add(name)
    special = set(graph.outputs) | {head.output for head in graph.aux.values()}
    covered: set[str] = set()
    runs: list[Run] = []
    depth = 0
    while True:
        groups: dict[tuple[str, int], tuple[str, list[str]]] = {}
        for name in order:
            if name in covered:
                continue
            scopes = _scopes(name)
            if len(scopes) <= depth:
                continue
            parent, prefix, index = scopes[depth]
            groups.setdefault((parent, index), (prefix, []))[1].append(name)
        if not groups:
            return runs
        by_parent: dict[str, list[tuple[int, _Instance | None]]] = {}
        for (parent, index), (prefix, members) in groups.items():
            inside = set(members)
            used_outside = {
                n for n in members if n in special or any(c not in inside for c in consumers[n])
            }
            by_parent.setdefault(parent, []).append(
                (index, _instance(graph, prefix, members, used_outside))
            )
        for entries in by_parent.values():
            entries.sort(key=lambda entry: entry[0])
            chain: list[_Instance] = []
            previous = None
            for index, inst in entries:
                joins = (
                    inst is not None
                    and chain
                    and previous == index - 1
                    and inst.signature == chain[-1].signature
                    and inst.input == chain[-1].output
                )
                if not joins:
                    _close(chain, min_length, runs, covered)
                    chain = [inst] if inst is not None else []
                else:
                    chain.append(inst)  # type: ignore[arg-type]
                previous = index
            _close(chain, min_length, runs, covered)
        depth += 1


def _close(chain: list[_Instance], min_length: int, runs: list[Run], covered: set[str]) -> None:
    if len(chain) < min_length:
        return
    first = chain[0]
    run = Run(
        instances=tuple(inst.prefix for inst in chain),
        body=first.body,
        output=first.output[len(first.prefix) + 1 :],
        input=first.input,
    )
    runs.append(run)
    covered.update(run.nodes)
