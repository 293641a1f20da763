"""Convolution: `lax.conv_general_dilated`, NHWC and HWIO."""

from __future__ import annotations

import jax

from archdsl.backend.layer import (
    Layer,
    Leaves,
    add_bias,
    conv,
    conv_kernel_init,
    lowers,
    stateless,
)
from archdsl.graph import ops
from archdsl.graph.shapes import Shape, resolve_padding


@lowers(ops.Conv)
def _conv_layer(op: ops.Conv, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    (x_shape,) = inputs
    pads = resolve_padding(op.padding, x_shape[:2], op.kernel, op.stride, op.dilation)

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        y = conv(x, params["kernel"], op.stride, pads, op.dilation, op.groups)
        return add_bias(y, params)

    return stateless(op, inputs, fn, conv_kernel_init)
