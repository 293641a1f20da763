"""Source text and positions in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def split_lines(text: str) -> list[str]:
    """Lines as the parser counts them: split at `\n` only (a `\r\n` loses its `\r`).

    `str.splitlines` also splits at a lone `\r`, a form feed and other separators,
    which the grammar treats as spaces: a diagnostic would quote the wrong line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


@dataclass(frozen=True)
class Source:
    """A spec's text and the file it came from."""

    filename: str
    text: str = field(repr=False)

    def line(self, number: int) -> str:
        """Line `number` (1-based), tabs expanded, without its newline."""
        lines = split_lines(self.text)
        if 1 <= number <= len(lines):
            return lines[number - 1].expandtabs(4)
        return ""


@dataclass(frozen=True)
class Span:
    """A region of a spec.

    Lines and columns are 1-based; `end_column` is exclusive (Lark's convention:
    "the next column after the end of the token").
    """

    source: Source = field(repr=False, compare=False)
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def from_meta(cls, source: Source, meta: Any) -> Span:
        """The span of a Lark tree node (parsed with `propagate_positions`)."""
        if getattr(meta, "empty", True):
            return cls(source, 1, 1, 1, 2)
        return cls(source, meta.line, meta.column, meta.end_line, meta.end_column)

    @classmethod
    def from_token(cls, source: Source, token: Any) -> Span:
        """The span of one Lark token."""
        line = token.line or 1
        column = token.column or 1
        end_line = token.end_line or line
        end_column = token.end_column or column + 1
        return cls(source, line, column, end_line, end_column)

    @classmethod
    def point(cls, source: Source, line: int, column: int) -> Span:
        """A one-character span."""
        return cls(source, line, column, line, column + 1)

    @property
    def filename(self) -> str:
        """The file this span is in."""
        return self.source.filename

    def __str__(self) -> str:
        return f"{self.source.filename}:{self.line}:{self.column}"
