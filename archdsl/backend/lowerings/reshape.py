"""Reshapes: flatten to the per-example size the IR gives."""

from __future__ import annotations

from archdsl.backend.layer import (
    Layer,
    lowers,
    stateless,
)
from archdsl.graph import ops
from archdsl.graph.shapes import Shape


@lowers(ops.Flatten)
def _flatten(op: ops.Flatten, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    # The per-example size comes from the IR, so a symbolic batch axis reshapes cleanly.
    return stateless(op, inputs, lambda params, x: x.reshape((x.shape[0], *output)))
