"""The parser reads the same with and without Lark's Cython plugin (`lark-cython`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from archdsl.errors import ArchError
from archdsl.lang import parser
from archdsl.lang.source import Span

SPECS = sorted(Path("specs").glob("*.arch"))


def _spans(node: Any) -> list[tuple[int, int, int, int]]:
    """Every span in a syntax tree, depth first: spans are excluded from `==`."""
    found = []
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for field in dataclasses.fields(node):
            value = getattr(node, field.name)
            if isinstance(value, Span):
                found.append((value.line, value.column, value.end_line, value.end_column))
            else:
                found += _spans(value)
    elif isinstance(node, tuple | list):
        for item in node:
            found += _spans(item)
    return found


def _parse(text: str, cython: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(parser, "USE_CYTHON", cython)
    try:
        return parser.parse(text, "x.arch")
    except ArchError as error:
        return str(error)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_same_syntax_and_spans(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = path.read_text(encoding="utf-8")
    fast, pure = (_parse(text, cython, monkeypatch) for cython in (True, False))
    assert fast == pure
    assert _spans(fast) == _spans(pure) and len(_spans(fast)) > 10


@pytest.mark.parametrize(
    "text",
    [
        "network N {\n    input 28x28x1\n    residul {\n        conv 8 3x3\n    }\n}\n",
        "network N {\n    input 28x28x1 $\n}\n",
        "network N {\n    input 2",
        "network N {\n    conv (1\n}\n",
        "network N { input 1" + "0" * 60 + "x2 }\n",
    ],
)
def test_same_diagnostics(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, pure = (_parse(text, cython, monkeypatch) for cython in (True, False))
    assert isinstance(fast, str) and "error:" in fast
    assert fast == pure


def test_function_call_arguments_hold_no_punctuation(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make_divisible(c * 2, 8)`: the Cython parser's tokens are filtered like Lark's."""
    text = "network N(c = 20) {\n    input 8x8x3\n    conv make_divisible(c * 2, 8) 1x1\n}\n"
    fast, pure = (_parse(text, cython, monkeypatch) for cython in (True, False))
    assert fast == pure
    call = fast.items[0].body[1].steps[0].args[0]
    assert len(call.args) == 2 and not any(type(a).__name__ == "Token" for a in call.args)
