"""`archdsl fmt FILES`: rewrite specs in the canonical layout (`--check`: only report)."""

from __future__ import annotations

import argparse
import difflib
import sys

from archdsl.errors import ArchError
from archdsl.io import write_text
from archdsl.lang.loader import read_source
from archdsl.tools.fmt import format_text


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `fmt` subcommand."""
    parser = sub.add_parser(
        "fmt",
        help="format .arch files in the canonical layout",
        description="Rewrite each file in the canonical layout; comments are kept. "
        "`-` reads standard input and writes standard output.",
    )
    parser.add_argument("files", nargs="+", help=".arch files, or - for standard input")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file is not formatted"
    )
    mode.add_argument(
        "--diff",
        action="store_true",
        help="change nothing; print what would change as a unified diff",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when all is well; 1 on a syntax error or, with --check/--diff, a change."""
    from pathlib import Path

    failed = changed = 0
    for name in args.files:
        try:
            text = sys.stdin.read() if name == "-" else read_source(Path(name))
            formatted = format_text(text, "<stdin>" if name == "-" else name)
        except ArchError as error:
            failed += 1
            print(str(error), file=sys.stderr)
            continue
        if name == "-" and not (args.check or args.diff):
            sys.stdout.write(formatted)
            continue
        if formatted == text:
            continue
        changed += 1
        if args.check:
            print(f"would reformat {name}", file=sys.stderr)
        elif args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    text.splitlines(keepends=True),
                    formatted.splitlines(keepends=True),
                    f"{name} (original)",
                    f"{name} (formatted)",
                )
            )
        else:
            try:
                write_text(name, formatted, "spec")
            except ArchError as error:
                failed += 1
                print(str(error), file=sys.stderr)
                continue
            print(f"formatted {name}")
    if failed:
        print(f"{failed} of {len(args.files)} files have errors", file=sys.stderr)
    return 1 if failed or ((args.check or args.diff) and changed) else 0
