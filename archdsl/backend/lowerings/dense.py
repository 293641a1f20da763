"""Fully connected layers and dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from archdsl.backend.layer import (
    Layer,
    Leaves,
    Mode,
    add_bias,
    dense,
    dense_kernel_init,
    initialiser,
    lowers,
    stateless,
)
from archdsl.graph import ops
from archdsl.graph.shapes import Shape


@lowers(ops.Dense)
def _dense_layer(op: ops.Dense, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        return add_bias(dense(x, params["kernel"]), params)

    return stateless(op, inputs, fn, dense_kernel_init)


@lowers(ops.Dropout)
def _dropout(op: ops.Dropout, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    keep = 1.0 - op.rate

    def apply(
        params: Leaves, state: Leaves, xs: tuple[jax.Array, ...], mode: Mode
    ) -> tuple[jax.Array, Leaves]:
        (x,) = xs
        if not mode.train or op.rate == 0.0:
            return x, state
        assert mode.key is not None, "compile_graph checks the key"
        mask = jax.random.bernoulli(mode.key, keep, x.shape)
        return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype)), state

    return Layer(initialiser(op, inputs, None), apply, needs_key=op.rate > 0)
