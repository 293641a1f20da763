"""Per-example shapes and the integer arithmetic of windows, strides and padding."""

from __future__ import annotations

import math
from typing import TypeAlias

from archdsl.lang.numbers import format_shape

__all__ = ["Padding", "Shape", "format_shape", "num_elements", "resolve_padding", "window_out"]

Shape: TypeAlias = tuple[int, ...]
"""A per-example shape, `(H, W, C)` or `(D,)`: the batch axis is never part of it."""

Padding: TypeAlias = str | tuple[tuple[int, int], tuple[int, int]]
"""`"same"`, `"valid"`, or explicit `((top, bottom), (left, right))`."""


def num_elements(shape: Shape) -> int:
    """The number of scalars in a tensor of this shape."""
    return math.prod(shape)


def window_out(
    size: int,
    window: int,
    stride: int,
    pad: tuple[int, int],
    *,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """The output length of a window sliding over one axis of length `size`.

    Follows Caffe and PyTorch: with `ceil_mode` the last partial window counts,
    unless it would start inside the right padding only.
    """
    span = dilation * (window - 1) + 1
    padded = size + pad[0] + pad[1]
    if ceil_mode:
        out = -(-(padded - span) // stride) + 1
        if (out - 1) * stride >= size + pad[0]:
            out -= 1
        return out
    return (padded - span) // stride + 1


def same_padding(size: int, window: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's `SAME`: output length `ceil(size / stride)`, extra padding at the end."""
    span = dilation * (window - 1) + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: Padding,
    spatial: tuple[int, int],
    window: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Turn `same`/`valid`/explicit padding into explicit `((t, b), (l, r))` pads."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return (
            same_padding(spatial[0], window[0], stride[0], dilation[0]),
            same_padding(spatial[1], window[1], stride[1], dilation[1]),
        )
    assert not isinstance(padding, str), padding
    return padding
