"""Activations: one JAX function per activation class."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from archdsl.backend.layer import (
    Layer,
    lowers,
    stateless,
)
from archdsl.graph import ops
from archdsl.graph.shapes import Shape

ACTIVATIONS: dict[type[ops.Activation], Callable[[jax.Array], jax.Array]] = {
    ops.Relu: jax.nn.relu,
    ops.Relu6: jax.nn.relu6,
    ops.Tanh: jnp.tanh,
    ops.Sigmoid: jax.nn.sigmoid,
    ops.Softmax: lambda x: jax.nn.softmax(x, axis=-1),
    ops.LogSoftmax: lambda x: jax.nn.log_softmax(x, axis=-1),
    # Exact erf form, as PyTorch's and Keras' default.
    ops.Gelu: lambda x: jax.nn.gelu(x, approximate=False),
    ops.Silu: jax.nn.silu,
    ops.Elu: jax.nn.elu,
    ops.Identity: lambda x: x,
    # x * relu6(x + 3) / 6 and relu6(x + 3) / 6, as torch.nn.Hardswish and Hardsigmoid.
    ops.Hardswish: jax.nn.hard_swish,
    ops.Hardsigmoid: jax.nn.hard_sigmoid,
}
"""The parameter-free activations by class; `leaky_relu` has its own lowering (its slope)."""


@lowers(*ACTIVATIONS)
def _activation(op: ops.Activation, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    fn = ACTIVATIONS[type(op)]
    return stateless(op, inputs, lambda params, x: fn(x))


@lowers(ops.LeakyRelu)
def _leaky_relu(op: ops.LeakyRelu, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    return stateless(op, inputs, lambda params, x: jax.nn.leaky_relu(x, negative_slope=op.slope))
