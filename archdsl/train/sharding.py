"""Parameter sharding (`--shard-params`, FSDP-style): where each leaf of the parameters and
the optimizer state lives on the `data` x `model` mesh.

The rule, per leaf and by shape alone (so a kernel and its Adam moments land alike):
split the largest axis that the `model` axis size divides (the first such axis on a tie)
over the `model` axis, replicated along `data`; a leaf with fewer than
`MIN_SHARD_ELEMENTS` elements, or with no axis that divides, is replicated. A leaf
stacked for a scanned run is placed as each of its blocks would be: the rule looks at
the axes after the scan axis, which is never split. Batch-norm
running statistics are replicated too (small, and rewritten every step). `jax.jit`
partitions the step around these placements: XLA gathers a weight where a layer needs it
whole and reduce-scatters its gradient back to shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from archdsl.train.packed import is_stacked
from archdsl.train.parallel import MODEL_AXIS, replicated

MIN_SHARD_ELEMENTS: Final = 1024
"""Leaves smaller than this (biases, scales, counters) stay whole on every device: splitting
4 KiB saves nothing and costs a collective."""


def leaf_spec(shape: tuple[int, ...], parts: int, *, stacked: bool = False) -> PartitionSpec:
    """The `PartitionSpec` the rule gives a leaf of `shape` on a `model` axis of `parts`.

    A `stacked` leaf (a run's blocks on axis 0, `train.packed`) gets the rule of one
    block on its other axes: the scan axis is never split, and each block is placed as
    it would be unrolled.
    """
    if stacked:
        inner = leaf_spec(shape[1:], parts)
        return PartitionSpec(None, *inner) if inner != PartitionSpec() else inner
    if parts <= 1 or int(np.prod(shape, dtype=np.int64)) < MIN_SHARD_ELEMENTS:
        return PartitionSpec()
    axes = [a for a, size in enumerate(shape) if size % parts == 0]
    if not axes:
        return PartitionSpec()
    axis = max(axes, key=lambda a: (shape[a], -a))
    return PartitionSpec(*(MODEL_AXIS if a == axis else None for a in range(len(shape))))


@dataclass(frozen=True)
class Layout:
    """Where a run's trees live: by the rule with `shard`, else replicated."""

    mesh: Mesh
    shard: bool = False
    stacked: frozenset[str] = frozenset()
    """The keys of stacked runs in packed trees (`packed.run_keys`): leaves under them
    have the scan axis first."""

    @property
    def parts(self) -> int:
        """The size of the `model` axis (1: nothing split)."""
        return int(self.mesh.shape[MODEL_AXIS]) if self.shard else 1

    @property
    def replicated(self) -> NamedSharding:
        """Whole on every device."""
        return replicated(self.mesh)

    def of(self, tree: Any) -> Any:
        """A tree of `NamedSharding`s like `tree` (of arrays or `ShapeDtypeStruct`s)."""
        return jax.tree_util.tree_map_with_path(
            lambda path, x: NamedSharding(
                self.mesh,
                leaf_spec(tuple(np.shape(x)), self.parts, stacked=is_stacked(path, self.stacked)),
            ),
            tree,
        )

    def place(self, tree: Any) -> Any:
        """`tree` on the mesh, each leaf where the rule puts it."""
        return put(tree, self.of(tree))


def put(tree: Any, shardings: Any) -> Any:
    """`jax.device_put`, but with several processes an array that lives on this process
    alone (a loaded tensor) goes through the host: each process supplies the same value,
    and JAX keeps the parts for its own devices."""
    if jax.process_count() > 1:
        tree = jax.tree.map(
            lambda x: (
                np.asarray(x) if not isinstance(x, jax.Array) or x.is_fully_addressable else x
            ),
            tree,
        )
    return jax.device_put(tree, shardings)


def device_bytes(tree: Any, device: Any = None) -> tuple[int, int]:
    """`(bytes on device, bytes in all)` of a tree of placed arrays: the first is the sum of
    the shards `device` (default this process's first) holds, the second the leaves' full
    sizes."""
    device = device if device is not None else jax.local_devices()[0]
    held = total = 0
    for leaf in jax.tree.leaves(tree):
        total += int(np.prod(leaf.shape, dtype=np.int64)) * leaf.dtype.itemsize
        held += sum(s.data.nbytes for s in leaf.addressable_shards if s.device == device)
    return held, total
