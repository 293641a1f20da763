"""Insert the Ws shortcut of each residual whose operand shapes differ (or always, for `projection`)."""

from __future__ import annotations

import dataclasses

from archdsl.errors import ArchShapeError
from archdsl.graph.ir import Graph, Node
from archdsl.graph.ops import Op, Project, Residual, ZeroPad
from archdsl.graph.shapes import Shape, format_shape

ROLE = "shortcut"


def insert_projections(graph: Graph) -> Graph:
    """Reconcile every residual's shortcut with its body, per the residual's mode.

    `auto` inserts a trainable 1x1 conv + batch norm only where shapes differ;
    `projection` always does; `zeropad` subsamples and pads channels with zeros;
    `identity` makes a mismatch an error. Idempotent.

    Raises:
        ArchShapeError: the shapes cannot be reconciled in the chosen mode.
    """
    graph = graph.copy()
    for name in list(graph.order()):
        node = graph.node(name)
        if not isinstance(node.op, Residual):
            continue
        body_name, shortcut_name = node.inputs
        if shortcut_name == f"{name}.{ROLE}":
            continue
        body = graph.node(body_name).shape
        shortcut = graph.node(shortcut_name).shape
        assert body is not None and shortcut is not None, "run infer_shapes first"
        mode = node.op.shortcut
        if body == shortcut and mode != "projection":
            continue
        if mode == "identity":
            raise _mismatch(name, node, graph, body, shortcut)
        op = _shortcut_op(mode, body, shortcut)
        if op is None:
            raise _mismatch(name, node, graph, body, shortcut)
        inserted = Node(
            op=op,
            inputs=(shortcut_name,),
            span=node.span,
            shape=body,
            synthetic=True,
            frozen=node.frozen,
            aux=node.aux,
            trace=node.trace,
        )
        graph.add(f"{name}.{ROLE}", inserted)
        graph.replace(name, dataclasses.replace(node, inputs=(body_name, f"{name}.{ROLE}")))
    return graph


def _shortcut_op(mode: str, body: Shape, shortcut: Shape) -> Op | None:
    if len(body) != len(shortcut) or len(body) not in (1, 3):
        return None
    if len(body) == 1:
        stride = (1, 1)
    else:
        strides = [-(-s // b) for s, b in zip(shortcut[:2], body[:2], strict=True)]
        stride = (strides[0], strides[1])
        if min(stride) < 1:
            return None
    op: Op = Project(body[-1], stride) if mode != "zeropad" else ZeroPad(body[-1], stride)
    if mode == "zeropad" and body[-1] < shortcut[-1]:
        return None
    return op if op.infer(shortcut) == body else None


def _mismatch(name: str, node: Node, graph: Graph, body: Shape, shortcut: Shape) -> ArchShapeError:
    mode = node.op.shortcut  # type: ignore[attr-defined]
    body_name, shortcut_name = node.inputs
    body_node = graph.node(body_name)
    notes = [
        f"the body ends at `{body_name}` (line {body_node.span.line}), {format_shape(body)}",
        f"the shortcut is `{shortcut_name}`, {format_shape(shortcut)}",
    ]
    if mode == "identity":
        op = _shortcut_op("auto", body, shortcut)
        help_ = None
        if op is not None:
            stride = op.stride[0]  # type: ignore[attr-defined]
            help_ = (
                f"use `shortcut = auto` or `projection` to insert a 1x1 conv, "
                f"stride {stride}, {shortcut[-1]} -> {body[-1]}"
            )
        return ArchShapeError(
            f"`residual` cannot add {format_shape(body)} (body) to "
            f"{format_shape(shortcut)} (shortcut) with `shortcut = identity`",
            node.span,
            notes=notes,
            help=help_,
            trace=node.trace,
        )
    what = "a 1x1 projection" if mode != "zeropad" else "zero padding"
    help_ = (
        "zero padding only adds channels; use `shortcut = projection`"
        if mode == "zeropad"
        else "the body must keep or shrink the spatial size by a whole stride"
    )
    return ArchShapeError(
        f"`residual`: {what} cannot turn the shortcut's {format_shape(shortcut)} "
        f"into the body's {format_shape(body)}",
        node.span,
        notes=notes,
        help=help_,
        trace=node.trace,
    )
