"""A convolution whose gradient stays on XLA's fast CPU path inside `lax.scan` bodies.

XLA's CPU compiler runs a convolution with Eigen only when its dimensions are in the
canonical order (input NHWC, kernel HWIO, output NHWC); others fall back to a naive
loop nest that is 5 to 10 times slower and slow to compile. JAX's gradient of a
convolution is non-canonical (the kernel's gradient contracts over the batch,
`f01b_i01o->01bf`; the input's uses the kernel transposed, `b01f_01oi->b01f`), and
XLA's `ConvCanonicalization` pass rewrites only the entry computation's convolutions,
not those of a while loop's body. So in a scanned block's backward pass every
convolution took the slow path (ResNet-152's training step: 1.5x slower scanned than
unrolled on 2 CPU cores). `conv` here has a custom VJP that writes both gradients as
canonical convolutions with explicit transposes, which is what the canonicalisation
pass would have produced; `compile_graph` uses it for the nodes of a scanned run when
training (`inside_loop`), and the plain `lax` convolution everywhere else.

A `custom_vjp` function cannot be differentiated in forward mode (`jax.jvp`); reverse
mode, to any order, works. Hence training only: inference keeps forward mode.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator

import jax
from jax import lax

Pads = tuple[tuple[int, int], tuple[int, int]]
Pair = tuple[int, int]
_NHWC = ("NHWC", "HWIO", "NHWC")

_INSIDE = contextvars.ContextVar("archdsl_inside_loop", default=False)


@contextlib.contextmanager
def inside_loop() -> Iterator[None]:
    """While tracing a loop body: `active()` is True, so `layer.conv` routes here."""
    token = _INSIDE.set(True)
    try:
        yield
    finally:
        _INSIDE.reset(token)


def active() -> bool:
    """Whether the code being traced is a loop body (see `inside_loop`)."""
    return _INSIDE.get()


def _forward(
    x: jax.Array, kernel: jax.Array, stride: Pair, pads: Pads, dilation: Pair, groups: int
) -> jax.Array:
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=stride,
        padding=pads,
        rhs_dilation=dilation,
        dimension_numbers=_NHWC,
        feature_group_count=groups,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv(
    x: jax.Array, kernel: jax.Array, stride: Pair, pads: Pads, dilation: Pair, groups: int
) -> jax.Array:
    """`lax.conv_general_dilated` in NHWC/HWIO, with canonical convolutions as gradient."""
    return _forward(x, kernel, stride, pads, dilation, groups)


def _conv_fwd(
    x: jax.Array, kernel: jax.Array, stride: Pair, pads: Pads, dilation: Pair, groups: int
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _forward(x, kernel, stride, pads, dilation, groups), (x, kernel)


def _conv_bwd(
    stride: Pair,
    pads: Pads,
    dilation: Pair,
    groups: int,
    residuals: tuple[jax.Array, jax.Array],
    dy: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    dx = _input_grad(dy, kernel, x.shape[1:3], stride, pads, dilation, groups)
    dk = _kernel_grad(x, dy, kernel.shape[:2], stride, pads, dilation, groups)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv.defvjp(_conv_fwd, _conv_bwd)


def _input_grad(
    dy: jax.Array,
    kernel: jax.Array,
    size: tuple[int, ...],
    stride: Pair,
    pads: Pads,
    dilation: Pair,
    groups: int,
) -> jax.Array:
    """The transposed convolution: `dy` dilated by the stride, the kernel flipped.

    Group `j`'s input channels receive from group `j`'s output channels, so the
    kernel `(kh, kw, C/g, O)` becomes `(kh, kw, O/g, C)` group by group.
    """
    kh, kw, cg, out = kernel.shape
    og = out // groups
    k = kernel.reshape(kh, kw, cg, groups, og).transpose(0, 1, 4, 3, 2)
    k = k.reshape(kh, kw, og, groups * cg)[::-1, ::-1]
    padding = []
    for n, k_n, s, d, (lo, _), o_n in zip(
        size, (kh, kw), stride, dilation, pads, dy.shape[1:3], strict=True
    ):
        extent = (k_n - 1) * d + 1
        padding.append((extent - 1 - lo, n - (o_n - 1) * s - 1 + lo))
    return lax.conv_general_dilated(
        dy,
        k,
        window_strides=(1, 1),
        padding=padding,
        lhs_dilation=stride,
        rhs_dilation=dilation,
        dimension_numbers=_NHWC,
        feature_group_count=groups,
    )


def _kernel_grad(
    x: jax.Array,
    dy: jax.Array,
    window: tuple[int, ...],
    stride: Pair,
    pads: Pads,
    dilation: Pair,
    groups: int,
) -> jax.Array:
    """A convolution of the input by the output gradient, with channels as batch.

    `dk[i, j, c, o] = sum over n, y, x of x[n, y*s + i*d, x*s + j*d, c] * dy[n, y, x, o]`:
    the input with channels as batch and the batch as features (`(C/g, H, W, g*N)`),
    convolved with `dy` as the kernel (`(Ho, Wo, N, O)`, dilated by the stride, the
    window stepping by the dilation), gives `(C/g, kh, kw, O)`.
    """
    n, h, w, c = x.shape
    cg = c // groups
    lhs = x.reshape(n, h, w, groups, cg).transpose(4, 1, 2, 3, 0).reshape(cg, h, w, groups * n)
    rhs = dy.transpose(1, 2, 0, 3)
    padding = []
    for size, k_n, s, d, (lo, _), o_n in zip(
        (h, w), window, stride, dilation, pads, dy.shape[1:3], strict=True
    ):
        # Exactly the rows the forward pass read: the output is `k_n` wide.
        padding.append((lo, (k_n - 1) * d + (o_n - 1) * s + 1 - size - lo))
    out = lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=dilation,
        padding=padding,
        rhs_dilation=stride,
        dimension_numbers=_NHWC,
        feature_group_count=groups,
    )
    return out.transpose(1, 2, 0, 3)
