"""`archdsl view spec.arch -o net.html`: the network as an interactive page, or served live."""

from __future__ import annotations

import argparse
from pathlib import Path

from archdsl.cli._common import add_network_options, network_arguments
from archdsl.errors import ArchError, ArchValueError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `view` subcommand."""
    parser = sub.add_parser(
        "view",
        help="open the network in the browser: fold blocks, click layers",
        description="Write the checked network as one self-contained HTML page (no "
        "request leaves it; it opens from disk offline): blocks and repeats folded, "
        "shapes on the edges, every layer's shapes, parameters, MACs and source on a "
        "click. With --serve, serve it on 127.0.0.1 and follow the spec as it changes.",
    )
    parser.add_argument("spec", help="the .arch file")
    add_network_options(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the page to write (default: the spec's name with .html)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="also show FLOPs and memory for a batch of N examples",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="serve the page on 127.0.0.1 and reload it when the spec or an import changes",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        metavar="P",
        help="with --serve, the port on 127.0.0.1 (default 8765; 0: any free one)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the page, or serve it until interrupted."""
    if args.batch is not None and args.batch < 1:
        raise ArchValueError(f"`--batch` must be at least 1, got {args.batch}")
    if not 0 <= args.port <= 65535:
        raise ArchValueError(f"`--port` must be 0 to 65535, got {args.port}")
    arguments = network_arguments(args.arg)
    if args.serve:
        from archdsl.tools.view.server import serve

        return serve(
            args.spec,
            network=args.network,
            arguments=arguments,
            batch=args.batch,
            port=args.port,
        )
    from archdsl.frontend import build_graph
    from archdsl.tools.view.data import graph_payload
    from archdsl.tools.view.page import render_page, write_page

    graph = build_graph(args.spec, network=args.network, **arguments)
    page = render_page(graph_payload(graph, spec=args.spec, batch=args.batch))
    output = Path(args.output) if args.output else Path(Path(args.spec).stem + ".html")
    try:
        write_page(output, page)
    except OSError as error:
        raise ArchError(f"cannot write {output}: {error.strerror or error}") from None
    print(f"wrote {output} ({len(graph)} layers, {len(page.encode()):,} bytes)")
    return 0
