"""Compiler errors as editor diagnostics: range, message, notes as related information."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from archdsl.errors import ArchError
from archdsl.lang import syntax as s
from archdsl.lang.source import Span
from archdsl.tools.lsp.analysis import Analysis
from archdsl.tools.lsp.locate import to_location, to_range

SOURCE = "archdsl"


def diagnostics(analysis: Analysis) -> list[types.Diagnostic]:
    """One diagnostic per error, placed in this document.

    An error inside an imported file is shown where this document reaches it: the
    outermost block call in this file that led there, else the import statement.
    """
    return [_diagnostic(analysis, error) for error in analysis.errors]


def _same_file(a: str, b: str) -> bool:
    return a == b or Path(a).resolve() == Path(b).resolve()


def _diagnostic(analysis: Analysis, error: ArchError) -> types.Diagnostic:
    span = error.span
    message = error.message
    related = []
    if span is not None and not _same_file(span.filename, analysis.filename):
        related.append(types.DiagnosticRelatedInformation(to_location(span), "the error"))
        message = f"in {Path(span.filename).name}:{span.line}:{span.column}: {message}"
        span = _site_here(analysis, error)
    for site in error.trace:
        related.append(
            types.DiagnosticRelatedInformation(to_location(site), "in the block called here")
        )
    where = to_location(error.span) if error.span is not None else None
    for note in error.notes:
        if where is not None:
            related.append(types.DiagnosticRelatedInformation(where, note))
        else:
            message += f"\nnote: {note}"
    if error.help:
        message += f"\nhelp: {error.help}"
    start = types.Position(line=0, character=0)
    return types.Diagnostic(
        range=to_range(span) if span is not None else types.Range(start=start, end=start),
        message=message,
        severity=types.DiagnosticSeverity.Error,
        source=SOURCE,
        code=type(error).__name__,
        related_information=related or None,
    )


def _site_here(analysis: Analysis, error: ArchError) -> Span | None:
    for site in reversed(error.trace):
        if _same_file(site.filename, analysis.filename):
            return site
    if analysis.spec is None:
        return None
    imports = [i for i in analysis.spec.items if isinstance(i, s.Import)]
    target = Path(error.span.filename).resolve() if error.span is not None else None
    base = Path(analysis.filename).parent
    for item in imports:
        if (base / item.path).resolve() == target:
            return item.span
    return imports[0].span if imports else None
