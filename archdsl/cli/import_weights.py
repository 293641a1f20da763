"""`archdsl import-weights SPEC SOURCE -o OUT.safetensors`: PyTorch-layout weights in."""

from __future__ import annotations

import argparse

from archdsl.cli._common import add_network_options, console, network_arguments
from archdsl.frontend import build_graph


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `import-weights` subcommand."""
    parser = sub.add_parser(
        "import-weights",
        help="convert a PyTorch state dict (.pth, .safetensors) to archdsl weights",
        description=(
            "Map a PyTorch-layout state dict (torchvision, timm, the Hugging Face hub) onto "
            "a network's layers, by name where names agree and otherwise in order, "
            "converting layouts; write an archdsl weights file."
        ),
    )
    parser.add_argument("spec", help="the .arch file of the source's architecture")
    parser.add_argument("source", help="the state dict: .pth / .pt (needs torch) or .safetensors")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT.safetensors", help="the weights to write"
    )
    add_network_options(parser)
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="keep layers (or batch-norm statistics) the file lacks at their initial values",
    )
    parser.add_argument(
        "--allow-unused",
        action="store_true",
        help="ignore modules of the file the network has no place for",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Import, print the match report, write the weights."""
    from archdsl.backend.importer import import_weights
    from archdsl.backend.weights import ArchWeightsError, save_weights

    graph = build_graph(args.spec, network=args.network, **network_arguments(args.arg))
    params, state, report = import_weights(
        graph, args.source, allow_missing=args.allow_missing, allow_unused=args.allow_unused
    )
    out = console()
    for line in report.lines():
        out.print(line)
    try:
        save_weights(args.output, params, state)
    except OSError as error:
        raise ArchWeightsError(f"cannot write `{args.output}`: {error.strerror}") from None
    out.print(f"wrote {args.output} for `{graph.name}`")
    return 0
