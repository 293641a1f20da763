"""Channel ops: a slice of the channel axis, and the shuffle as reshape-transpose-reshape."""

from __future__ import annotations

import jax
from jax import lax

from archdsl.backend.layer import Layer, lowers, stateless
from archdsl.graph import ops
from archdsl.graph.shapes import Shape


@lowers(ops.Split)
def _split(op: ops.Split, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    width = output[-1]
    start = op.index * width

    def fn(params: object, x: jax.Array) -> jax.Array:
        return lax.slice_in_dim(x, start, start + width, axis=x.ndim - 1)

    return stateless(op, inputs, fn)


@lowers(ops.Shuffle)
def _shuffle(op: ops.Shuffle, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    groups = op.groups
    per_group = output[-1] // groups

    def fn(params: object, x: jax.Array) -> jax.Array:
        # (..., groups, C / groups) -> (..., C / groups, groups): torchvision's channel_shuffle
        lead = x.shape[:-1]
        grouped = x.reshape((*lead, groups, per_group))
        return jax.numpy.swapaxes(grouped, -1, -2).reshape(x.shape)

    return stateless(op, inputs, fn)
