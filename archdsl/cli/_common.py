"""What several subcommands share: network arguments from the command line, the console."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from archdsl.errors import ArchError, ArchValueError
from archdsl.lang import syntax as s
from archdsl.lang.parser import parse
from archdsl.lang.values import Value, evaluate

if TYPE_CHECKING:
    from rich.console import Console


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
        out[key] = _argument_value(pair, key, text)
    return out


def _argument_value(pair: str, key: str, text: str) -> Value:
    """One `.arch` expression and nothing after it; errors say which character."""
    prefix = "network _ {\n  _ "
    if "\n" in text or "\r" in text:
        raise ArchValueError(f"`--arg {key}=...`: a value is one line")
    try:
        spec = parse(f"{prefix}{text}\n}}", f"--arg {key}")
    except ArchError as error:
        on_line = error.span is not None and error.span.line == 2
        at = f" at character {error.span.column - 4} of the value" if on_line else ""  # type: ignore[union-attr]
        raise ArchValueError(f"`--arg {pair}`: {error.message}{at}") from None
    body = spec.items[0].body  # type: ignore[union-attr]
    chain = body[0] if len(body) == 1 else None
    step = chain.steps[0] if isinstance(chain, s.Chain) and len(chain.steps) == 1 else None
    if (
        not isinstance(chain, s.Chain)
        or not isinstance(step, s.Call)
        or chain.source is not None
        or chain.check is not None
        or chain.frozen
        or step.kwargs
        or step.alias is not None
        or len(step.args) != 1
    ):
        lead = chain.steps[0] if isinstance(chain, s.Chain) and chain.steps else None
        first = lead.args[0] if isinstance(lead, s.Call) and lead.args else None
        rest = text[first.span.end_column - 5 :].strip() if first is not None else text
        raise ArchValueError(
            f"`--arg {pair}`: expected one value, got `{text.strip()}`"
            + (f" with `{rest}` after it" if rest and rest != text.strip() else ""),
            help="quote nothing but the value, like `--arg classes=10` or `--arg size=224x224`",
        )
    try:
        return evaluate(step.args[0], {})
    except ArchError as error:
        raise ArchValueError(f"`--arg {pair}`: {error.message}") from None


def console(stream: object = None) -> Console:
    """A rich console: colour only on a terminal and without NO_COLOR; wide when piped."""
    from rich.console import Console  # loaded by the commands that print tables only

    file = stream or sys.stdout
    tty = hasattr(file, "isatty") and file.isatty()  # type: ignore[union-attr]
    return Console(
        file=file,  # type: ignore[arg-type]
        width=None if tty else 160,
        no_color=not tty or "NO_COLOR" in os.environ,
        highlight=False,
        soft_wrap=False,
    )
