"""The network input: the operand `compile_graph` feeds."""

from __future__ import annotations

from archdsl.backend.layer import (
    Layer,
    lowers,
    stateless,
)
from archdsl.graph import ops
from archdsl.graph.shapes import Shape


@lowers(ops.Input)
def _input(op: ops.Input, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """The network input arrives as the only operand (`compile_graph` feeds it)."""
    return stateless(op, inputs, lambda params, x: x)
