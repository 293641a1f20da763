"""Normalisation: batch norm (batch or running statistics) and local response norm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from archdsl.backend.layer import (
    Layer,
    Leaves,
    Mode,
    channels_last,
    initialiser,
    lowers,
    state_initialiser,
    stateless,
)
from archdsl.graph import ops
from archdsl.graph.shapes import Shape


def batch_norm(
    y: jax.Array,
    params: Leaves,
    state: Leaves,
    mode: Mode,
    eps: float,
    momentum: float,
) -> tuple[jax.Array, Leaves]:
    """Normalise over all axes but the last; statistics in float32 whatever `y`'s dtype.

    Training updates the running statistics as flax does:
    `running = momentum * running + (1 - momentum) * batch` (biased variance).
    """
    y32 = y.astype(jnp.float32)
    if mode.train and not mode.frozen:
        axes = tuple(range(y.ndim - 1))
        mean = jnp.mean(y32, axis=axes)
        var = jnp.mean(jnp.square(y32 - channels_last(mean, y.ndim)), axis=axes)
        state = {
            "mean": momentum * state["mean"] + (1.0 - momentum) * mean,
            "var": momentum * state["var"] + (1.0 - momentum) * var,
        }
    else:
        mean, var = state["mean"], state["var"]
    scale = params["scale"].astype(jnp.float32) * lax.rsqrt(var + eps)
    shift = params["bias"].astype(jnp.float32) - mean * scale
    out = y32 * channels_last(scale, y.ndim) + channels_last(shift, y.ndim)
    return out.astype(y.dtype), state


@lowers(ops.BatchNorm)
def _batchnorm(op: ops.BatchNorm, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    def apply(
        params: Leaves, state: Leaves, xs: tuple[jax.Array, ...], mode: Mode
    ) -> tuple[jax.Array, Leaves]:
        return batch_norm(xs[0], params, state, mode, op.eps, op.momentum)

    return Layer(initialiser(op, inputs, None), apply, state_initialiser(op, inputs))


@lowers(ops.LRN)
def _lrn(op: ops.LRN, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """`a / (k + alpha / size * sum of a^2 over size channels) ** beta`, as PyTorch."""
    channel_pads = (op.size // 2, (op.size - 1) // 2)

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        sums = lax.reduce_window(
            jnp.square(x),
            0.0,
            lax.add,
            (1, 1, 1, op.size),
            (1, 1, 1, 1),
            ((0, 0), (0, 0), (0, 0), channel_pads),
        )
        return x / (op.k + (op.alpha / op.size) * sums) ** op.beta

    return stateless(op, inputs, fn)
