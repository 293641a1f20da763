"""`archdsl compile spec.arch`: the checked network, layer by layer, with totals."""

from __future__ import annotations

import argparse
import dataclasses
import json

from rich.console import Console
from rich.table import Table

from archdsl.cli._common import add_network_options, console, network_arguments
from archdsl.errors import ArchValueError
from archdsl.frontend import build_graph
from archdsl.graph.cost import (
    OPTIMIZER_SLOTS,
    Cost,
    estimate,
    fold_rows,
    format_bytes,
    format_flops,
)
from archdsl.graph.ir import Graph, format_graph
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
        help="also export the inference function: `model.onnx` (ONNX) or `model.jaxexport`",
    )
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="the weights to put in an `.onnx` file (default: freshly initialised, key 0)",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="with --weights: let batch norms whose running statistics the file lacks "
        "start at mean 0, variance 1",
    )
    cost = parser.add_argument_group("memory and FLOPs for a batch")
    cost.add_argument(
        "--batch",
        type=_positive,
        metavar="N",
        help="add memory (weights, gradients, optimizer state, activations, peak) and FLOPs "
        "for a batch of N",
    )
    cost.add_argument(
        "--train",
        action="store_true",
        help="for a training step (forward + backward + update); default: inference",
    )
    cost.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZER_SLOTS),
        default="adam",
        help="optimizer state to count with --train (sgd: with momentum; default adam)",
    )
    parser.add_argument(
        "--depth",
        type=_positive,
        metavar="N",
        help="fold the table to blocks at depth N of the dotted names (as torchinfo)",
    )
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Build, report, and optionally export."""
    if args.output:
        check_output(args.output, "exported model")  # before any work
    if args.allow_missing and not args.weights:
        raise ArchValueError("`--allow-missing` goes with `--weights FILE -o model.onnx`")
    graph = build_graph(
        args.spec,
        network=args.network,
        import_path=args.import_path,
        **network_arguments(args.arg),
    )
    report = build_report(graph)
    if args.depth is not None:
        report = dataclasses.replace(report, rows=tuple(fold_rows(report.rows, args.depth)))
    batch = args.batch if args.batch is not None else (1 if args.train else None)
    cost = (
        estimate(graph, batch, train=args.train, optimizer=args.optimizer)
        if batch is not None
        else None
    )
    out = console()
    if args.json:
        data = report.to_json()
        if args.depth is not None:
            data["depth"] = args.depth
        if cost is not None:
            data["cost"] = cost.to_json()
        print(json.dumps(data, indent=2))
    elif args.graph:
        print(format_graph(graph))
    else:
        print_report(report, out)
        if cost is not None:
            print_cost(cost, out)
    if args.output and args.output.endswith(".onnx"):
        _write_onnx(graph, args.output, args.weights, out, allow_missing=args.allow_missing)
    elif args.output:
        if args.weights:
            raise ArchValueError(
                "`--weights` goes into an `.onnx` file only; a `.jaxexport` takes them at run time",
                help="run it with `archdsl run model.jaxexport --weights FILE --input x.npy`",
            )
        from archdsl.backend.export import export_model
        from archdsl.compiler import compile_graph_model

        export_model(compile_graph_model(graph), args.output)
        out.print(f"exported the inference function to {args.output}")
    elif args.weights:
        raise ArchValueError("`--weights` needs `-o model.onnx`")
    return 0


def print_cost(cost: Cost, out: object) -> None:
    """Memory and FLOPs for the batch, after the table."""
    mode = f"training step, {cost.optimizer}" if cost.train else "inference"
    rows = [("parameters", cost.params_bytes + cost.state_bytes)]
    if cost.train:
        rows += [("gradients", cost.gradient_bytes), ("optimizer state", cost.optimizer_bytes)]
    rows += [("input batch", cost.input_bytes)]
    if cost.train:
        rows += [
            ("activations kept for backward", cost.activation_bytes),
            ("largest gradient in flight", cost.transient_bytes),
        ]
    else:
        rows += [("activations (live peak)", cost.activation_bytes)]
    rows += [("estimated peak", cost.peak_bytes)]
    lines = [f"memory for a batch of {cost.batch} ({mode}, {cost.dtype}; estimates)"]
    lines += [f"  {label:<30} {format_bytes(n):>10}" for label, n in rows]
    flops = f"FLOPs      {format_flops(cost.forward_flops)} forward"
    if cost.train:
        flops += (
            f" + {format_flops(cost.backward_flops)} backward = {format_flops(cost.flops)} per step"
        )
    lines.append(flops + f" (batch {cost.batch})")
    for line in lines:
        out.print(line)  # type: ignore[attr-defined]


def _write_onnx(
    graph: Graph, path: str, weights: str | None, out: Console, *, allow_missing: bool = False
) -> None:
    """Initialise or load (and check) the weights, then write the ONNX model."""
    import jax

    from archdsl.backend.onnx_export import export_onnx
    from archdsl.backend.weights import check_weights, load_weights
    from archdsl.compiler import compile_graph_model

    model = compile_graph_model(graph)
    if weights is None:
        params, state = model.init(jax.random.key(0))
        note = "freshly initialised weights (key 0; pass --weights FILE for trained ones)"
    else:
        params, state = load_weights(weights, graph, allow_missing=allow_missing)
        check_weights(params, state, *jax.eval_shape(model.init, jax.random.key(0)))
        note = f"weights from {weights}"
    onnx_model = export_onnx(graph, params, state, path)
    out.print(
        f"wrote ONNX (opset {onnx_model.opset_import[0].version}, "
        f"{len(onnx_model.graph.node)} nodes) to {path} with {note}"
    )


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
