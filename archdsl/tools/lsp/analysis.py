"""One document's analysis: its syntax (recovered where it does not parse), errors, graphs.

Everything the editor features read comes from here, computed once per change: the
server answers hovers and completions from the last analysis without re-parsing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from archdsl.errors import ArchError, ArchErrors, ArchSyntaxError
from archdsl.frontend import paused_gc
from archdsl.graph.ir import Graph, with_shape
from archdsl.graph.lower import lower
from archdsl.graph.ops import ShapeRuleError
from archdsl.graph.passes import run_pipeline
from archdsl.graph.report import LayerRow, layer_row
from archdsl.lang import syntax as s
from archdsl.lang.loader import Program, load_text
from archdsl.lang.parser import parse
from archdsl.lang.source import Span

SpanKey = tuple[str, int, int, int, int]
"""A span as a hashable key: file, line, column, end line, end column."""

NodeRef = tuple[str, str]
"""A node of one network's graph: (network, node name)."""

MAX_REPAIRS = 24
"""Lines blanked (or braces closed) while recovering a syntax tree from broken text."""


def span_key(span: Span) -> SpanKey:
    """The hashable identity of a span (spans compare without their file)."""
    return (span.filename, span.line, span.column, span.end_line, span.end_column)


@dataclass
class Analysis:
    """What is known about one version of a document."""

    filename: str
    text: str
    errors: tuple[ArchError, ...] = ()
    spec: s.Spec | None = None
    """The syntax tree: of the text itself, or of a repaired copy when it does not parse."""
    recovered: bool = False
    """True when `spec` comes from a repaired copy (lines blanked at each syntax error)."""
    program: Program | None = None
    graphs: dict[str, Graph] = field(default_factory=dict)
    """Each network of the file that lowers: checked, or shaped up to its first error."""
    rows: dict[NodeRef, LayerRow] = field(default_factory=dict)
    layers: dict[SpanKey, list[NodeRef]] = field(default_factory=dict)
    """The nodes each piece of syntax made (several for a layer in a block or a repeat)."""
    instances: dict[SpanKey, dict[tuple[object, ...], list[NodeRef]]] = field(default_factory=dict)
    """For each block call site, its instances' nodes, keyed by the call sites above it."""


def analyze(text: str, filename: str) -> Analysis:
    """Parse, load imports, lower and check every network of a document, keeping all errors.

    Never raises an `ArchError`: errors are collected in `Analysis.errors`.
    """
    with paused_gc():
        return _analyze(text, filename)


def _analyze(text: str, filename: str) -> Analysis:
    analysis = Analysis(filename, text)
    errors: list[ArchError] = []
    base = Path(filename).parent
    try:
        program = load_text(text, filename, base=base)
    except ArchError as error:
        program = None
        found = _flatten(error)
        errors.extend(found)
        if any(
            isinstance(e, ArchSyntaxError) and e.span and e.span.filename == filename for e in found
        ):
            analysis.recovered = True
            repaired = _repair(text, filename)
            if repaired is not None:
                with contextlib.suppress(ArchError):
                    program = load_text(repaired, filename, base=base)
                if program is None:
                    with contextlib.suppress(ArchError):
                        analysis.spec = parse(repaired, filename)
        else:
            with contextlib.suppress(ArchError):
                analysis.spec = parse(text, filename)
    if program is None:
        analysis.errors = tuple(errors)
        return analysis
    analysis.spec = program.main
    analysis.program = program
    for network in program.networks:
        if any(p.default is None for p in network.params):
            continue  # needs arguments from the command line: nothing to check alone
        graph, found = _build(program, network.name.text)
        if not analysis.recovered:
            errors.extend(found)
        if graph is not None:
            analysis.graphs[network.name.text] = graph
    analysis.errors = tuple(_unique(errors))
    _index(analysis)
    return analysis


def _build(program: Program, network: str) -> tuple[Graph | None, list[ArchError]]:
    """A network's checked graph; failing that, its graph shaped up to the first error."""
    try:
        graph = lower(program, network)
    except ArchError as error:
        return None, _flatten(error)
    try:
        return run_pipeline(graph), []
    except ArchError as error:
        return _partial_shapes(graph), _flatten(error)


def _partial_shapes(graph: Graph) -> Graph:
    """Shapes for every node whose inputs have one and whose rule accepts them."""
    graph = graph.copy()
    for name in graph.order():
        node = graph.node(name)
        in_shapes = [graph.node(i).shape for i in node.inputs]
        if any(shape is None for shape in in_shapes):
            continue
        try:
            shape = node.op.infer(*in_shapes)  # type: ignore[arg-type]
        except (ShapeRuleError, ArchError, ValueError, TypeError):
            continue
        graph.replace(name, with_shape(node, shape))
    return graph


def _repair(text: str, filename: str) -> str | None:
    """A copy of `text` that parses: lines blanked at each syntax error, open braces closed.

    Blanking keeps every other line where it was, so the recovered tree's spans still
    point into the document the user sees. An error on the first token of a line most
    often means the line before ran on (`dense 10 ->`), so that line goes first.
    """
    lines = text.split("\n")
    last = -1
    for _ in range(MAX_REPAIRS):
        candidate = "\n".join(lines)
        try:
            parse(candidate, filename)
            return candidate
        except ArchSyntaxError as error:
            span = error.span
            if span is None:
                return None
            line = span.line - 1
            if line >= len(lines) or "end of file" in error.message:
                lines.append("}")
                continue
            before = [i for i in range(line) if lines[i].strip()]
            first_token = not lines[line][: span.column - 1].strip()
            if first_token and before and line != last:
                lines[before[-1]] = ""
            elif lines[line].strip():
                lines[line] = ""
            else:
                lines.append("}")
            last = line
        except ArchError:
            return None
    return None


def _flatten(error: ArchError) -> list[ArchError]:
    return list(error.errors) if isinstance(error, ArchErrors) else [error]


def _unique(errors: list[ArchError]) -> Iterator[ArchError]:
    """Each error once: two networks using one broken block report it twice."""
    seen: set[tuple[str, SpanKey | None]] = set()
    for error in errors:
        key = (error.message, span_key(error.span) if error.span else None)
        if key not in seen:
            seen.add(key)
            yield error


def _index(analysis: Analysis) -> None:
    """Map syntax to the nodes it made, and block call sites to their instances."""
    for network, graph in analysis.graphs.items():
        for name in graph.order():
            node = graph.node(name)
            ref = (network, name)
            row = _row(graph, name)
            if row is not None:
                analysis.rows[ref] = row
            analysis.layers.setdefault(span_key(node.span), []).append(ref)
            keys = [span_key(site) for site in node.trace]
            for i, key in enumerate(keys):
                outer = (network, *keys[i + 1 :])
                analysis.instances.setdefault(key, {}).setdefault(outer, []).append(ref)


def _row(graph: Graph, name: str) -> LayerRow | None:
    """A node's report figures, as `build_report` gives them; None while unshaped."""
    return layer_row(graph, name)
