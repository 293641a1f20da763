"""Inputs checked before anything is allocated: regular files only, sizes from `stat` and
from array headers, compared with the memory this process can have."""

from __future__ import annotations

import os
import resource
import stat
from pathlib import Path

from archdsl.io.paths import ArchIOError, os_error


def format_bytes(n: int | float) -> str:
    """`1.5 GiB`: a byte count for people."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{int(n):,} bytes" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def available_memory() -> int:
    """Bytes this process can still allocate: the least of the machine's available
    memory, the cgroup's limit (containers) and the address-space limit (`ulimit -v`)."""
    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    limits.extend(_cgroup_room())
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    if not limits:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return 1 << 62
    return max(0, min(limits))


def _cgroup_room() -> list[int]:
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return [int(limit) - usage]
    return []


def check_memory(needed: int, what: str) -> None:
    """Raise before allocating `needed` bytes that this process cannot have.

    Raises:
        ArchIOError: with the bytes needed and the bytes available.
    """
    available = available_memory()
    if needed > available:
        raise ArchIOError(
            f"{what} needs {format_bytes(needed)} of memory, "
            f"but only {format_bytes(available)} is available",
            notes=[f"needed {needed:,} bytes, available {available:,} bytes"],
        )


def check_input_file(path: str | Path, what: str = "input") -> int:
    """Check that `path` is a regular file that fits in memory; return its size in bytes.

    Devices (`/dev/zero`), FIFOs, sockets and folders are refused: reading them could
    block or never end.

    Raises:
        ArchIOError: missing, not a regular file, or larger than the memory available.
    """
    if "\0" in os.fspath(path):
        raise ArchIOError(f"{what} path {os.fspath(path)!r} contains a NUL character")
    path = Path(os.fspath(path))
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ArchIOError(f"{what} `{path}` does not exist") from None
    except OSError as error:
        raise os_error(path, error, "read") from None
    if stat.S_ISDIR(info.st_mode):
        raise ArchIOError(f"{what} `{path}` is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(info.st_mode)
            else "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a socket"
            if stat.S_ISSOCK(info.st_mode)
            else "not a regular file"
        )
        raise ArchIOError(
            f"{what} `{path}` is {kind}; expected a regular file",
            help="copy the data to a file first",
        )
    if not os.access(path, os.R_OK):
        raise ArchIOError(f"cannot read {what} `{path}`: permission denied (EACCES)")
    check_memory(info.st_size, f"reading {what} `{path}`")
    return info.st_size
