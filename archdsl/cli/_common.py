"""What several subcommands share: network arguments from the command line, the console."""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console

from archdsl.errors import ArchValueError
from archdsl.lang.parser import parse
from archdsl.lang.values import Value, evaluate


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """`--network NAME`, repeatable `--arg NAME=VALUE` and `--import-path DIR`."""
    add_import_path_option(parser)
    parser.add_argument(
        "--network",
        metavar="NAME",
        help="which network of the file (default: the last one)",
    )
    parser.add_argument(
        "-a",
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a network argument, e.g. `--arg classes=10` (repeatable)",
    )


def add_import_path_option(parser: argparse.ArgumentParser) -> None:
    """Repeatable `--import-path DIR`: a folder, besides the spec's own, imports may read."""
    parser.add_argument(
        "-I",
        "--import-path",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder imports may also resolve in (repeatable); by default imports "
        "stay inside the spec's own folder",
    )


def network_arguments(pairs: list[str]) -> dict[str, Value]:
    """Parse `NAME=VALUE` pairs; values are `.arch` expressions (`10`, `224x224`, `same`)."""
    out: dict[str, Value] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ArchValueError(f"`--arg {pair}`: expected NAME=VALUE, like `classes=10`")
        spec = parse(f"network _ {{\n  _ {text}\n}}", f"--arg {key}")
        chain = spec.items[0].body[0]  # type: ignore[union-attr]
        args = chain.steps[0].args  # type: ignore[union-attr]
        if len(args) != 1:
            raise ArchValueError(f"`--arg {pair}`: expected one value")
        out[key] = evaluate(args[0], {})
    return out


def console(stream: object = None) -> Console:
    """A rich console: colour only on a terminal and without NO_COLOR; wide when piped."""
    file = stream or sys.stdout
    tty = hasattr(file, "isatty") and file.isatty()  # type: ignore[union-attr]
    return Console(
        file=file,  # type: ignore[arg-type]
        width=None if tty else 160,
        no_color=not tty or "NO_COLOR" in os.environ,
        highlight=False,
        soft_wrap=False,
    )
