"""Go to definition (blocks, networks, imports, taps) and the outline of a document."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from archdsl.lang import syntax as s
from archdsl.tools.lsp.analysis import Analysis
from archdsl.tools.lsp.hover import signature
from archdsl.tools.lsp.locate import (
    enclosing_definition,
    path_at,
    path_to_uri,
    to_location,
    to_range,
    walk,
)


def definition(analysis: Analysis, line: int, character: int) -> types.Location | None:
    """Where the name at a 0-based position is defined, or None."""
    if analysis.spec is None:
        return None
    path = path_at(analysis.spec, line + 1, character + 1)
    if not path:
        return None
    node = path[-1]
    parent = path[-2] if len(path) > 1 else None
    if isinstance(node, s.Import):
        target = Path(analysis.filename).parent / node.path
        start = types.Position(line=0, character=0)
        return types.Location(
            uri=path_to_uri(str(target)), range=types.Range(start=start, end=start)
        )
    if not isinstance(node, s.Ident):
        return None
    if (isinstance(parent, s.Call) and node is parent.op) or (
        isinstance(parent, s.Use) and node is parent.network
    ):
        found = _lookup(analysis, node.text)
        return to_location(found.name.span) if found is not None else None
    if isinstance(parent, s.Use):  # `upto NAME`: a point in the base network
        base = _lookup(analysis, parent.network.text)
        return _alias_in(base, node.text.split(".")[0], None) if base is not None else None
    if isinstance(parent, s.Chain) and node is parent.source:
        scope = enclosing_definition(path)
        return _alias_in(scope, node.text.split(".")[0], node) if scope else None
    return None


def _lookup(analysis: Analysis, name: str) -> s.BlockDef | s.NetworkDef | None:
    if analysis.program is not None:
        return analysis.program.definitions.get(name)
    for item in analysis.spec.items if analysis.spec else ():
        if isinstance(item, s.BlockDef | s.NetworkDef) and item.name.text == name:
            return item
    return None


def aliases(scope: s.Syntax) -> list[s.Ident]:
    """The names given inside a definition (`as NAME`, `aux NAME`), in source order."""
    found: list[s.Ident] = []
    for node in walk(scope):
        alias = getattr(node, "alias", None)
        if isinstance(alias, s.Ident):
            found.append(alias)
        if isinstance(node, s.Aux):
            found.append(node.name)
    return sorted(found, key=lambda i: (i.span.line, i.span.column))


def _alias_in(scope: s.Syntax, name: str, use: s.Ident | None) -> types.Location | None:
    """The `as NAME` a tap refers to: the last one before the use, else the first."""
    named = [a for a in aliases(scope) if a.text == name]
    if not named:
        return None
    if use is not None:
        before = [a for a in named if (a.span.line, a.span.column) < (use.span.line, 0)]
        if before:
            return to_location(before[-1].span)
    return to_location(named[0].span)


def symbols(analysis: Analysis) -> list[types.DocumentSymbol]:
    """The outline: each network and block, with its named steps and aux heads inside."""
    if analysis.spec is None:
        return []
    out = []
    for item in analysis.spec.items:
        if not isinstance(item, s.BlockDef | s.NetworkDef):
            continue
        kind = (
            types.SymbolKind.Class if isinstance(item, s.NetworkDef) else types.SymbolKind.Function
        )
        children = [
            types.DocumentSymbol(
                name=alias.text,
                kind=types.SymbolKind.Field,
                range=to_range(alias.span),
                selection_range=to_range(alias.span),
            )
            for alias in aliases(item)
        ]
        out.append(
            types.DocumentSymbol(
                name=item.name.text,
                detail=signature(item),
                kind=kind,
                range=to_range(item.span),
                selection_range=to_range(item.name.span),
                children=children,
            )
        )
    return out
