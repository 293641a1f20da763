"""`archdsl fuzz spec.arch`: compile instances drawn from the declared ranges; shrink failures."""

from __future__ import annotations

import argparse
import sys

from archdsl.testing import backend_available


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `fuzz` subcommand."""
    parser = sub.add_parser(
        "fuzz", help="compile a spec for argument values drawn from its ranges",
        description="Draw network arguments from the ranges the spec declares "
        "(`size = 224 in 32..512`) with hypothesis, compile each instance, and on a "
        "failure shrink to the smallest failing values and print their diagnostic. "
        "Exit 0 when every instance compiles, 1 otherwise.")
    parser.add_argument("spec", help="the .arch file")
    parser.add_argument("--network", metavar="NAME",
                        help="fuzz this network (default: every network of the file)")
    parser.add_argument("-n", "--max-examples", type=int, default=100, metavar="N",
                        help="instances to draw per network (default: 100)")
    parser.add_argument("--seed", type=int, metavar="S",
                        help="fix the draws, to repeat a run exactly")
    parser.add_argument("--backend", action="store_true",
                        help="also trace each instance with jax.eval_shape and check the "
                        "output shape and parameter count against the front end")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fuzz each network; print one report each."""
    from archdsl.fuzz import format_result, fuzz_file

    if args.max_examples < 1:
        print("archdsl fuzz: --max-examples must be at least 1", file=sys.stderr)
        return 2
    if args.backend and not backend_available():
        print("archdsl fuzz: --backend is unavailable: the JAX backend "
              "(archdsl.compiler) is not installed", file=sys.stderr)
        return 1
    results = fuzz_file(args.spec, network=args.network, max_examples=args.max_examples,
                        seed=args.seed, backend=args.backend)
    for result in results:
        stream = sys.stdout if result.ok else sys.stderr
        print(format_result(result), file=stream)
    return 0 if all(result.ok for result in results) else 1
