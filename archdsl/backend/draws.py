"""Kernel initialisers drawn in fixed-size chunks, so one call draws every kernel of a net.

XLA compiles a random draw per distinct shape, and on CPU compiling a threefry plus the
normal transform costs about a second each: ResNet-152's thirty-odd distinct kernels
made its `init` compile for longer than it ran. Here a kernel of `size` scalars is
`ceil(size / CHUNK)` chunks, chunk `c` drawn with `fold_in(key, c)` and the tail cut
off, so kernels of every shape are rows of one `(chunks, CHUNK)` draw: `draw_all`
makes every kernel of one distribution with one compiled sampler, and a kernel drawn
alone (`KernelInit(key, shape)`) has exactly the values it has in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from archdsl.graph.shapes import Shape

CHUNK = 1 << 14
"""Scalars per chunk: large enough to vectorise well, small enough that the cut-off tails
(under one chunk per kernel) cost little (ResNet-152's 156 kernels: 56,128 scalars drawn
and dropped beside 60.0M kept)."""


@dataclass(frozen=True)
class KernelInit:
    """A kernel initialiser: a standard distribution, times a scale from the shape.

    Called as an initialiser, `init(key, shape, dtype)` (flax's convention).
    """

    standard: Callable[[jax.Array, Shape, Any], jax.Array]
    """`(key, shape, dtype) -> draws`: the distribution before scaling."""
    scale: Callable[[Shape], float]
    """The kernel's standard deviation (or factor), from its shape."""

    def __call__(self, key: jax.Array, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
        count = chunks(shape)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
            key, jnp.arange(count, dtype=jnp.uint32)
        )
        return self._finish(self._sample(keys, dtype), 1, shape)[0]

    def _sample(self, keys: jax.Array, dtype: Any) -> jax.Array:
        return jax.vmap(lambda k: self.standard(k, (CHUNK,), dtype))(keys)

    def _finish(self, rows: jax.Array, count: int, shape: Shape) -> jax.Array:
        """`count` kernels of `shape` from their chunks' rows, in order."""
        size = math.prod(shape)
        flat = rows.reshape(count, -1)[:, :size]
        return flat.reshape(count, *shape) * jnp.asarray(self.scale(shape), rows.dtype)


def chunks(shape: Shape) -> int:
    """How many chunks a kernel of `shape` is drawn as."""
    return -(-math.prod(shape) // CHUNK)


@dataclass(frozen=True)
class Request:
    """Kernels of one shape and initialiser, one for each of `indices` (rows of the keys)."""

    init: KernelInit
    indices: tuple[int, ...]
    shape: Shape


def draw_all(keys: jax.Array, requests: Sequence[Request]) -> list[jax.Array]:
    """For each request, its kernels stacked `(len(indices), *shape)`, key `keys[i]` each.

    One gather, one vectorised `fold_in` and one sampler per distinct initialiser,
    whatever the number of kernels and shapes.
    """
    out: list[jax.Array | None] = [None] * len(requests)
    groups: dict[int, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(id(request.init), []).append(i)
    for members in groups.values():
        init = requests[members[0]].init
        nodes, parts = [], []
        for i in members:
            request = requests[i]
            count = chunks(request.shape)
            nodes.append(np.repeat(np.asarray(request.indices, np.int32), count))
            parts.append(np.tile(np.arange(count, dtype=np.uint32), len(request.indices)))
        chunk_keys = jax.vmap(jax.random.fold_in)(
            keys[np.concatenate(nodes)], jnp.asarray(np.concatenate(parts))
        )
        rows = init._sample(chunk_keys, jnp.float32)
        start = 0
        for i in members:
            request = requests[i]
            stop = start + chunks(request.shape) * len(request.indices)
            out[i] = init._finish(rows[start:stop], len(request.indices), request.shape)
            start = stop
    assert all(kernel is not None for kernel in out)
    return out  # type: ignore[return-value]
