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
    original, graph = graph, graph.copy()
    inserted_any = False
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
        stride = body_stride(graph, body_name, shortcut_name)
        op = _shortcut_op(mode, body, shortcut, stride)
        if op is None:
            raise _mismatch(name, node, graph, body, shortcut, stride)
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
        inserted_any = True
    # Nothing to reconcile: the graph itself, so the pipeline knows nothing changed.
    return graph if inserted_any else original


def body_stride(graph: Graph, body: str, shortcut: str) -> tuple[int, int] | None:
    """The stride of the body's path from `shortcut` to `body`: the product of its strides.

    The shortcut must take the body's stride: one inferred from the shape ratio can
    differ (`valid` padding: 7x7 -> 3x3 with stride 2, where the ratio says 3). None
    when the path cannot be followed or a layer on it changes the size without a
    stride (global pooling): the ratio is then the only guide.
    """
    stride = (1, 1)
    current = body
    for _ in range(len(graph) + 1):
        if current == shortcut:
            return stride
        node = graph.node(current)
        if not node.inputs:
            return None
        step = getattr(node.op, "strides", None) or getattr(node.op, "stride", None)
        source = graph.node(node.inputs[0]).shape
        if isinstance(step, tuple) and len(step) == 2:
            stride = (stride[0] * step[0], stride[1] * step[1])
        elif not _same_size(source, node.shape):
            return None
        current = node.inputs[0]
    return None


def _same_size(before: Shape | None, after: Shape | None) -> bool:
    """Whether a layer without a stride kept the rank and the spatial size."""
    if before is None or after is None or len(before) != len(after):
        return False
    return len(before) != 3 or before[:2] == after[:2]


def _shortcut_op(
    mode: str, body: Shape, shortcut: Shape, known: tuple[int, int] | None = None
) -> Op | None:
    if len(body) != len(shortcut) or len(body) not in (1, 3):
        return None
    if len(body) == 1:
        stride = (1, 1)
    elif known is not None:
        stride = known
    else:
        strides = [-(-s // b) for s, b in zip(shortcut[:2], body[:2], strict=True)]
        stride = (strides[0], strides[1])
        if min(stride) < 1:
            return None
    op: Op = Project(body[-1], stride) if mode != "zeropad" else ZeroPad(body[-1], stride)
    if mode == "zeropad" and body[-1] < shortcut[-1]:
        return None
    return op if op.infer(shortcut) == body else None


def _mismatch(
    name: str,
    node: Node,
    graph: Graph,
    body: Shape,
    shortcut: Shape,
    stride: tuple[int, int] | None = None,
) -> ArchShapeError:
    mode = node.op.shortcut  # type: ignore[attr-defined]
    body_name, shortcut_name = node.inputs
    body_node = graph.node(body_name)
    notes = [
        f"the body ends at `{body_name}` (line {body_node.span.line}), {format_shape(body)}",
        f"the shortcut is `{shortcut_name}`, {format_shape(shortcut)}",
    ]
    if mode == "identity":
        op = _shortcut_op("auto", body, shortcut, body_stride(graph, body_name, shortcut_name))
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
    if stride not in (None, (1, 1)) and len(body) == len(shortcut) == 3 and mode != "zeropad":
        strided = Project(body[-1], stride).infer(shortcut)
        if strided[:2] != body[:2]:
            by = f"{stride[0]}" if stride[0] == stride[1] else f"{stride[0]}x{stride[1]}"
            return ArchShapeError(
                f"`residual`: the body strides by {by}, so the shortcut does too, "
                f"giving {format_shape(strided[:2])} where the body gives "
                f"{format_shape(body[:2])}",
                node.span,
                notes=notes,
                help="pad the body's convolutions (`same`) so that only the stride "
                "changes the size",
                trace=node.trace,
            )
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
