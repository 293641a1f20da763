"""Several processes, one run: joining them with `jax.distributed.initialize`, and the few
things that differ across processes (who writes, gathering to the host, agreeing to stop).

Each process runs the same program on its own devices; `jax.devices()` then lists the
devices of all of them and one mesh spans them, so the training step is the one-process
step, partitioned further by `jax.jit`. On CPU the cross-process collectives are gloo's.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Final

import jax
import numpy as np

from archdsl.errors import ArchValueError

DEFAULT_TIMEOUT: Final = 120
"""Seconds to wait for the coordinator and the other processes (`--coordinator-timeout`)."""


class ArchDistributedError(ArchValueError):
    """Process flags that do not fit together, or processes that could not meet."""


@dataclass(frozen=True)
class Cluster:
    """How this process joins the others: an explicit coordinator and rank, or `auto`
    (whatever `jax.distributed.initialize()` detects: SLURM, Kubernetes, a TPU pod)."""

    coordinator: str | None = None
    """`HOST:PORT` of process 0."""
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False
    timeout: int = DEFAULT_TIMEOUT

    def check(self) -> None:
        """Raises `ArchDistributedError` for flags that cannot work together."""
        given = {
            "--coordinator": self.coordinator,
            "--num-processes": self.num_processes,
            "--process-id": self.process_id,
        }
        missing = [flag for flag, value in given.items() if value is None]
        if not self.auto and missing:
            raise ArchDistributedError(
                f"a multi-process run needs {', '.join(f'`{m}`' for m in missing)} as well",
                help="give all of `--coordinator HOST:PORT --num-processes N --process-id I`, "
                "or `--distributed` alone where JAX detects the cluster (SLURM, Kubernetes, TPU)",
            )
        if self.timeout < 1:
            raise ArchDistributedError(
                f"`--coordinator-timeout` must be at least 1 second, got {self.timeout}"
            )
        if self.num_processes is not None and self.num_processes < 1:
            raise ArchDistributedError(
                f"`--num-processes` must be at least 1, got {self.num_processes}"
            )
        if (
            self.process_id is not None
            and self.num_processes is not None
            and not 0 <= self.process_id < self.num_processes
        ):
            raise ArchDistributedError(
                f"`--process-id {self.process_id}` is out of range for "
                f"`--num-processes {self.num_processes}`",
                help=f"process ids run from 0 to {self.num_processes - 1}",
            )
        if self.coordinator is not None:
            host_port(self.coordinator)


def host_port(address: str) -> tuple[str, int]:
    """`HOST:PORT` split, the port checked.

    Raises:
        ArchDistributedError: not of that form.
    """
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ArchDistributedError(
            f"`--coordinator {address}` is not HOST:PORT",
            help="e.g. `--coordinator 10.0.0.1:1234`: process 0's address and a free port",
        )
    return host.strip("[]"), int(port)


def initialize(cluster: Cluster) -> None:
    """Join the run's other processes; call before anything else touches JAX.

    Processes other than 0 first wait (up to `cluster.timeout`) for process 0's port to
    open: JAX aborts the whole process when it cannot connect, so this is what turns an
    unreachable coordinator into a message.

    Raises:
        ArchDistributedError: bad flags, an unreachable coordinator, or processes that
            did not all join.
    """
    cluster.check()
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if cluster.coordinator is not None and cluster.process_id != 0:
        _wait_for(cluster.coordinator, cluster.timeout)
    try:
        jax.distributed.initialize(
            cluster.coordinator,
            cluster.num_processes,
            cluster.process_id,
            initialization_timeout=cluster.timeout,
        )
    except (ValueError, RuntimeError, TypeError) as error:
        if cluster.coordinator is None and "coordinator_address" in str(error):
            raise ArchDistributedError(
                "`--distributed` found no cluster to join: no coordinator given, and none "
                "detected (SLURM, Open MPI, Kubernetes, a TPU pod)",
                help="give `--coordinator HOST:PORT --num-processes N --process-id I`",
            ) from None
        raise ArchDistributedError(
            f"could not join the multi-process run: {str(error).splitlines()[0][:200]}",
            help="give `--coordinator HOST:PORT --num-processes N --process-id I` "
            "where JAX cannot detect the cluster",
        ) from None
    if cluster.num_processes is not None and jax.process_count() != cluster.num_processes:
        raise ArchDistributedError(
            f"JAX sees {jax.process_count()} processes, `--num-processes` says "
            f"{cluster.num_processes}"
        )


def _wait_for(address: str, timeout: float) -> None:
    host, port = host_port(address)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise ArchDistributedError(
                    f"cannot reach the coordinator `{address}` within {timeout:g} s "
                    f"({error.strerror or error})",
                    help="start process 0 (`--process-id 0`) with the same `--coordinator`, "
                    "check the host and port, or raise `--coordinator-timeout`",
                ) from None
            time.sleep(0.2)


def is_main() -> bool:
    """Whether this process logs and writes files (process 0; the only one, usually)."""
    return jax.process_index() == 0


def to_host(tree: Any) -> Any:
    """A tree of (possibly sharded, possibly multi-process) arrays as whole NumPy arrays,
    on every process: every process must call it, as it is a collective."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def any_process(flag: bool) -> bool:
    """Whether `flag` is set on any process (a collective when there are several)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))
