"""Pooling: `lax.reduce_window`, with Caffe's and PyTorch's ceil mode and padding counts."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from archdsl.backend.layer import (
    Layer,
    Leaves,
    lowers,
    stateless,
)
from archdsl.graph import ops
from archdsl.graph.shapes import Shape, resolve_padding


def _pool_geometry(
    op: ops.MaxPool | ops.AvgPool, x_shape: Shape, output: Shape
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Per spatial axis: the pads to give `reduce_window`, and the explicit pads.

    Without ceil mode the explicit pads are used as they are and XLA's floor does the
    rest. With ceil mode the high pad is stretched (or the input cropped, where a
    window would start in the padding alone) so that exactly the predicted number of
    windows fit, as Caffe and PyTorch count them.
    """
    explicit = resolve_padding(op.padding, x_shape[:2], op.window, op.strides)
    if not op.ceil:
        return list(explicit), list(explicit)
    window_pads = []
    for size, window, stride, (lo, _), out in zip(
        x_shape[:2], op.window, op.strides, explicit, output[:2], strict=True
    ):
        window_pads.append((lo, (out - 1) * stride + window - size - lo))
    return window_pads, list(explicit)


def _reduce_pool(
    x: jax.Array,
    init: float,
    reducer: Callable[[jax.Array, jax.Array], jax.Array],
    window: tuple[int, int],
    stride: tuple[int, int],
    pads: list[tuple[int, int]],
) -> jax.Array:
    # A negative high pad means trailing input no window reads: crop it instead.
    for axis, (_, hi) in enumerate(pads, start=1):
        if hi < 0:
            x = lax.slice_in_dim(x, 0, x.shape[axis] + hi, axis=axis)
    # A Python scalar init lets JAX see the max/add monoid and use its differentiable
    # reduce_window_max/sum; an array init (even a constant) falls back to the generic,
    # non-differentiable reduce_window under jit.
    return lax.reduce_window(
        x,
        init,
        reducer,
        (1, *window, 1),
        (1, *stride, 1),
        ((0, 0), *((lo, max(hi, 0)) for lo, hi in pads), (0, 0)),
    )


@lowers(ops.MaxPool)
def _maxpool(op: ops.MaxPool, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    (x_shape,) = inputs
    pads, _ = _pool_geometry(op, x_shape, output)

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        return _reduce_pool(x, -jnp.inf, lax.max, op.window, op.strides, pads)

    return stateless(op, inputs, fn)


def _window_counts(
    size: int, window: int, stride: int, explicit: tuple[int, int], out: int
) -> np.ndarray:
    """Cells each window averages over: input and explicit padding, not the ceil overhang.

    PyTorch's `avg_pool2d` (count_include_pad): `end = min(start + k, size + pad)`.
    """
    starts = np.arange(out) * stride - explicit[0]
    ends = np.minimum(starts + window, size + explicit[1])
    return (ends - starts).astype(np.float32)


@lowers(ops.AvgPool)
def _avgpool(op: ops.AvgPool, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    (x_shape,) = inputs
    pads, explicit = _pool_geometry(op, x_shape, output)
    rows, cols = (
        _window_counts(size, window, stride, pad, out)
        for size, window, stride, pad, out in zip(
            x_shape[:2], op.window, op.strides, explicit, output[:2], strict=True
        )
    )
    # Static per-window divisors: (1, H', W', 1), computed once at compile time.
    counts = np.outer(rows, cols)[None, :, :, None]

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        total = _reduce_pool(x, 0.0, lax.add, op.window, op.strides, pads)
        return total / jnp.asarray(counts, x.dtype)

    return stateless(op, inputs, fn)


@lowers(ops.GlobalAvgPool)
def _globalavgpool(op: ops.GlobalAvgPool, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    return stateless(op, inputs, lambda params, x: jnp.mean(x, axis=(1, 2)))


@lowers(ops.GlobalMaxPool)
def _globalmaxpool(op: ops.GlobalMaxPool, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    return stateless(op, inputs, lambda params, x: jnp.max(x, axis=(1, 2)))
