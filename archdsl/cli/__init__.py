"""The `archdsl` command line: one module per subcommand, each imported only when it runs."""

from archdsl.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
