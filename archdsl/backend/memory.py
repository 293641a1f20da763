"""Keep the memory a training step frees for the next step: glibc's malloc, tuned for XLA.

XLA's CPU runtime allocates each output of a compiled step (new parameters, optimizer
state) and its scratch buffer with `malloc` on every call, and frees the last call's.
glibc serves a block over its mmap threshold (at most 32 MiB) with a fresh `mmap` and
gives it back with `munmap` on free, and serves XLA's worker threads from per-thread
arenas whose heaps it also returns to the system. So every step the kernel maps those
pages anew and zeroes each 4 KiB page on first touch. A scanned model meets this hardest:
its parameters are stacked per run (`backend.packing`), ResNet-152's `layer3` convolution
kernels and their momentum are arrays of 35 to 79 MiB each, where the unrolled model's
are 1 to 9 MiB. Measured on 2 CPU cores (batch 2, 64x64): ResNet-152's scanned step took
40,000 page faults per call against the unrolled one's 10,000, which made it about 7%
slower in wall time; with `keep_freed_memory()` both take none.

`keep_freed_memory` sets what `MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=1073741824
MALLOC_TRIM_THRESHOLD_=2147483647` would in the environment: one arena, blocks up to
1 GiB from the heap, and freed memory kept in the process (its resident size stays at
its peak, as with jemalloc or tcmalloc). It changes the whole process, so it is for the
program that owns the process (the `archdsl train` command, a benchmark), not for a
library to do on import; it must run before JAX's first computation starts XLA's
threads, whose arenas it cannot move afterwards.
"""

from __future__ import annotations

import ctypes
import platform
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""glibc's `mallopt` parameter numbers (`malloc.h`)."""

SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, 1 << 30), (M_TRIM_THRESHOLD, 2**31 - 1))


def keep_freed_memory() -> bool:
    """Tune glibc's malloc so that freed blocks are reused, not returned and re-faulted.

    Returns whether it applied: False (and nothing changed) off Linux, with a libc other
    than glibc, or where `mallopt` refuses a setting. Calling it again is harmless.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)
