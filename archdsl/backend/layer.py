"""What a lowering makes, and the registry of lowerings keyed by op class.

A lowering turns an op, the shapes of its inputs and its output shape (all from the IR:
the backend never re-derives a shape) into a `Layer`: an `init` that builds exactly
`op.param_shapes(...)`, an optional `state` that builds `op.state_shapes(...)`, and an
`apply` written with `jax.lax` and `jax.nn`. The helpers here (initialisers, conv,
dense, bias) are shared by the lowerings of several op families.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
from jax import lax

from archdsl.backend import loopconv
from archdsl.backend.draws import KernelInit, Request
from archdsl.graph import ops
from archdsl.graph.shapes import Shape

Leaves: TypeAlias = dict[str, jax.Array]
"""One node's tensors by leaf name: `{"kernel": ..., "bias": ...}`."""
Params: TypeAlias = dict[str, Leaves]
"""Learned tensors by node name, then leaf: `params["layer2.0.conv1"]["kernel"]`."""
State: TypeAlias = dict[str, Leaves]
"""Batch-norm running statistics by node name, then leaf (`mean`, `var`)."""


class Mode(NamedTuple):
    """How one node runs in one call; `train` and `frozen` are fixed at trace time."""

    train: bool
    """Dropout drops; batch norm uses (and updates) batch statistics."""
    frozen: bool
    """The node's batch norm stays in inference mode even when training."""
    key: jax.Array | None
    """This node's dropout key; None unless training a `dropout` node."""


Apply: TypeAlias = Callable[[Leaves, Leaves, tuple[jax.Array, ...], Mode], tuple[jax.Array, Leaves]]


def no_state() -> Leaves:
    return {}


class Layer(NamedTuple):
    """A lowered node, as stax's (init_fun, apply_fun) pair plus running state.

    `init(key)` returns the node's parameters; `state()` its initial running
    statistics; `apply(params, state, inputs, mode)` its batched output and new state.
    """

    init: Callable[[jax.Array], Leaves]
    apply: Apply
    state: Callable[[], Leaves] = no_state
    needs_key: bool = False
    """Whether `apply` needs `mode.key` when training (dropout)."""


Lowering: TypeAlias = Callable[[Any, tuple[Shape, ...], Shape], Layer]
"""`(op, input shapes, output shape) -> Layer`."""

LOWERINGS: dict[type[ops.Op], Lowering] = {}
"""One lowering per op class (`ops.OPS.values()`); a test checks that none is missing."""


def lowers(*classes: type[ops.Op]) -> Callable[[Lowering], Lowering]:
    """Register a lowering for the op classes `classes`."""

    def register(fn: Lowering) -> Lowering:
        for cls in classes:
            LOWERINGS[cls] = fn
        return fn

    return register


def _fan_out_std(shape: Shape) -> float:
    return math.sqrt(2.0 / (math.prod(shape[:-2]) * shape[-1]))


def _truncated_normal(key: jax.Array, shape: Shape, dtype: Any) -> jax.Array:
    return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)


def _glorot_std(shape: Shape) -> float:
    fan_in, fan_out = math.prod(shape[:-1]), shape[-1]
    # The std of a standard normal truncated to (-2, 2), as jax.nn.initializers uses.
    return math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978


conv_kernel_init = KernelInit(jax.random.normal, _fan_out_std)
"""He normal with fan_out, as torchvision's ResNet and VGG initialise conv kernels.

`kaiming_normal_(mode="fan_out", nonlinearity="relu")`: std `sqrt(2 / (kh*kw*out))`.
"""

dense_kernel_init = KernelInit(_truncated_normal, _glorot_std)
"""Glorot normal, as Keras' `glorot_normal`: truncated to two std, variance 2/(in+out)."""


_LEAF_INIT: dict[str, Callable[[tuple[int, ...]], jax.Array]] = {
    "bias": lambda shape: jnp.zeros(shape, jnp.float32),
    "scale": lambda shape: jnp.ones(shape, jnp.float32),
}
_STATE_INIT: dict[str, Callable[[tuple[int, ...]], jax.Array]] = {
    "mean": lambda shape: jnp.zeros(shape, jnp.float32),
    "var": lambda shape: jnp.ones(shape, jnp.float32),
}


@dataclass(frozen=True, eq=False)
class Initialiser:
    """A node's parameters: exactly the leaves `op.param_shapes` names (the op is the
    one authority), constants but for the kernel, drawn from `kernel_init`.

    `init(key)` builds them alone; `compile_graph` instead draws every kernel of the
    network at once (`draws.draw_all`, the same values) and calls `build`.
    """

    shapes: dict[str, Shape]
    kernel_init: Callable[..., jax.Array] | None
    op_name: str

    def __call__(self, key: jax.Array) -> Leaves:
        kernel = None
        if "kernel" in self.shapes:
            assert self.kernel_init is not None, f"`{self.op_name}` has a kernel but no initialiser"
            kernel = self.kernel_init(key, self.shapes["kernel"], jnp.float32)
        return self.build(kernel)

    def build(self, kernel: jax.Array | None) -> Leaves:
        """The leaves, given the kernel (None when the op has none)."""
        return {
            leaf: kernel if leaf == "kernel" else _LEAF_INIT[leaf](shape)
            for leaf, shape in self.shapes.items()
        }

    def kernel_request(self, indices: tuple[int, ...]) -> Request | None:
        """The kernels `draws.draw_all` should draw for nodes `indices` initialised alike,
        or None if there is no kernel or its initialiser is not a `KernelInit`."""
        shape = self.shapes.get("kernel")
        if shape is None or not isinstance(self.kernel_init, KernelInit):
            return None
        return Request(self.kernel_init, indices, shape)


def initialiser(
    op: ops.Op, inputs: tuple[Shape, ...], kernel_init: Callable[..., jax.Array] | None
) -> Initialiser:
    """The initialiser of `op`'s parameters, given its input shapes."""
    return Initialiser(op.param_shapes(*inputs), kernel_init, op.name)


def state_initialiser(op: ops.Op, inputs: tuple[Shape, ...]) -> Callable[[], Leaves]:
    shapes = op.state_shapes(*inputs)
    if not shapes:
        return no_state
    return lambda: {leaf: _STATE_INIT[leaf](shape) for leaf, shape in shapes.items()}


def stateless(
    op: ops.Op,
    inputs: tuple[Shape, ...],
    fn: Callable[..., jax.Array],
    kernel_init: Callable[..., jax.Array] | None = None,
) -> Layer:
    """A layer whose output depends on params and inputs only: `fn(params, *xs)`."""

    def apply(
        params: Leaves, state: Leaves, xs: tuple[jax.Array, ...], mode: Mode
    ) -> tuple[jax.Array, Leaves]:
        return fn(params, *xs), state

    return Layer(initialiser(op, inputs, kernel_init), apply)


def channels_last(v: jax.Array, ndim: int) -> jax.Array:
    """Shape a per-channel vector to broadcast against a rank-`ndim` array explicitly."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def add_bias(y: jax.Array, params: Leaves) -> jax.Array:
    return y + channels_last(params["bias"], y.ndim) if "bias" in params else y


def conv(
    x: jax.Array,
    kernel: jax.Array,
    stride: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> jax.Array:
    if loopconv.active():
        # XLA's CPU compiler would run this one's gradient on its slow path (see loopconv).
        return loopconv.conv(x, kernel, stride, pads, dilation, groups)
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=stride,
        padding=pads,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
