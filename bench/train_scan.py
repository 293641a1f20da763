"""`archdsl train` scanned (the default) against `--no-scan`: time to first step, per step.

    nice -n 10 python bench/train_scan.py [--models resnet101 resnet152 resnet110]
        [--steps 6] [--repeat 2] [--calls 7] [--batch 2] [--size 64]

Two measurements per network:

- **First step**: a fresh process (nothing compiled or cached) builds the network,
  makes random images and runs the training loop (`archdsl.train.loop.train`, Adam,
  constant rate, no checkpoints) until its first step ends; `first` is the seconds from
  the call of `train` (initialisation, compiling the step, running it). Sides alternate
  process by process, `--repeat` times; medians are shown.
- **Per step**: one process builds the loop's own jitted step for both sides
  (`steps.make_train_step`, the same optimizer, the trees the loop carries: packed with
  scan, per layer without) and calls them alternately, `--calls` times each; the
  median wall and CPU seconds (all of this process's threads) per call are shown.
  Alternating calls in one process is what makes the two comparable on a shared,
  loaded machine: separate processes see different loads.

`break-even` is the number of steps after which an unrolled run started at the same time
would catch up with the scanned one (wall time): the first step's saving divided by the
per-step cost, or "never" when scanned steps are no slower. `uptime` is printed before
and after. Each child first calls `backend.memory.keep_freed_memory()`, as `archdsl train`
does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("scan", "unrolled")
MODELS = {
    "resnet50": ("resnet50.arch", True, {}),
    "resnet101": ("resnet101.arch", True, {}),
    "resnet152": ("resnet152.arch", True, {}),
    "resnet110": ("resnet_zeropad.arch", False, {"n": 18}),
}
"""Name -> (spec, whether it takes `size`, other arguments). `resnet110` is the CIFAR
ResNet-110 of He et al. (three runs of 17 basic blocks, 32x32 input)."""


def _graph(model: str, size: int) -> Any:
    from archdsl.frontend import build_graph

    spec, sized, arguments = MODELS[model]
    return build_graph(
        ROOT / "specs" / spec, classes=10, **({"size": size} if sized else {}), **arguments
    )


def _images(graph: Any, n: int) -> tuple[Any, Any]:
    import numpy as np

    (name,) = graph.inputs
    shape = graph.node(name).shape
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, 10, n)


def first_step(model: str, side: str, batch: int, size: int) -> dict[str, float]:
    """Seconds from calling `train` to the end of its first step, in this process."""
    from archdsl.train.data import Dataset, Split
    from archdsl.train.loop import TrainConfig, train

    graph = _graph(model, size)
    x, y = _images(graph, 2 * batch)
    data = Split(Dataset(x[:batch], y[:batch], "random"), Dataset(x[batch:], y[batch:], "random"))
    config = TrainConfig(epochs=1, batch_size=batch, scan=side == "scan", schedule="constant")
    marks: list[float] = []

    def on_step(step: int) -> bool:
        marks.append(time.perf_counter())
        return True

    start = time.perf_counter()
    train(graph, data, config, progress=False, on_step=on_step)
    return {"first": marks[0] - start}


def per_step(model: str, calls: int, batch: int, size: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds of the loop's step, both sides in this process."""
    import jax

    from archdsl.backend.model import compile_graph
    from archdsl.graph.passes.training import training_graph
    from archdsl.train.config import TrainConfig
    from archdsl.train.packed import run_keys
    from archdsl.train.steps import make_optimizer, make_train_step, partition

    graph = _graph(model, size)
    x, y = _images(graph, batch)
    config = TrainConfig(schedule="constant")
    steps = {}
    for side in SIDES:
        net = compile_graph(training_graph(graph), scan=side == "scan")
        params, state = net.init(jax.random.key(0), packed=True)
        trainable, frozen = partition(params, net.trainable(params))
        optimizer = make_optimizer(config, 1000, run_keys(net.runs))
        step = make_train_step(net, optimizer, {})
        args = (trainable, frozen, state, optimizer.init(trainable), x, y, jax.random.key(1))
        jax.block_until_ready(step(*args))  # compile
        steps[side] = (step, args)
    times: dict[str, list[tuple[float, float]]] = {side: [] for side in SIDES}
    for _ in range(calls):
        for side, (step, args) in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(step(*args))
            times[side].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        side: {
            "per_step": statistics.median(w for w, _ in rows),
            "cpu_step": statistics.median(c for _, c in rows),
        }
        for side, rows in times.items()
    }


def uptime() -> str:
    """The load averages, as `uptime` prints them."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _child(args: argparse.Namespace, *what: str) -> Any:
    command = [sys.executable, __file__, "--child", *what]
    command += ["--batch", str(args.batch), "--size", str(args.size), "--calls", str(args.calls)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.setdefault("JAX_PLATFORMS", "cpu")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _break_even(first: dict[str, float], step: dict[str, dict[str, float]]) -> str:
    saved = first["unrolled"] - first["scan"]
    cost = step["scan"]["per_step"] - step["unrolled"]["per_step"]
    if saved <= 0:
        return "0"
    return "never" if cost <= 0 else f"{saved / cost:,.0f}"


def main() -> None:
    """Run the children; print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["resnet101", "resnet152"], choices=list(MODELS)
    )
    parser.add_argument("--repeat", type=int, default=2, help="first-step processes per side")
    parser.add_argument("--calls", type=int, default=7, help="timed steps per side")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="ResNet-50/101/152 input size")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # As `archdsl train` does, before JAX starts: freed step buffers are kept for the
        # next step (backend/memory.py), or the scanned step re-faults its stacked outputs.
        from archdsl.backend.memory import keep_freed_memory

        keep_freed_memory()
        if args.child[0] == "first":
            result = first_step(args.child[1], args.child[2], args.batch, args.size)
        else:
            result = per_step(args.child[1], args.calls, args.batch, args.size)
        print(json.dumps(result))
        return
    print(f"before: {uptime()}", flush=True)
    rows = []
    for model in args.models:
        firsts: dict[str, list[float]] = {side: [] for side in SIDES}
        for r in range(args.repeat):
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                firsts[side].append(_child(args, "first", model, side)["first"])
                print(f"{model} {side} first step: {firsts[side][-1]:.2f} s", flush=True)
        step = _child(args, "step", model)
        print(f"{model} per step: {step}", flush=True)
        first = {side: statistics.median(v) for side, v in firsts.items()}
        rows.append((model, first, step))
    print(f"after: {uptime()}\n")
    print(
        "| model | side | first step (s) | per step (s) | CPU s/step "
        "| first / unrolled | step / unrolled | CPU / unrolled | break-even steps |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for model, first, step in rows:
        for side in SIDES:
            print(
                f"| {model} | {side} | {first[side]:.1f} | {step[side]['per_step']:.3f} "
                f"| {step[side]['cpu_step']:.3f} | {first[side] / first['unrolled']:.2f} "
                f"| {step[side]['per_step'] / step['unrolled']['per_step']:.3f} "
                f"| {step[side]['cpu_step'] / step['unrolled']['cpu_step']:.3f} "
                f"| {_break_even(first, step) if side == 'scan' else ''} |"
            )


if __name__ == "__main__":
    main()
