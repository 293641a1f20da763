"""The `archdsl` command line: argparse front end dispatching to `archdsl.cli.*`."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from archdsl.errors import ArchError

_COMMANDS = (
    "compile",
    "check",
    "run",
    "train",
    "graph",
    "fuzz",
    "fmt",
    "lsp",
    "plot",
    "view",
    "zoo",
    "import_weights",
)
"""Modules of `archdsl.cli`; each has `register(subparsers)` setting `func`."""


def build_parser(commands: Sequence[str] = _COMMANDS) -> argparse.ArgumentParser:
    """The parser with `commands` registered (all of them by default)."""
    parser = argparse.ArgumentParser(
        prog="archdsl",
        description="Compile, check and run neural-network architectures written in .arch",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        importlib.import_module(f"archdsl.cli.{command}").register(sub)
    return parser


def _wanted(argv: Sequence[str]) -> Sequence[str]:
    """Only the named subcommand's module: `archdsl compile` should not import JAX."""
    first = next((a for a in argv if not a.startswith("-")), None)
    module = first.replace("-", "_") if first else None
    return (module,) if module in _COMMANDS else _COMMANDS


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand. Exit 0 ok, 1 a spec or data error, 2 a usage error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_wanted(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ArchError as error:
        report_error(error, as_json=getattr(args, "json", False))
        return 1
    except BrokenPipeError:
        # The reader (`| head`) went away: stop quietly, as `cat` does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except RecursionError:
        report_error(
            ArchError("the spec nests too deeply to compile"), as_json=getattr(args, "json", False)
        )
        return 1
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return 1
    except OSError as error:
        # A last line of defence: file errors are meant to be ArchIOErrors already.
        from archdsl.io import os_error

        print(str(os_error(error.filename or "?", error, "use")), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def report_error(error: ArchError, *, as_json: bool = False) -> None:
    """The diagnostic on stderr; with `--json`, also one JSON object on stdout for tools."""
    print(str(error), file=sys.stderr)
    if as_json:
        print(json.dumps(error.to_json(), indent=2))
