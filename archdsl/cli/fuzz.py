"""`archdsl fuzz spec.arch`: compile instances drawn from the declared ranges; shrink failures."""

from __future__ import annotations

import argparse
import sys

from archdsl.cli._common import add_import_path_option
from archdsl.errors import ArchError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `fuzz` subcommand."""
    parser = sub.add_parser(
        "fuzz",
        help="compile a spec for argument values drawn from its ranges",
        description="Draw network arguments from the ranges the spec declares "
        "(`size = 224 in 32..512`) with hypothesis, compile each instance, and on a "
        "failure shrink to the smallest failing values and print their diagnostic. "
        "Exit 0 when every instance compiles, 1 otherwise.",
    )
    parser.add_argument("specs", nargs="+", metavar="spec", help=".arch files")
    parser.add_argument(
        "--network", metavar="NAME", help="fuzz this network (default: every network of a file)"
    )
    add_import_path_option(parser)
    parser.add_argument(
        "-n",
        "--max-examples",
        type=int,
        default=100,
        metavar="N",
        help="instances to draw per network (default: 100)",
    )
    parser.add_argument(
        "--seed", type=int, metavar="S", help="fix the draws, to repeat a run exactly"
    )
    parser.add_argument(
        "--backend",
        action="store_true",
        help="also trace each instance with jax.eval_shape and check the "
        "output shape and parameter count against the front end",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fuzz each network of each file; print one report per network."""
    try:
        from archdsl.testing import backend_available
        from archdsl.tools.fuzz import format_result, fuzz_file
    except ImportError as error:  # hypothesis is an optional dependency
        print(f"archdsl fuzz needs the hypothesis package ({error})", file=sys.stderr)
        return 1
    if args.max_examples < 1:
        print("archdsl fuzz: --max-examples must be at least 1", file=sys.stderr)
        return 2
    if args.backend and not backend_available():
        print(
            "archdsl fuzz: --backend is unavailable: the JAX backend "
            "(archdsl.compiler) is not installed",
            file=sys.stderr,
        )
        return 1
    failed = 0
    for path in args.specs:
        try:
            results = fuzz_file(
                path,
                network=args.network,
                max_examples=args.max_examples,
                seed=args.seed,
                backend=args.backend,
                import_path=args.import_path,
            )
        except ArchError as error:
            failed += 1
            print(str(error), file=sys.stderr)
            continue
        if not results:
            print(f"ok  {path} defines no network (blocks only): nothing to fuzz")
        for result in results:
            stream = sys.stdout if result.ok else sys.stderr
            print(format_result(result), file=stream)
        failed += not all(result.ok for result in results)
    return 1 if failed else 0
