"""Stochastic depth: a per-example keep mask in training, the identity at inference."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from archdsl.backend.layer import Layer, Leaves, Mode, initialiser, lowers
from archdsl.graph import ops
from archdsl.graph.shapes import Shape


@lowers(ops.DropPath)
def _droppath(op: ops.DropPath, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    keep = 1.0 - op.rate

    def apply(
        params: Leaves, state: Leaves, xs: tuple[jax.Array, ...], mode: Mode
    ) -> tuple[jax.Array, Leaves]:
        (x,) = xs
        if not mode.train or op.rate == 0.0:
            return x, state
        assert mode.key is not None, "compile_graph checks the key"
        # One draw per example, broadcast over the rest: the whole branch goes or stays.
        mask = jax.random.bernoulli(mode.key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype)), state

    return Layer(initialiser(op, inputs, None), apply, needs_key=op.rate > 0)
