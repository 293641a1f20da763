"""The error hierarchy and how an error renders itself: position, source line, caret."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from archdsl.lang.source import Span, split_lines


class ArchError(Exception):
    """A problem in a spec, reported with where it is."""

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        *,
        notes: Sequence[str] = (),
        help: str | None = None,
        trace: Sequence[Span] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.notes = tuple(notes)
        self.help = help
        self.trace = tuple(trace)
        """Call sites of the block instantiations that led here, innermost first."""

    def __str__(self) -> str:
        return render(self)

    def to_json(self) -> dict[str, object]:
        """The error as plain data (`--json`): position, message, notes, help, call sites."""
        span = self.span
        where: dict[str, object] = {"file": None, "line": None, "column": None}
        if span is not None:
            where = {
                "file": span.filename,
                "line": span.line,
                "column": span.column,
                "end_line": span.end_line,
                "end_column": span.end_column,
            }
        return {
            "severity": "error",
            "kind": type(self).__name__,
            **where,
            "message": self.message,
            "notes": list(self.notes),
            "help": self.help,
            "trace": [str(site) for site in self.trace],
            "rendered": render(self),
        }

    def sort_key(self) -> tuple[str, int, int]:
        """Errors sort by file, line, column."""
        if self.span is None:
            return ("", 0, 0)
        return (self.span.filename, self.span.line, self.span.column)


class ArchSyntaxError(ArchError):
    """The text does not follow the grammar."""


class ArchNameError(ArchError):
    """An unknown or duplicate name: layer, block, argument, tap, import."""


class ArchShapeError(ArchError):
    """A shape rule failed, or a `: shape` assertion did not hold."""


class ArchValueError(ArchError):
    """A value of the wrong kind or out of range."""


class ArchImportError(ArchError):
    """An import that cannot be read, or that imports itself."""


class ArchErrors(ArchError):
    """Several independent errors, sorted by position."""

    def __init__(self, errors: Iterable[ArchError]) -> None:
        self.errors = tuple(sorted(_flatten(errors), key=ArchError.sort_key))
        first = self.errors[0]
        super().__init__(first.message, first.span)

    def to_json(self) -> dict[str, object]:
        """The first error's fields, and every error under `errors`."""
        return {**self.errors[0].to_json(), "errors": [e.to_json() for e in self.errors]}

    def __str__(self) -> str:
        body = "\n\n".join(render(e) for e in self.errors)
        return f"{body}\n\n{len(self.errors)} errors"


def _flatten(errors: Iterable[ArchError]) -> list[ArchError]:
    out: list[ArchError] = []
    for error in errors:
        out.extend(_flatten(error.errors) if isinstance(error, ArchErrors) else [error])
    return out


def raise_all(errors: Sequence[ArchError]) -> None:
    """Raise nothing, the one error, or all of them together."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ArchErrors(errors)


def render(error: ArchError) -> str:
    """`file:line:col: error: message`, the source line, a caret, notes and help."""
    span = error.span
    message = escape_controls(error.message)
    if span is None:
        lines = [f"error: {message}"]
    else:
        lines = [f"{escape_controls(str(span))}: error: {message}"]
        lines.extend(_excerpt(span))
    for site in error.trace:
        lines.append(f"   = note: in the block called at {escape_controls(str(site))}")
    lines.extend(f"   = note: {escape_controls(note)}" for note in error.notes)
    if error.help:
        lines.append(f"   = help: {escape_controls(error.help)}")
    return "\n".join(lines)


def _is_control(char: str) -> bool:
    """Characters a terminal acts on or reorders (escapes, bidi overrides), not prints."""
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def escape_controls(text: str) -> str:
    """`text` with control characters written as escapes (`\\x1b`), safe for a terminal."""
    if text.isprintable():
        return text
    return "".join(
        ascii(char)[1:-1] if _is_control(char) and char != "\n" else char for char in text
    )


def _shown(line: str) -> str:
    """A source line for display: each control character becomes one `\ufffd`.

    One character for one keeps the caret under the right column.
    """
    if line.isprintable():
        return line
    return "".join("\ufffd" if _is_control(char) else char for char in line)


_MAX_SHOWN = 120
"""Characters of a source line shown in a diagnostic."""


def _excerpt(span: Span) -> list[str]:
    text = _shown(span.source.line(span.line))
    if not text and span.line > len(split_lines(span.source.text)):
        return []
    number = str(span.line)
    gutter = " " * len(number)
    end = span.end_column if span.end_line == span.line else len(text) + 1
    column = span.column
    if len(text) > _MAX_SHOWN:
        # Show a window around the column of a very long line.
        start = max(0, column - 1 - _MAX_SHOWN // 2)
        text = ("..." if start else "") + text[start : start + _MAX_SHOWN] + "..."
        shift = start - (3 if start else 0)
        column -= shift
        end = min(end - shift, len(text) + 1)
    width = max(1, min(end - column, _MAX_SHOWN))
    return [
        f" {gutter} |",
        f" {number} | {text}",
        f" {gutter} | {' ' * (column - 1)}{'^' * width}",
    ]
