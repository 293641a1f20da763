"""`keep_freed_memory`: a step's big output buffers are reused, not mapped anew each call."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from archdsl.backend.memory import keep_freed_memory

# A jitted step whose output (40 MiB) is over glibc's largest mmap threshold (32 MiB),
# as a scanned model's stacked kernels and their momentum are; faults per call, after
# warming up (the heap grows for the first few calls: a buffer is freed on XLA's
# thread, sometimes after the next call has allocated its own).
PROBE = """
import json, resource, sys
from archdsl.backend.memory import keep_freed_memory
tuned = sys.argv[1] == "tuned" and keep_freed_memory()
import jax, jax.numpy as jnp
step = jax.jit(lambda a: a * 0.5 + 1.0)
a = jnp.ones((10, 1024, 1024))
for _ in range(12):
    b = step(a).block_until_ready()
    del b
faults = []
for _ in range(4):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b = step(a).block_until_ready()
    del b
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
print(json.dumps({"tuned": tuned, "faults": faults}))
"""

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _probe(malloc: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, malloc], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="tunes glibc's malloc; a no-op elsewhere")
def test_big_outputs_stop_faulting_once_freed_memory_is_kept() -> None:
    default, tuned = _probe("default"), _probe("tuned")
    assert default["tuned"] is False and tuned["tuned"] is True
    # 40 MiB in 4 KiB pages: mapped and zeroed anew by every call with glibc's defaults.
    assert min(default["faults"]) > 10_000
    assert min(tuned["faults"]) < 1_000


def test_off_glibc_it_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("", ""))
    assert keep_freed_memory() is False
