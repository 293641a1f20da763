"""Data parallelism: a one-axis `jax.sharding.Mesh`, the batch split along it, the rest replicated.

Nothing is hand-rolled: arrays are placed with `jax.device_put` and a `NamedSharding`,
and `jax.jit` partitions the step (the gradient mean over the batch becomes an
all-reduce; batch-norm statistics are over the whole batch, as on one device).
"""

from __future__ import annotations

from typing import Any, Final

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from archdsl.errors import ArchValueError

AXIS: Final = "data"
"""The mesh axis that the batch is split along."""


class ArchDeviceError(ArchValueError):
    """More devices asked for than there are, or a batch that does not divide."""


def make_mesh(devices: int) -> Mesh:
    """A mesh of the first `devices` devices along the `data` axis.

    Raises:
        ArchDeviceError: fewer devices than asked for.
    """
    available = jax.devices()
    if devices < 1:
        raise ArchDeviceError(f"`--devices` must be at least 1, got {devices}")
    if devices > len(available):
        platform = available[0].platform
        help_text = (
            f"on CPU, start with XLA_FLAGS=--xla_force_host_platform_device_count={devices} "
            "to split the host into that many devices"
            if platform == "cpu"
            else None
        )
        raise ArchDeviceError(
            f"`--devices {devices}` asks for {devices} devices, but JAX sees "
            f"{len(available)} ({platform})",
            help=help_text,
        )
    return Mesh(np.array(available[:devices]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis is split over the devices."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put a pytree on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Split each array of a pytree along its batch axis over the mesh."""
    return jax.device_put(tree, batch_sharded(mesh))


def check_batch(batch_size: int, mesh: Mesh, what: str = "--batch-size") -> None:
    """A batch must split evenly over the devices.

    Raises:
        ArchDeviceError: it does not.
    """
    devices = mesh.devices.size
    if batch_size % devices:
        raise ArchDeviceError(
            f"`{what} {batch_size}` does not split over {devices} devices",
            help=f"use a multiple of {devices}, e.g. {batch_size + devices - batch_size % devices}",
        )
