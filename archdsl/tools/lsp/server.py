"""The pygls server: wires LSP requests to the analysis and the feature functions.

Each open document is analysed once per change (parse, imports, every network lowered
and checked); hovers, completion and navigation then read that analysis.
"""

from __future__ import annotations

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from archdsl.errors import ArchError
from archdsl.tools.fmt import format_text
from archdsl.tools.lsp.analysis import Analysis, analyze
from archdsl.tools.lsp.complete import completions
from archdsl.tools.lsp.diagnostics import diagnostics
from archdsl.tools.lsp.hover import hover
from archdsl.tools.lsp.locate import uri_to_path
from archdsl.tools.lsp.navigate import definition, symbols

VERSION = "0.1.0"


class ArchServer(LanguageServer):
    """A language server that keeps each open document's latest analysis."""

    def __init__(self) -> None:
        super().__init__("archdsl", VERSION)
        self.analyses: dict[str, Analysis] = {}

    def refresh(self, uri: str) -> Analysis:
        """Analyse the document's current text and publish its diagnostics."""
        document = self.workspace.get_text_document(uri)
        try:
            analysis = analyze(document.source, uri_to_path(uri))
            found = diagnostics(analysis)
        except RecursionError:
            analysis = Analysis(uri_to_path(uri), document.source)
            found = [_whole_file("the spec nests too deeply to analyse")]
        except Exception as error:  # a compiler bug must not take the editor's server down
            analysis = Analysis(uri_to_path(uri), document.source)
            found = [_whole_file(f"archdsl lsp internal error: {type(error).__name__}: {error}")]
        self.analyses[uri] = analysis
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=found, version=document.version)
        )
        return analysis

    def analysis(self, uri: str) -> Analysis:
        """The latest analysis of a document (made now if it has none yet)."""
        found = self.analyses.get(uri)
        return found if found is not None else self.refresh(uri)


def _whole_file(message: str) -> types.Diagnostic:
    start = types.Position(line=0, character=0)
    return types.Diagnostic(
        range=types.Range(start=start, end=start),
        message=message,
        severity=types.DiagnosticSeverity.Error,
        source="archdsl",
    )


def build_server() -> ArchServer:
    """A server with every feature registered."""
    server = ArchServer()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: ArchServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.refresh(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: ArchServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.refresh(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: ArchServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.refresh(params.text_document.uri)  # an imported file may have changed on disk

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: ArchServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.analyses.pop(params.text_document.uri, None)
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def on_hover(ls: ArchServer, params: types.HoverParams) -> types.Hover | None:
        pos = params.position
        return hover(ls.analysis(params.text_document.uri), pos.line, pos.character)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def on_definition(ls: ArchServer, params: types.DefinitionParams) -> types.Location | None:
        pos = params.position
        return definition(ls.analysis(params.text_document.uri), pos.line, pos.character)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[" ", ">"]),
    )
    def on_completion(ls: ArchServer, params: types.CompletionParams) -> types.CompletionList:
        pos = params.position
        items = completions(ls.analysis(params.text_document.uri), pos.line, pos.character)
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def on_symbols(
        ls: ArchServer, params: types.DocumentSymbolParams
    ) -> list[types.DocumentSymbol]:
        return symbols(ls.analysis(params.text_document.uri))

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def on_format(
        ls: ArchServer, params: types.DocumentFormattingParams
    ) -> list[types.TextEdit] | None:
        document = ls.workspace.get_text_document(params.text_document.uri)
        return format_edits(document.source, uri_to_path(params.text_document.uri))

    return server


def format_edits(text: str, filename: str) -> list[types.TextEdit] | None:
    """One edit replacing the whole text with `archdsl fmt`'s; None if it does not parse."""
    try:
        formatted = format_text(text, filename)
    except ArchError:
        return None
    if formatted == text:
        return []
    lines = text.split("\n")
    end = types.Position(line=len(lines) - 1, character=len(lines[-1]))
    whole = types.Range(start=types.Position(line=0, character=0), end=end)
    return [types.TextEdit(range=whole, new_text=formatted)]


def serve() -> None:
    """Run the server over stdin and stdout until the client says exit."""
    build_server().start_io()
