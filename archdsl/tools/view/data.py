"""The viewer's page data: a checked graph (or a spec's errors) as plain JSON-ready dicts.

Everything the page shows is computed here, once, in Python: per-layer figures from
the report, the scope tree that the page folds (scopes come from dotted names, as in
`draw.py`), runs of identical scopes in a row (folded as one box marked xN), the
source files the spans point into, and the totals. The page only lays it out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

from archdsl.errors import ArchError, ArchErrors, render
from archdsl.graph.ir import Graph
from archdsl.graph.report import build_report
from archdsl.graph.shapes import format_shape
from archdsl.lang.source import Source, Span
from archdsl.tools.draw import scopes_of

BYTES_PER_VALUE: Final = 4
"""float32: what `archdsl.compile_file` keeps parameters and activations in by default."""

Payload = dict[str, Any]


def graph_payload(graph: Graph, *, spec: str, batch: int | None = None) -> Payload:
    """What the page needs to draw `graph` and answer clicks on it.

    Args:
        graph: a checked graph (shapes set), from `build_graph`.
        spec: the path the user gave, shown in the title.
        batch: also give memory and FLOPs for a batch of this size.
    """
    report = build_report(graph)
    files = _Files()
    scopes = _Scopes(graph, files)
    nodes = []
    index = {name: i for i, name in enumerate(graph.order())}
    for row, (name, node) in zip(report.rows, graph.items(), strict=True):
        nodes.append(
            {
                "name": name,
                "op": row.op,
                "attrs": row.attrs,
                "fields": _fields(node.op),
                "shape": format_shape(row.shape),
                "inputs": [index[i] for i in node.inputs],
                "params": row.params,
                "trainable": row.trainable,
                "state": row.state,
                "macs": row.macs,
                "inserted": row.inserted,
                "frozen": row.frozen,
                "aux": row.aux,
                "output": name in graph.outputs,
                "scope": scopes.place(name),
                "span": files.span(node.span),
                "trace": [files.span(site) for site in node.trace],
            }
        )
    scopes.find_runs(nodes)
    totals = {
        "layers": len(graph),
        "params": report.params,
        "trainable": report.trainable,
        "macs": report.macs,
        "inference_params": report.inference_params,
        "aux": len(graph.aux),
    }
    return {
        "kind": "graph",
        "spec": spec,
        "network": graph.name,
        "nodes": nodes,
        "scopes": scopes.table,
        "runs": scopes.runs,
        "files": files.table,
        "totals": totals,
        "batch": None if batch is None else batch_figures(graph, batch),
    }


def batch_figures(graph: Graph, batch: int) -> dict[str, Any]:
    """Memory and FLOPs of a batch: inference, and a training step where the graph layer can say.

    `archdsl.graph.cost.estimate` (the `compile --batch` figures) gives both, peaks
    included. Without it (it lands on its own branch), a first estimate of inference
    only: FLOPs are 2 x MACs per example x batch (aux heads excluded), memory is the
    float32 parameters and running statistics plus every layer's output for the batch.
    """
    try:
        from archdsl.graph.cost import estimate
    except ImportError:
        return _first_estimate(graph, batch)
    inference = estimate(graph, batch)
    training = estimate(graph, batch, train=True)
    return {
        "batch": batch,
        "inference": {"flops": inference.flops, "peak_bytes": inference.peak_bytes},
        "training": {
            "flops": training.flops,
            "peak_bytes": training.peak_bytes,
            "optimizer": training.optimizer,
        },
        "method": "archdsl.graph.cost, as `archdsl compile --batch`: float32, "
        "peaks from shapes (checked against XLA in bench/memory.py)",
    }


def _first_estimate(graph: Graph, batch: int) -> dict[str, Any]:
    report = build_report(graph)
    values = sum(_size(graph.node(name).shape) for name in graph.order())
    weights = report.params + sum(r.state for r in report.rows)
    return {
        "batch": batch,
        "inference": {
            "flops": 2 * report.macs * batch,
            "peak_bytes": (weights + values * batch) * BYTES_PER_VALUE,
        },
        "training": None,
        "method": "2 x MACs x batch; float32 parameters, running statistics "
        "and every layer's output for the batch (an upper bound)",
    }


def error_payload(error: ArchError, *, spec: str) -> Payload:
    """The diagnostics of a spec that does not build: what the page shows instead."""
    errors = error.errors if isinstance(error, ArchErrors) else (error,)
    return {
        "kind": "errors",
        "spec": spec,
        "errors": [
            {
                "file": None if e.span is None else e.span.filename,
                "line": None if e.span is None else e.span.line,
                "column": None if e.span is None else e.span.column,
                "message": e.message,
                "text": render(e),
            }
            for e in errors
        ],
    }


def _size(shape: Sequence[int] | None) -> int:
    out = 1
    for d in shape or ():
        out *= d
    return out


def _fields(op: object) -> list[list[str]]:
    """An op's arguments as `[name, value]` text pairs, in declaration order."""
    if not dataclasses.is_dataclass(op):
        return []
    return [[f.name, _text(getattr(op, f.name))] for f in dataclasses.fields(op)]


def _text(value: object) -> str:
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return "x".join(map(str, value))
    return str(value)


class _Files:
    """Source files by index; spans become `[file, line, column, end_line, end_column]`."""

    def __init__(self) -> None:
        self.table: list[dict[str, str]] = []
        self._index: dict[str, int] = {}

    def span(self, span: Span) -> list[int]:
        return [self._file(span.source), span.line, span.column, span.end_line, span.end_column]

    def _file(self, source: Source) -> int:
        found = self._index.get(source.filename)
        if found is None:
            found = self._index[source.filename] = len(self.table)
            self.table.append({"name": source.filename, "text": source.text})
        return found


class _Scopes:
    """The tree of scopes (block instances, repeated scopes, aux heads) and its runs."""

    def __init__(self, graph: Graph, files: _Files) -> None:
        self.graph = graph
        self.files = files
        self.table: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self._index: dict[str, int] = {}

    def place(self, name: str) -> int:
        """The innermost scope of node `name` (creating its chain), or -1 at the top."""
        node = self.graph.node(name)
        chain = scopes_of(name, self.graph)
        if node.aux is not None:
            chain = [*scopes_of(node.aux, self.graph), f"aux:{node.aux}"]
        parent = -1
        for depth, key in enumerate(chain):
            found = self._index.get(key)
            if found is None:
                found = self._index[key] = len(self.table)
                aux = key.startswith("aux:")
                label = key[4:] if aux else key
                # The call that made this scope: traces list call sites innermost first.
                site = node.trace[len(chain) - 1 - depth] if len(node.trace) == len(chain) else None
                if aux:
                    site = self.graph.aux[label].span
                self.table.append(
                    {
                        "name": label,
                        "aux": aux,
                        "weight": self.graph.aux[label].weight if aux else None,
                        "parent": parent,
                        "span": self.files.span(site or node.span),
                    }
                )
            parent = found
        return parent

    def find_runs(self, nodes: list[dict[str, Any]]) -> None:
        """Runs of sibling scopes in a row with the same layers, each feeding only the next.

        The same rule as `graph --collapse` (`draw._merge_runs`): ops, arguments, shapes
        and frozenness equal, layer for layer; the second takes input only from the first.
        """
        members: dict[int, list[int]] = {i: [] for i in range(len(self.table))}
        for i, node in enumerate(nodes):
            scope = node["scope"]
            while scope != -1:
                members[scope].append(i)
                scope = self.table[scope]["parent"]
        children: dict[int, list[int]] = {}
        for s, scope in enumerate(self.table):
            if not scope["aux"]:
                children.setdefault(scope["parent"], []).append(s)
        order = self.graph.order()
        index = {name: i for i, name in enumerate(order)}
        for siblings in children.values():
            run: list[int] = []
            for s in siblings:
                if run and self._same(members, nodes, run[-1], s, order, index):
                    run.append(s)
                    continue
                self._close(run)
                run = [s]
            self._close(run)

    def _close(self, run: list[int]) -> None:
        if len(run) > 1:
            for s in run:
                self.table[s]["run"] = len(self.runs)
            self.runs.append({"scopes": list(run)})

    def _same(
        self,
        members: dict[int, list[int]],
        nodes: list[dict[str, Any]],
        a: int,
        b: int,
        order: list[str],
        index: dict[str, int],
    ) -> bool:
        first, second = members[a], members[b]
        if len(first) != len(second):
            return False
        graph = self.graph
        for i, j in zip(first, second, strict=True):
            x, y = graph.node(order[i]), graph.node(order[j])
            if (x.op, x.shape, x.frozen, x.synthetic) != (y.op, y.shape, y.frozen, y.synthetic):
                return False
        inside_first, inside_second = set(first), set(second)
        sources = {k for j in second for k in nodes[j]["inputs"]} - inside_second
        users = {index[u] for i in first for u in graph.users(order[i])} - inside_first
        return bool(sources) and sources <= inside_first and users <= inside_second
