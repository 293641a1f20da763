"""Annotate every node with its per-example output shape."""

from __future__ import annotations

from archdsl.errors import ArchShapeError
from archdsl.graph.ir import Graph, Node, with_shape
from archdsl.graph.ops import ShapeRuleError
from archdsl.graph.passes.per_op import PerOp
from archdsl.graph.shapes import Shape, format_shape, num_elements

MAX_ELEMENTS = 2**40
"""Per-example activation size beyond any machine's memory: refused before allocation."""


def infer_shapes(graph: Graph) -> Graph:
    """Set `Node.shape` on every node, in topological order.

    Raises:
        ArchShapeError: an op's shape rule rejects its input shapes, or a shape is absurd.
    """
    graph = graph.copy()
    known: PerOp[Shape] = PerOp()  # shape rules are pure: a repeated layer is inferred once
    for name in graph.order():
        node = graph.node(name)
        in_shapes = [graph.node(i).shape for i in node.inputs]
        shape = known.get(
            node.op,
            in_shapes,  # type: ignore[arg-type]
            lambda: node_shape(name, node, in_shapes),  # type: ignore[arg-type]  # noqa: B023
        )
        graph.replace(name, with_shape(node, shape))
    return graph


def node_shape(name: str, node: Node, in_shapes: list[Shape]) -> Shape:
    """One node's output shape from its inputs' shapes, with the span-carrying errors.

    Raises:
        ArchShapeError: the op's shape rule rejects the shapes, or the result is absurd.
    """
    try:
        shape = node.op.infer(*in_shapes)
    except ShapeRuleError as error:
        notes = [
            f"`{name}` gets {format_shape(s)} from `{i}`"
            for i, s in zip(node.inputs, in_shapes, strict=True)
        ]
        raise ArchShapeError(
            f"`{node.op.name}`: {error}", node.span, notes=notes, trace=node.trace
        ) from None
    if num_elements(shape) > MAX_ELEMENTS:
        raise ArchShapeError(
            f"`{node.op.name}` would output {format_shape(shape)}, "
            f"{num_elements(shape):,} values per example: more than any machine holds",
            node.span,
            trace=node.trace,
        )
    return shape
