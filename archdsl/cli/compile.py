"""`archdsl compile spec.arch`: the checked network, layer by layer, with totals."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from archdsl.cli._common import add_network_options, console, network_arguments
from archdsl.frontend import build_graph
from archdsl.graph.ir import format_graph
from archdsl.graph.report import Report, build_report, format_macs
from archdsl.io import check_output
from archdsl.lang.numbers import format_count


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `compile` subcommand."""
    parser = sub.add_parser(
        "compile",
        help="check a spec and report every layer",
        description="Parse, check and report a network.",
    )
    parser.add_argument("spec", help="the .arch file")
    add_network_options(parser)
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="the report as JSON")
    form.add_argument("--graph", action="store_true", help="the graph as text")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="also export the inference function (`model.jaxexport`)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build, report, and optionally export."""
    if args.output:
        check_output(args.output, "exported model")  # before any work
    graph = build_graph(args.spec, network=args.network, **network_arguments(args.arg))
    report = build_report(graph)
    out = console()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif args.graph:
        print(format_graph(graph))
    else:
        print_report(report, out)
    if args.output:
        from archdsl.backend.export import export_model
        from archdsl.compiler import compile_graph_model

        export_model(compile_graph_model(graph), args.output)
        out.print(f"exported the inference function to {args.output}")
    return 0


def print_report(report: Report, out: object) -> None:
    """The rich table of every layer, totals, and the 1x1 savings."""
    table = Table(title=f"network {report.network}", show_lines=False)
    for column, justify in (
        ("layer", "left"),
        ("op", "left"),
        ("output", "right"),
        ("params", "right"),
        ("MACs", "right"),
        ("marks", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in report.rows:
        marks = [
            m
            for m, on in (
                ("inserted", row.inserted),
                ("frozen", row.frozen),
                (f"aux {row.aux}", row.aux is not None),
            )
            if on
        ]
        op = f"{row.op} {row.attrs}".strip()
        table.add_row(
            row.name,
            op,
            "x".join(map(str, row.shape)),
            format_count(row.params) if row.params else "",
            format_count(row.macs) if row.macs else "",
            ", ".join(marks),
        )
    out.print(table)  # type: ignore[attr-defined]
    frozen = report.params - report.trainable
    lines = [
        f"params     {format_count(report.params)}"
        + (
            f"  ({format_count(report.inference_params)} without aux heads)"
            if report.inference_params != report.params
            else ""
        ),
        f"trainable  {format_count(report.trainable)}"
        + (f"  (frozen {format_count(frozen)})" if frozen else ""),
        f"MACs       {format_count(report.macs)} ({format_macs(report.macs)}) per example",
    ]
    shown = report.savings[:3]
    for saving in shown:
        lines.append(
            f"1x1 saving `{saving.reduce}` before `{saving.conv}`: "
            f"{format_count(saving.bottleneck_macs)} multiplications instead of "
            f"{format_count(saving.direct_macs)} ({saving.ratio:.1f}x fewer)"
        )
    if len(report.savings) > len(shown):
        lines.append(f"... and {len(report.savings) - len(shown)} more 1x1 savings (see --json)")
    for line in lines:
        out.print(line)  # type: ignore[attr-defined]
