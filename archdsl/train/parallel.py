"""Data parallelism: a 2-D `jax.sharding.Mesh` (`data` x `model`), each batch split over
all its devices, in one process or many.

Nothing is hand-rolled: arrays are placed with `jax.device_put` (or, for batches, built
from each process's own rows with `jax.make_array_from_process_local_data`) and a
`NamedSharding`, and `jax.jit` partitions the step (the gradient mean over the batch
becomes an all-reduce; batch-norm statistics are over the whole batch, as on one device).
The `model` axis has size 1 unless parameters are sharded (`train.sharding`); a batch is
split over both axes, so every device computes on its own examples.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from archdsl.errors import ArchValueError

AXIS: Final = "data"
"""The mesh axis along which parameters are replicated (and the batch split)."""
MODEL_AXIS: Final = "model"
"""The mesh axis that `--shard-params` splits parameters and optimizer state along."""
BATCH: Final = PartitionSpec((AXIS, MODEL_AXIS))
"""The batch axis is split over every device of the mesh."""


class ArchDeviceError(ArchValueError):
    """More devices asked for than there are, or a batch or mesh that does not divide."""


def make_mesh(devices: int, model_axis: int = 1) -> Mesh:
    """A `devices / model_axis` x `model_axis` mesh of the first `devices` devices.

    In a multi-process run the devices are those of every process (`jax.devices()`),
    in process order, so that each `model` group sits within one process where it can.

    Raises:
        ArchDeviceError: fewer devices than asked for, a `model_axis` that does not
            divide them, or (several processes) a mesh that leaves some devices out.
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
    if jax.process_count() > 1 and devices != len(available):
        raise ArchDeviceError(
            f"`--devices {devices}` leaves out some of the {len(available)} devices of "
            f"the {jax.process_count()} processes: a multi-process run uses them all",
            help=f"drop `--devices` or give `--devices {len(available)}`",
        )
    if model_axis < 1 or devices % model_axis:
        raise ArchDeviceError(
            f"`--model-axis {model_axis}` does not divide `--devices {devices}`",
            help="use a divisor of the device count, e.g. 2 for 4 devices",
        )
    grid = np.array(available[:devices]).reshape(devices // model_axis, model_axis)
    return Mesh(grid, (AXIS, MODEL_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimizer state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis is split over all the devices."""
    return NamedSharding(mesh, BATCH)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put a pytree on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Split each array of a pytree along its batch axis over the mesh (one process)."""
    return jax.device_put(tree, batch_sharded(mesh))


def local_rows(mesh: Mesh, batch_size: int) -> slice:
    """The rows of a global batch that this process's devices hold: all of them in a
    one-process run, this process's contiguous share in a multi-process one.

    Raises:
        ArchDeviceError: the share is not contiguous (a mesh JAX would not build).
    """
    index = batch_sharded(mesh).addressable_devices_indices_map((batch_size,))
    spans = sorted(s[0].indices(batch_size)[:2] for s in index.values())
    for (_, stop), (start, _) in itertools.pairwise(spans):
        if stop != start:
            raise ArchDeviceError(
                f"this process's devices hold rows {spans} of each batch, not one block"
            )
    return slice(spans[0][0], spans[-1][1])


def make_batch(arrays: tuple[np.ndarray, ...], mesh: Mesh, batch_size: int) -> tuple:
    """Global batch arrays from this process's rows (`local_rows`) of each."""
    sharding = batch_sharded(mesh)
    return tuple(
        jax.make_array_from_process_local_data(sharding, a, (batch_size, *a.shape[1:]))
        for a in arrays
    )


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
