"""Residual shortcuts: the Ws projection and the zero-padding shortcut."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from archdsl.backend.layer import (
    Layer,
    Leaves,
    Mode,
    add_bias,
    conv,
    conv_kernel_init,
    dense,
    dense_kernel_init,
    initialiser,
    lowers,
    state_initialiser,
    stateless,
)
from archdsl.backend.lowerings.norm import batch_norm
from archdsl.graph import ops
from archdsl.graph.shapes import Shape

_PROJECT_BN = ops.BatchNorm()
"""`project` has no batch-norm attributes of its own: it uses `batchnorm`'s defaults."""


@lowers(ops.Project)
def _project(op: ops.Project, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """The Ws shortcut: 1x1 conv with stride (dense on rank 1), then batch norm or bias."""
    (x_shape,) = inputs
    rank1 = len(x_shape) == 1

    def apply(
        params: Leaves, state: Leaves, xs: tuple[jax.Array, ...], mode: Mode
    ) -> tuple[jax.Array, Leaves]:
        (x,) = xs
        if rank1:
            y = dense(x, params["kernel"])
        else:
            y = conv(x, params["kernel"], op.stride, ((0, 0), (0, 0)))
        if not op.batchnorm:
            return add_bias(y, params), state
        return batch_norm(y, params, state, mode, _PROJECT_BN.eps, _PROJECT_BN.momentum)

    kernel_init = dense_kernel_init if rank1 else conv_kernel_init
    return Layer(initialiser(op, inputs, kernel_init), apply, state_initialiser(op, inputs))


@lowers(ops.ZeroPad)
def _zeropad(op: ops.ZeroPad, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """The parameter-free shortcut: `x[:, ::s, ::s, :]`, zero channels appended at the end."""
    (x_shape,) = inputs
    extra = output[-1] - x_shape[-1]
    assert extra >= 0, f"`zeropad` cannot narrow {x_shape[-1]} channels to {output[-1]}"

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        if x.ndim == 4:
            x = x[:, :: op.stride[0], :: op.stride[1], :]
        return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])

    return stateless(op, inputs, fn)
