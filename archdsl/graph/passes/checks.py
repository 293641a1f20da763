"""Read-only validators run after shape inference: `: shape` assertions and size limits."""

from __future__ import annotations

import math

from archdsl.errors import ArchShapeError, ArchValueError
from archdsl.graph.ir import Graph
from archdsl.graph.ops import Op
from archdsl.graph.passes.per_op import PerOp
from archdsl.graph.shapes import Shape, format_shape

MAX_PARAMS = 10**12
"""A trillion parameters (4 TB of float32): beyond what any single model here could hold."""


def check_assertions(graph: Graph) -> Graph:
    """Every `: shape` in the spec must equal the inferred shape.

    Raises:
        ArchShapeError: an assertion does not hold.
    """
    for check in graph.checks:
        actual = graph.node(check.node).shape
        if actual != check.expected:
            raise ArchShapeError(
                f"expected shape {format_shape(check.expected)}, "
                f"but `{check.node}` gives {format_shape(actual or ())}",
                check.span,
                trace=graph.node(check.node).trace,
            )
    return graph


def check_limits(graph: Graph) -> Graph:
    """Refuse a network whose parameters could not be allocated on any machine.

    Raises:
        ArchValueError: the parameter count is absurd.
    """
    total = 0
    counts: PerOp[int] = PerOp()  # a repeated layer is counted once
    for _, node in graph.items():
        in_shapes = [graph.node(i).shape for i in node.inputs]
        count = counts.get(
            node.op,
            in_shapes,  # type: ignore[arg-type]
            lambda: _param_count(node.op, in_shapes),  # type: ignore[arg-type]  # noqa: B023
        )
        total += count
        if total > MAX_PARAMS:
            raise ArchValueError(
                f"the network passes {MAX_PARAMS:,} parameters at `{node.op.name}` "
                f"({count:,} here): more than any machine holds",
                node.span,
                trace=node.trace,
            )
    return graph


def _param_count(op: Op, in_shapes: list[Shape]) -> int:
    return sum(math.prod(s) for s in op.param_shapes(*in_shapes).values())
