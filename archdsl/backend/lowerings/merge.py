"""Merges: the elementwise sum, channel concatenation and elementwise product of branches."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from archdsl.backend.layer import (
    Layer,
    Leaves,
    lowers,
    stateless,
)
from archdsl.graph import ops
from archdsl.graph.shapes import Shape


@lowers(ops.Add, ops.Residual)
def _add(op: ops.Add | ops.Residual, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """Elementwise sum; a residual is `body + shortcut` (its activation is a later node)."""

    def fn(params: Leaves, *xs: jax.Array) -> jax.Array:
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total

    return stateless(op, inputs, fn)


@lowers(ops.Concat)
def _concat(op: ops.Concat, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    return stateless(op, inputs, lambda params, *xs: jnp.concatenate(xs, axis=-1))


@lowers(ops.Multiply)
def _multiply(op: ops.Multiply, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """Elementwise product; a per-channel `C` gate is reshaped to `1x1xC` to broadcast."""

    spatial = (1,) * (len(output) - 1)

    def fn(params: Leaves, *xs: jax.Array) -> jax.Array:
        total = xs[0]
        for x in xs[1:]:
            total = total * x
        return total

    def gate(x: jax.Array) -> jax.Array:
        # (N, C) -> (N, 1, 1, C): broadcast over the spatial axes, never the batch axis.
        return x.reshape((x.shape[0], *spatial, x.shape[-1])) if x.ndim < len(output) + 1 else x

    return stateless(op, inputs, lambda params, *xs: fn(params, *map(gate, xs)))

    return stateless(op, inputs, fn)
