"""Time to the first training step: archdsl (scan), archdsl (unrolled), hand-written flax.

    python bench/first_step.py [--models resnet50 resnet101 resnet152 googlenet]
        [--batch 2] [--size 64] [--repeat 5] [--dtype float32] [--malloc tuned|default]

For each network and side, in one process: `init` (jit + run of the parameter
initialiser), `compile` (lower + XLA compile of one SGD-with-momentum train step, the
same loss and optimiser on every side, as bench/compiled_vs_flax.py), `first` (the
first call of the compiled step) and, after that, the median per-step time over
`--repeat` calls interleaved across sides so that drift hits all alike, in wall seconds
(`per_step`) and in this process's CPU seconds (`cpu_step`, all threads: on a shared,
loaded machine it moves much less than wall time). `total` is init + compile + first
step; the ratio columns divide by flax's (below 1: faster).

The archdsl scan side carries packed parameters (`model.init(key, packed=True)`),
as a training loop does; the unrolled side compiles with `scan=False`. GoogLeNet has
no run of identical blocks, so its two archdsl sides compile the same program, and
it stays at 224x224 (its final 7x7 pooling needs a 7x7 map).

Before anything runs, `--malloc tuned` (the default) calls
`backend.memory.keep_freed_memory()`, as a training process should: with glibc's
defaults every step maps and zeroes its big output buffers anew, which costs the scanned
step (stacked parameters, tens of MiB per array) several percent; `--malloc default`
measures without it. bench/scan_step.py compares scan and unrolled steps alone, with
page faults.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compiled_vs_flax import (
    CLASSES,
    OPTIMISER,
    Bottleneck,
    GoogLeNet,
    batchnorm,
    conv,
    dense,
    nll,
    param_total,
)

from archdsl.backend.memory import keep_freed_memory
from archdsl.backend.model import compile_graph
from archdsl.frontend import build_graph

SPECS = Path(__file__).resolve().parents[1] / "specs"
STAGES = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}
MODELS = (*STAGES, "googlenet")


class ResNet(nn.Module):
    """torchvision's bottleneck ResNet, written the usual flax way: one module per block."""

    stages: tuple[int, ...]
    classes: int = CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv(64, 7, 2, padding=((3, 3), (3, 3)), bias=False)(x)
        x = nn.relu(batchnorm(train)(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), self.stages, strict=True)):
            for b in range(blocks):
                x = Bottleneck(width, 2 if i > 0 and b == 0 else 1)(x, train)
        return dense(self.classes)(jnp.mean(x, axis=(1, 2)))


def flax_module(name: str) -> nn.Module:
    return GoogLeNet(CLASSES) if name == "googlenet" else ResNet(STAGES[name], CLASSES)


def _loss(apply: Callable[..., Any], aux: dict[str, float]) -> Callable[..., Any]:
    """The training loss of the archdsl sides: nll of the output plus weighted aux heads."""

    def loss(params, state, x, labels, key):
        out, state = apply(params, state, x, train=True, key=key)
        total = nll(out["output"], labels)
        for head, weight in aux.items():
            total = total + weight * nll(out[head], labels)
        return total, state

    return loss


def _flax_loss(module: nn.Module, state_keys: list[str]) -> Callable[..., Any]:
    def loss(params, state, x, labels, key):
        out, updates = module.apply(
            {"params": params, **state}, x, train=True, rngs={"dropout": key}, mutable=state_keys
        )
        outs = out if isinstance(out, tuple) else (out,)
        total = nll(outs[0], labels)
        for extra in outs[1:]:
            total = total + 0.3 * nll(extra, labels)
        return total, updates

    return loss


def _step(loss: Callable[..., Any]) -> Callable[..., Any]:
    def step(params, state, opt_state, x, labels, key):
        (value, state), grads = jax.value_and_grad(loss, has_aux=True)(
            params, state, x, labels, key
        )
        updates, opt_state = OPTIMISER.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, value

    return step


def _clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    return time.perf_counter() - start, result


def side(init: Callable[[], tuple[Any, Any]], loss: Callable[..., Any], x, labels) -> dict:
    """Init, compile and first-step seconds; the compiled step and its arguments."""
    t_init, (params, state) = _clock(init)
    opt_state = OPTIMISER.init(params)
    args = (params, state, opt_state, x, labels, jax.random.key(1))
    start = time.perf_counter()
    compiled = jax.jit(_step(loss)).lower(*args).compile()
    t_compile = time.perf_counter() - start
    t_first, _ = _clock(lambda: compiled(*args))
    return {
        "init": t_init,
        "compile": t_compile,
        "first": t_first,
        "step": compiled,
        "args": args,
        "params": param_total(params),
    }


def bench(name: str, batch: int, size: int, repeat: int, dtype: str) -> dict[str, dict]:
    size = 224 if name == "googlenet" else size
    x = jax.random.normal(jax.random.key(2), (batch, size, size, 3))
    labels = jnp.arange(batch) % CLASSES
    arguments: dict[str, Any] = {"classes": CLASSES}
    if name != "googlenet":
        arguments["size"] = size
    graph = build_graph(SPECS / f"{name}.arch", **arguments)
    aux = {k: h.weight for k, h in graph.aux.items()}
    sides: dict[str, dict] = {}
    for label, scan in (("scan", True), ("unrolled", False)):
        model = compile_graph(graph, dtype=dtype, scan=scan)
        init = functools.partial(model.init, jax.random.key(0), packed=True)
        sides[label] = side(init, _loss(model.apply, aux), x, labels)
    module = flax_module(name)

    def flax_init():
        keys = {"params": jax.random.key(0), "dropout": jax.random.key(0)}
        variables = jax.jit(functools.partial(module.init, train=True))(keys, x)
        return variables["params"], {k: v for k, v in variables.items() if k != "params"}

    flax_state_keys = ["batch_stats"] if name != "googlenet" else []
    sides["flax"] = side(flax_init, _flax_loss(module, flax_state_keys), x, labels)
    counts = {k: s["params"] for k, s in sides.items()}
    assert len(set(counts.values())) == 1, f"{name}: parameter counts differ: {counts}"
    times: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeat):
        for key, s in sides.items():
            start = time.process_time()
            times[key].append(_clock(lambda s=s: s["step"](*s["args"]))[0])
            cpu[key].append(time.process_time() - start)
    for key, s in sides.items():
        s["per_step"] = statistics.median(times[key])
        s["cpu_step"] = statistics.median(cpu[key])
        s["total"] = s["init"] + s["compile"] + s["first"]
    return sides


def warm_up(batch: int, dtype: str) -> None:
    """Compile and run a tiny network's step first: the process's one-time costs of a
    first compile then land on no side (before, the first model's scan side paid them)."""
    graph = build_graph(SPECS / "tiny_resnet.arch", size=8)
    x = jnp.zeros((batch, 8, 8, 3))
    model = compile_graph(graph, dtype=dtype, scan=True)
    init = functools.partial(model.init, jax.random.key(0), packed=True)
    side(init, _loss(model.apply, {}), x, jnp.arange(batch) % CLASSES)


COLUMNS = ("init", "compile", "first", "total", "per_step", "cpu_step")


def table(name: str, sides: dict[str, dict]) -> str:
    flax = sides["flax"]
    lines = []
    for label, s in sides.items():
        cells = " ".join(f"{s[c]:>8.2f}" for c in COLUMNS)
        ratios = " ".join(f"{s[c] / flax[c]:>6.2f}" for c in ("total", "per_step", "cpu_step"))
        lines.append(f"{name:<10} {label:<9} {cells} | {ratios}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="ResNet input size")
    parser.add_argument("--repeat", type=int, default=5, help="timed steps per side")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--malloc", choices=("tuned", "default"), default="tuned")
    args = parser.parse_args(argv)
    # Before JAX's first computation: XLA's threads keep the arenas they start with.
    tuned = args.malloc == "tuned" and keep_freed_memory()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, batch {args.batch}, "
          f"{args.dtype}, malloc {'tuned' if tuned else 'default'}; seconds; "
          "total = init + compile + first step", file=sys.stderr)  # fmt: skip
    head = " ".join(f"{c:>8}" for c in COLUMNS)
    print(
        f"{'model':<10} {'side':<9} {head} | {'total':>6} {'step':>6} {'cpu':>6}  (ratio to flax)"
    )
    warm_up(args.batch, args.dtype)
    for name in args.models:
        print(table(name, bench(name, args.batch, args.size, args.repeat, args.dtype)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
