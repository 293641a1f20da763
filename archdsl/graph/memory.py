"""Whether a network's parameters fit in this machine's memory, found from the graph alone.

Without this check a network too big for the machine is found out by XLA, after minutes
of compiling, as an out-of-memory abort; the graph already knows every parameter shape.
"""

from __future__ import annotations

import math
import os

from archdsl.errors import ArchValueError
from archdsl.graph.ir import Graph

BYTES_PER_VALUE = 4
"""Parameters and batch-norm statistics are float32 (`dtype` changes only the compute)."""


def parameter_bytes(graph: Graph) -> int:
    """Bytes of every parameter and batch-norm statistic, as float32."""
    total = 0
    for _, node in graph.items():
        shapes = [graph.node(i).shape or () for i in node.inputs]
        arrays = {**node.op.param_shapes(*shapes), **node.op.state_shapes(*shapes)}
        total += sum(math.prod(shape) for shape in arrays.values())
    return total * BYTES_PER_VALUE


def available_memory() -> int | None:
    """Bytes this process could still allocate (Linux `MemAvailable`), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_fits(graph: Graph, *, copies: int = 1, available: int | None = None) -> None:
    """Refuse, before any allocation, a network whose parameters exceed free memory.

    Args:
        graph: a checked graph (shapes inferred).
        copies: how many copies of the parameters the work holds at once (1 to run;
            training with Adam holds about 4: parameters, gradients, two moments).
        available: bytes free; by default read from the machine.

    Raises:
        ArchValueError: the bytes needed and the bytes available, at the network.
    """
    free = available_memory() if available is None else available
    if free is None:
        return
    needed = parameter_bytes(graph) * copies
    if needed > free:
        times = f" ({copies} copies)" if copies > 1 else ""
        raise ArchValueError(
            f"network `{graph.name}` needs {format_bytes(needed)} ({needed:,} bytes) for its "
            f"parameters{times}, but this machine has {format_bytes(free)} ({free:,} bytes) "
            "available",
            graph.span,
            help="shrink the network, or run it where there is more memory",
        )


def format_bytes(count: int) -> str:
    """`1.5 GiB`: the size a person reads."""
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
