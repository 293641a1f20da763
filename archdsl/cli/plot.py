"""`archdsl plot RUN [RUN...] -o curves.png`: loss and accuracy curves of training runs."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `plot` subcommand."""
    parser = sub.add_parser(
        "plot",
        help="draw loss and accuracy curves of training runs",
        description="Read each run's metrics.jsonl (written by `archdsl train` beside its "
        "checkpoints) and draw loss and accuracy against steps, all runs on the same axes.",
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="a checkpoint folder, or its metrics.jsonl"
    )
    parser.add_argument("-o", "--output", default="curves.png", help="the PNG (default curves.png)")
    parser.add_argument("--title", help="a title above the plots")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw and say where."""
    from archdsl.train.plot import plot_runs

    try:
        import matplotlib  # noqa: F401
    except ImportError:  # an extra: say how to get it, not a traceback
        print(
            "error: `archdsl plot` needs matplotlib: `pip install archdsl[plot]`", file=sys.stderr
        )
        return 2
    path = plot_runs(args.runs, args.output, title=args.title)
    print(f"wrote {path}")
    return 0
