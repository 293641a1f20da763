"""Find `grammar/archdsl.lark`, build the cached LALR parser, and name its terminals."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

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


def cache_folder() -> Path | None:
    """Where analysed parsers are kept between runs: a folder of the user's own.

    `$ARCHDSL_CACHE` if set (empty: no cache), else `$XDG_CACHE_HOME/archdsl` or
    `~/.cache/archdsl`; None when it cannot be made. Not Lark's default (`cache=True`,
    a predictable name in the shared temporary folder, whose pickle another user
    could plant).
    """
    chosen = os.environ.get("ARCHDSL_CACHE")
    try:
        if chosen is not None:
            folder = Path(chosen) if chosen else None
        else:
            base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
            folder = Path(base) / "archdsl"
        if folder is not None:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home folder to be found
        return None
    return folder


def build_lark(name: str, grammar: Path | None = None, **options: Any) -> Lark:
    """An LALR parser for the grammar, its analysis cached on disk under `name`.

    Building the LALR tables takes about 0.1 s, a third of `archdsl check`'s fixed cost;
    loading them takes a tenth of that. Lark checks the cache file against a hash of the
    grammar, the options and its own version, and rebuilds (and rewrites it) on any
    mismatch or unreadable file, so a stale or half-written cache is never used.
    `grammar`: another grammar file (a test's), never cached.
    """
    folder = cache_folder() if grammar is None else None
    cache: str | bool = str(folder / f"{name}.lark-cache") if folder is not None else False
    return Lark(
        (grammar or grammar_path()).read_text(encoding="utf-8"),
        parser="lalr",
        start="spec",
        maybe_placeholders=True,
        cache=cache,
        **options,
    )


@functools.cache
def lark_parser(grammar: Path | None = None) -> Lark:
    """The LALR parser that builds Lark trees (for diagnostics), built once per process."""
    return build_lark("tree", grammar, propagate_positions=True)


@functools.cache
def terminal_labels(grammar: Path | None = None) -> dict[str, str]:
    """How each terminal reads in an 'expected ...' message."""
    labels = dict(_REGEX_LABELS)
    for terminal in lark_parser(grammar).terminals:
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
