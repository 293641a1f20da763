"""`archdsl graph spec.arch -o net.svg`: draw the network with Graphviz (or write DOT)."""

from __future__ import annotations

import argparse
import sys

from archdsl.cli._common import add_network_options, network_arguments
from archdsl.frontend import build_graph
from archdsl.io import check_output
from archdsl.tools.draw import FORMATS, ArchDrawError, output_format, render, to_dot


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `graph` subcommand."""
    parser = sub.add_parser(
        "graph",
        help="draw a network with Graphviz",
        description="Draw the checked network: every layer with its name, op and shape; "
        "inserted projections dashed orange, aux heads dashed purple, frozen layers "
        "grey-blue. Without -o, print the DOT text.",
    )
    parser.add_argument("spec", help="the .arch file")
    add_network_options(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help=f"write here; the extension picks the format "
        f"({', '.join('.' + f for f in FORMATS)}; .svg/.png/.pdf need "
        "Graphviz's `dot`)",
    )
    parser.add_argument(
        "--collapse",
        action="store_true",
        help="draw each block instance or repeated scope (`layer2.1`) as "
        "one box, and a run of identical ones as one box marked xN",
    )
    parser.add_argument(
        "--depth",
        type=int,
        metavar="N",
        help="with --collapse (implied), keep N levels of scopes: "
        "1 gives `layer2`, 2 gives `layer2.1`",
    )
    parser.add_argument(
        "--no-merge",
        action="store_true",
        help="with --collapse, draw identical blocks in a row one by one",
    )
    parser.add_argument(
        "--horizontal",
        dest="rankdir",
        action="store_const",
        const="LR",
        default="TB",
        help="lay out left to right instead of top down",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw, or print the DOT text."""
    if args.depth is not None and args.depth < 1:
        raise ArchDrawError(f"`--depth` must be at least 1, got {args.depth}")
    if args.output:
        output_format(args.output)  # a bad extension fails before the spec is built
        check_output(args.output, "drawing")
    graph = build_graph(
        args.spec,
        network=args.network,
        import_path=args.import_path,
        **network_arguments(args.arg),
    )
    text = to_dot(
        graph,
        collapse=args.collapse or args.depth is not None,
        depth=args.depth,
        merge_repeats=not args.no_merge,
        rankdir=args.rankdir,
    )
    if not args.output:
        sys.stdout.write(text)
        return 0
    path = render(text, args.output)
    print(f"wrote {path} ({len(graph)} layers)")
    return 0
