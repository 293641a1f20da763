"""`archdsl check FILES...`: validate many specs; every network with its default arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from archdsl.cli._common import add_import_path_option
from archdsl.errors import ArchError
from archdsl.frontend import build_program_graph, paused_gc
from archdsl.lang.loader import load_file


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `check` subcommand."""
    parser = sub.add_parser(
        "check",
        help="validate .arch files",
        description="Check every network in each file.",
    )
    parser.add_argument("files", nargs="+", help=".arch files")
    add_import_path_option(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.set_defaults(func=run)


def check_file(path: str, *, import_path: Sequence[str] = ()) -> int:
    """Check one file's networks; return how many were checked. Raises `ArchError`."""
    with paused_gc():
        program = load_file(path, import_path=import_path)
        checked = 0
        for network in program.networks:
            if all(p.default is not None for p in network.params):
                build_program_graph(program, network.name.text, {})
                checked += 1
    return checked


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every file is clean, 1 otherwise."""
    failed = 0
    for path in args.files:
        try:
            checked = check_file(path, import_path=args.import_path)
        except ArchError as error:
            failed += 1
            print(str(error), file=sys.stderr)
            continue
        if not args.quiet:
            print(f"ok  {path} ({checked} network{'s' if checked != 1 else ''})")
    if failed:
        print(f"{failed} of {len(args.files)} files have errors", file=sys.stderr)
    return 1 if failed else 0
