"""Completion: layer and block names where a step starts, arguments inside one, taps after `from`."""

from __future__ import annotations

import dataclasses
import re

from lsprotocol import types

from archdsl.graph.ops import OPS
from archdsl.lang import syntax as s
from archdsl.lang.grammar import keywords
from archdsl.tools.lsp.analysis import Analysis
from archdsl.tools.lsp.hover import signature
from archdsl.tools.lsp.locate import enclosing_definition, path_at
from archdsl.tools.lsp.navigate import aliases

_STATEMENT_WORDS = ("residual", "concat", "add", "repeat", "aux", "from", "use", "frozen")
_TOP_WORDS = ("network", "block", "import")
_FROM = re.compile(r"(?:^|\s)from\s+[\w.]*$")
_USE = re.compile(r"(?:^|\s)use\s+\w*$")
_STEP_START = re.compile(r"(?:^|->|\{)\s*\w*$")


def completions(analysis: Analysis, line: int, character: int) -> list[types.CompletionItem]:
    """Candidates at a 0-based position of the analysed text."""
    lines = analysis.text.split("\n")
    prefix = lines[line][:character] if line < len(lines) else ""
    prefix = prefix.split("#", 1)[0] if "#" in prefix else prefix
    if _FROM.search(prefix):
        return _taps(analysis, line, character)
    if _USE.search(prefix):
        return [_definition_item(d) for d in _definitions(analysis, s.NetworkDef)]
    if not prefix.strip():
        depth = _depth(lines, line, character)
        if depth == 0:
            return [_keyword(w) for w in _TOP_WORDS]
    if _STEP_START.search(prefix):
        return _step_words(analysis)
    step = re.split(r"->|\{", prefix)[-1].strip()
    word = re.match(r"(\w+)\(?", step)
    return _arguments(analysis, word.group(1)) if word else []


def _depth(lines: list[str], line: int, character: int) -> int:
    """Braces open at a position (comments and strings are rare enough to ignore)."""
    text = "\n".join([*lines[:line], lines[line][:character] if line < len(lines) else ""])
    return text.count("{") - text.count("}")


def _keyword(word: str) -> types.CompletionItem:
    return types.CompletionItem(label=word, kind=types.CompletionItemKind.Keyword)


def _definitions(analysis: Analysis, kind: type) -> list[s.BlockDef | s.NetworkDef]:
    if analysis.program is not None:
        found = analysis.program.definitions.values()
    else:
        found = analysis.spec.items if analysis.spec else ()  # type: ignore[assignment]
    return [d for d in found if isinstance(d, kind)]


def _definition_item(definition: s.BlockDef | s.NetworkDef) -> types.CompletionItem:
    return types.CompletionItem(
        label=definition.name.text,
        kind=types.CompletionItemKind.Class
        if isinstance(definition, s.NetworkDef)
        else types.CompletionItemKind.Function,
        detail=signature(definition),
    )


def _step_words(analysis: Analysis) -> list[types.CompletionItem]:
    """Layers, blocks in scope, and the words that start a statement."""
    items = [
        types.CompletionItem(
            label=name,
            kind=types.CompletionItemKind.Operator,
            detail=(cls.__doc__ or "").strip().split("\n")[0],
        )
        for name, cls in OPS.items()
        if cls.user_visible
    ]
    items += [_definition_item(d) for d in _definitions(analysis, s.BlockDef)]
    items += [_keyword(w) for w in _STATEMENT_WORDS if w in keywords()]
    return items


def _arguments(analysis: Analysis, word: str) -> list[types.CompletionItem]:
    """A layer's attributes (and bare flags), or a block's parameters."""
    op_class = OPS.get(word)
    if op_class is not None and op_class.user_visible:
        items = [
            types.CompletionItem(
                label=f.name,
                kind=types.CompletionItemKind.Property,
                detail=str(f.metadata.get("doc", "")) or None,
                insert_text=f"{f.name} = ",
            )
            for f in dataclasses.fields(op_class)
        ]
        items += [
            types.CompletionItem(label=flag, kind=types.CompletionItemKind.EnumMember)
            for flag in op_class.flags
        ]
        return items
    for block in _definitions(analysis, s.BlockDef):
        if block.name.text == word:
            return [
                types.CompletionItem(
                    label=p.name.text,
                    kind=types.CompletionItemKind.Variable,
                    insert_text=f"{p.name.text} = ",
                    detail=signature(block),
                )
                for p in block.params
            ]
    return []


def _taps(analysis: Analysis, line: int, character: int) -> list[types.CompletionItem]:
    """The names given so far in the enclosing definition."""
    if analysis.spec is None:
        return []
    path = path_at(analysis.spec, line + 1, character + 1)
    scope = enclosing_definition(path)
    if scope is None:
        return []
    seen: dict[str, types.CompletionItem] = {}
    for alias in aliases(scope):
        if alias.span.line - 1 < line and alias.text not in seen:
            seen[alias.text] = types.CompletionItem(
                label=alias.text,
                kind=types.CompletionItemKind.Reference,
                detail=f"named on line {alias.span.line}",
            )
    return list(seen.values())
