"""The `archdsl` command line, last: `main` (the parser and `_COMMANDS`) and one module per
subcommand (`check`, `compile`, `graph`, `fmt`, `fuzz`, `run`, `train`), each imported only
when it runs, so `archdsl check` starts without JAX.

May import every part, through public names.
"""

from archdsl.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
