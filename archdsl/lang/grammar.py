"""Find `grammar/archdsl.lark`, build the cached LALR parser, and name its terminals."""

from __future__ import annotations

import functools
from pathlib import Path

from lark import Lark

_CANDIDATES = (
    Path(__file__).resolve().parent / "archdsl.lark",  # installed wheel
    Path(__file__).resolve().parents[2] / "grammar" / "archdsl.lark",  # source checkout
)

_REGEX_LABELS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "SIZE": "a size like `3x3`",
    "STRING": 'a string like `"file.arch"`',
    "CALL_OPEN": "a call like `name(`",
    "_NL": "a newline",
    "$END": "the end of the file",
}


def grammar_path() -> Path:
    """The grammar file: inside the installed package, else in the source tree."""
    for candidate in _CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("grammar/archdsl.lark not found beside the archdsl package")


@functools.cache
def lark_parser() -> Lark:
    """The LALR parser, built once per process."""
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        start="spec",
        propagate_positions=True,
        maybe_placeholders=True,
    )


@functools.cache
def terminal_labels() -> dict[str, str]:
    """How each terminal reads in an 'expected ...' message."""
    labels = dict(_REGEX_LABELS)
    for terminal in lark_parser().terminals:
        pattern = terminal.pattern
        if terminal.name not in labels and pattern.type == "str":
            labels[terminal.name] = f"`{pattern.value}`"
    return labels


@functools.cache
def keywords() -> tuple[str, ...]:
    """The reserved words of the language (`network`, `residual`, `x`, ...), from the grammar."""
    words = {
        terminal.pattern.value
        for terminal in lark_parser().terminals
        if terminal.pattern.type == "str" and terminal.pattern.value.isidentifier()
    }
    return tuple(sorted(words))
