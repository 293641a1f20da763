"""Rewrite the generated tables of docs/language.md from the op table and the attribute kinds.

python docs/make_language.py          # rewrite the tables in place
python docs/make_language.py --check  # exit 1 if a table is stale (the tests run this)

Each table sits between `<!-- generated: NAME -->` and `<!-- end generated -->`; the prose
around it is written by hand. Layers come from `ops.OPS` (user-visible ops, in table
order; ops with the same row are listed together), merges from the `ops.Merge`
subclasses, kinds from `lang.kinds.KINDS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from archdsl.graph import ops
from archdsl.lang.kinds import KINDS
from archdsl.lang.numbers import format_shape

PAGE = Path(__file__).resolve().parent / "language.md"
_BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return format_shape(value)
    return str(value)


def _notes(field: dataclasses.Field[Any]) -> str:
    """`(pair, default 1x1; window, 5x5 or 5)`: the kind, the default, the doc."""
    kind = field.metadata["kind"]
    notes = [kind.partition(":")[0]]
    if field.default is not dataclasses.MISSING and field.default is not None:
        notes[0] += f", default {_value(field.default)}"
    if kind.startswith("enum:"):
        notes.append(" \\| ".join(f"`{c}`" for c in kind[5:].split("|")))
    if field.metadata["doc"]:
        notes.append(field.metadata["doc"])
    return f"({'; '.join(notes)})"


def _row(cls: type[ops.Op]) -> tuple[str, str, str]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    positional = ", ".join(f"{name} {_notes(fields[name])}" for name in cls.positional)
    others = [
        f"`{f.name}{' N' if f.name in cls.keywords else ''}` {_notes(f)}"
        for f in fields.values()
        if f.name not in cls.positional
    ]
    text = ", ".join(others)
    if cls.flags:
        text += "; flags " + ", ".join(f"`{flag}`" for flag in cls.flags)
    return positional, text, cls.signature


def layers_table() -> str:
    """One row per distinct layer row; layers with equal rows share one."""
    rows: dict[tuple[str, str, str], list[str]] = {}
    for name, cls in ops.OPS.items():
        if cls.user_visible:
            rows.setdefault(_row(cls), []).append(f"`{name}`")
    lines = ["| layer | positional | other attributes | shape |", "| --- | --- | --- | --- |"]
    for (positional, others, signature), names in rows.items():
        lines.append(f"| {', '.join(names)} | {positional} | {others} | {signature} |")
    return "\n".join(lines) + "\n"


def merges_table() -> str:
    """Every merge and the first line of its docstring."""
    lines = ["| merge | what it does |", "| --- | --- |"]
    for name, cls in ops.OPS.items():
        if issubclass(cls, ops.Merge):
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            lines.append(f"| `{name}` | {doc} |")
    return "\n".join(lines) + "\n"


def kinds_table() -> str:
    """Every attribute kind: how a spec writes it and what the op receives."""
    lines = ["| kind | written | the op receives |", "| --- | --- | --- |"]
    for kind in KINDS.values():
        lines.append(f"| {kind.name} | {kind.written} | {kind.receives} |")
    return "\n".join(lines) + "\n"


TABLES = {"layers": layers_table, "merges": merges_table, "kinds": kinds_table}


def render(text: str) -> str:
    """The page with every generated table rewritten."""
    found = {match.group(2) for match in _BLOCK.finditer(text)}
    missing = set(TABLES) - found
    if missing:
        raise SystemExit(f"docs/language.md lacks the generated tables {sorted(missing)}")
    return _BLOCK.sub(lambda m: m.group(1) + TABLES[m.group(2)]() + m.group(4), text)


def main() -> int:
    """Rewrite the tables, or check them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = PAGE.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        if new != text:
            print("docs/language.md is stale: run `python docs/make_language.py`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
