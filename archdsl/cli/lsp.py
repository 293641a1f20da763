"""`archdsl lsp`: the language server over stdin and stdout, for editors."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `lsp` subcommand."""
    parser = sub.add_parser(
        "lsp",
        help="run the language server over stdio (for editors)",
        description="Speak the Language Server Protocol on stdin/stdout: diagnostics as you "
        "type, hovers with shapes, go to definition, completion, formatting, outline.",
    )
    parser.add_argument("--stdio", action="store_true", help="accepted for editors; the default")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until the editor exits."""
    try:
        from archdsl.tools.lsp.server import serve
    except ImportError as error:  # pygls is an extra: say how to get it, not a traceback
        print(
            f"error: {error}; install the server with `pip install archdsl[lsp]`", file=sys.stderr
        )
        return 2
    serve()
    return 0
