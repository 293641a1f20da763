"""Per-step time of a scanned training step against the unrolled one, interleaved.

    nice -n 10 python bench/scan_step.py [--models resnet50 resnet101 resnet152]
        [--steps 15] [--batch 2] [--size 64] [--malloc tuned|default] [--dump DIR]

For each network, in one process: both sides' SGD-with-momentum train step (the step of
bench/first_step.py: scan carries packed params, unrolled compiles with `scan=False`),
compiled, run twice to warm up, then called `--steps` times alternately A/B/B/A so that
the machine's load drifts over both alike. The table gives the median wall seconds
(`perf_counter`), this process's CPU seconds (`process_time`: all threads, user and
system) and minor page faults (`ru_minflt`) per step, and scan / unrolled.

`--malloc tuned` (the default) first calls `backend.memory.keep_freed_memory()`, as
`bench/first_step.py` does; `--malloc default` leaves glibc's malloc as it is, which
costs the scanned step a page fault per 4 KiB of its stacked outputs on every call
(see `backend/memory.py`). `--dump DIR` writes each side's optimized HLO
(`compiled.as_text()`) to `DIR/<model>.<side>.hlo` for reading the loop bodies.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archdsl.backend.memory import keep_freed_memory

MODELS = ("resnet50", "resnet101", "resnet152")


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench(name: str, steps: int, batch: int, size: int, dump: Path | None) -> dict[str, dict]:
    import jax
    import jax.numpy as jnp
    from compiled_vs_flax import CLASSES, OPTIMISER
    from first_step import SPECS, _loss, _step

    from archdsl.backend.model import compile_graph
    from archdsl.frontend import build_graph

    graph = build_graph(SPECS / f"{name}.arch", classes=CLASSES, size=size)
    x = jax.random.normal(jax.random.key(2), (batch, size, size, 3))
    labels = jnp.arange(batch) % CLASSES
    sides: dict[str, dict[str, Any]] = {}
    for label, scan in (("scan", True), ("unrolled", False)):
        model = compile_graph(graph, scan=scan)
        params, state = model.init(jax.random.key(0), packed=True)
        args = (params, state, OPTIMISER.init(params), x, labels, jax.random.key(1))
        compiled = jax.jit(_step(_loss(model.apply, {}))).lower(*args).compile()
        if dump is not None:
            dump.mkdir(parents=True, exist_ok=True)
            (dump / f"{name}.{label}.hlo").write_text(compiled.as_text())
        for _ in range(2):
            jax.block_until_ready(compiled(*args))
        sides[label] = {"step": compiled, "args": args, "wall": [], "cpu": [], "faults": []}
    order = list(sides.values())
    for i in range(steps):
        for side in order if i % 2 == 0 else order[::-1]:
            faults, cpu, wall = _faults(), time.process_time(), time.perf_counter()
            jax.block_until_ready(side["step"](*side["args"]))
            side["wall"].append(time.perf_counter() - wall)
            side["cpu"].append(time.process_time() - cpu)
            side["faults"].append(_faults() - faults)
    return {
        label: {k: statistics.median(side[k]) for k in ("wall", "cpu", "faults")}
        for label, side in sides.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per side")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--malloc", choices=("tuned", "default"), default="tuned")
    parser.add_argument("--dump", type=Path, help="write each side's optimized HLO here")
    args = parser.parse_args(argv)
    tuned = args.malloc == "tuned" and keep_freed_memory()
    load = os.getloadavg()[0]
    print(
        f"malloc {'tuned' if tuned else 'default'}, batch {args.batch}, {args.size}x{args.size}, "
        f"{args.steps} steps per side interleaved; medians; load {load:.1f}",
        file=sys.stderr,
    )
    print(
        f"{'model':<10} {'side':<9} {'wall s':>8} {'CPU s':>8} {'faults':>8} | wall  CPU (/ unrolled)"
    )
    for name in args.models:
        result = bench(name, args.steps, args.batch, args.size, args.dump)
        base = result["unrolled"]
        for label, r in result.items():
            print(
                f"{name:<10} {label:<9} {r['wall']:>8.3f} {r['cpu']:>8.3f} {r['faults']:>8.0f} | "
                f"{r['wall'] / base['wall']:.3f} {r['cpu'] / base['cpu']:.3f}",
                flush=True,
            )
    print(f"load {os.getloadavg()[0]:.1f} at the end", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
