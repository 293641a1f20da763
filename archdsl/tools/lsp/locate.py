"""Positions: LSP ranges from spans, and the syntax under a cursor.

LSP counts lines and characters from 0 and ranges end exclusive; spans count from 1
and end exclusive too, so the conversion is a shift. Columns are characters, which
matches the editor's UTF-16 units for every character of the Basic Multilingual Plane.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types

from archdsl.lang import syntax as s
from archdsl.lang.source import Span


def to_range(span: Span) -> types.Range:
    """The editor range of a span."""
    return types.Range(
        start=types.Position(line=span.line - 1, character=span.column - 1),
        end=types.Position(line=span.end_line - 1, character=max(span.end_column - 1, 0)),
    )


def to_location(span: Span) -> types.Location:
    """A span as a location in its own file."""
    return types.Location(uri=path_to_uri(span.filename), range=to_range(span))


def path_to_uri(path: str) -> str:
    """`file:///abs/path` for a file name as the loader wrote it."""
    return Path(path).resolve().as_uri()


def uri_to_path(uri: str) -> str:
    """The file system path of a `file:` URI (other schemes keep their path part)."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else uri


def contains(span: Span, line: int, column: int) -> bool:
    """Whether 1-based (line, column) falls in the span, its end included (a word's end)."""
    return (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column)


def children(node: s.Syntax) -> Iterator[s.Syntax]:
    """The syntax nodes directly inside `node`, in field order."""
    for f in dataclasses.fields(node):
        if f.name == "span":
            continue
        value = getattr(node, f.name)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, s.Syntax):
                yield item
            elif isinstance(item, tuple):  # nothing nests tuples today; stay safe
                yield from (i for i in item if isinstance(i, s.Syntax))


def path_at(spec: s.Spec, line: int, column: int) -> list[s.Syntax]:
    """The syntax nodes containing a 1-based position, outermost first."""
    path: list[s.Syntax] = []
    node: s.Syntax = spec
    while True:
        inner = [c for c in children(node) if contains(c.span, line, column)]
        if not inner:
            return path
        # Prefer the smallest: an alias at the end of a call sits inside the call's span.
        node = min(inner, key=lambda c: (c.span.end_line - c.span.line, _width(c.span)))
        path.append(node)


def _width(span: Span) -> int:
    return span.end_column - span.column if span.line == span.end_line else 10**6


def walk(node: s.Syntax) -> Iterator[s.Syntax]:
    """Every syntax node under `node` (itself included), depth first, in source order."""
    yield node
    for child in children(node):
        yield from walk(child)


def enclosing_definition(path: list[s.Syntax]) -> s.BlockDef | s.NetworkDef | None:
    """The block or network a cursor path is in."""
    for node in path:
        if isinstance(node, s.BlockDef | s.NetworkDef):
            return node
    return None
