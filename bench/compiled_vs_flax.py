"""Time archdsl-compiled networks against hand-written flax.linen twins.

    python bench/compiled_vs_flax.py [--models lenet5 resnet50 vgg16 googlenet]
        [--batch 2] [--size 64] [--repeat 7] [--dtype float32]

For each network both sides get the same architecture, the same initialisation scheme
(He normal fan_out for convs, Glorot normal for dense, zero biases), the same batch and
the same optax SGD-with-momentum train step. After compiling (timed: trace + lower +
XLA compile) and one warm-up call each, inference and train steps are timed
interleaved (archdsl, flax, archdsl, ...) so drift hits both alike; the table shows
medians and the archdsl/flax ratio (below 1: archdsl faster).

`--size` changes the input resolution of ResNet-50 and VGG-16 (LeNet-5 stays 32x32;
GoogLeNet stays 224x224, as its final 7x7 average pool needs a 7x7 map): the spec's
input node is replaced and shapes re-inferred (the specs' `: 224x224x3` assertions
are skipped for that), so a 2-core CPU finishes in minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from archdsl.backend.model import (
    CompiledModel,
    compile_graph,
    conv_kernel_init,
    dense_kernel_init,
)
from archdsl.compiler import compile_file
from archdsl.graph.ops import Input

SPECS = Path(__file__).resolve().parents[1] / "specs"
NATIVE = {"lenet5": 32, "resnet50": 224, "vgg16": 224, "googlenet": 224}
RESIZABLE = ("resnet50", "vgg16")
CHANNELS = {"lenet5": 1, "resnet50": 3, "vgg16": 3, "googlenet": 3}
CLASSES = 10


# ----------------------------------------------------------------------------- flax twins


def conv(features: int, kernel: int, stride: int = 1, padding: Any = "SAME", bias: bool = True):
    return nn.Conv(
        features,
        (kernel, kernel),
        (stride, stride),
        padding=padding,
        use_bias=bias,
        kernel_init=conv_kernel_init,
    )


def dense(features: int) -> nn.Dense:
    return nn.Dense(features, kernel_init=dense_kernel_init)


def batchnorm(train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)


def ceil_pads(size: int, window: int, stride: int) -> tuple[int, int]:
    """Caffe's ceil mode as explicit (low, high) padding for `nn.max_pool`."""
    out = -(-(size - window) // stride) + 1
    if (out - 1) * stride >= size:
        out -= 1
    return 0, max((out - 1) * stride + window - size, 0)


def max_pool_ceil(x: jax.Array, window: int, stride: int) -> jax.Array:
    pads = tuple(ceil_pads(x.shape[a], window, stride) for a in (1, 2))
    return nn.max_pool(x, (window, window), (stride, stride), padding=pads)


def lrn(x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    sums = jax.lax.reduce_window(
        x * x, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1),
        ((0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)),
    )  # fmt: skip
    return x / (k + alpha / size * sums) ** beta


class LeNet5(nn.Module):
    classes: int = CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = jnp.tanh(conv(6, 5, padding="VALID")(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = jnp.tanh(conv(16, 5, padding="VALID")(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = x.reshape((x.shape[0], -1))
        x = jnp.tanh(dense(120)(x))
        x = jnp.tanh(dense(84)(x))
        return nn.softmax(dense(self.classes)(x))


class VGG16(nn.Module):
    classes: int = CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for width, n in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
            for _ in range(n):
                x = nn.relu(conv(width, 3)(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape((x.shape[0], -1))
        for _ in range(2):
            x = nn.Dropout(0.5, deterministic=not train)(nn.relu(dense(4096)(x)))
        return nn.softmax(dense(self.classes)(x))


class Bottleneck(nn.Module):
    width: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nn.relu(batchnorm(train)(conv(self.width, 1, padding="VALID", bias=False)(x)))
        y = conv(self.width, 3, self.stride, padding=((1, 1), (1, 1)), bias=False)(y)
        y = nn.relu(batchnorm(train)(y))
        y = batchnorm(train)(conv(self.width * 4, 1, padding="VALID", bias=False)(y))
        if x.shape != y.shape:
            x = conv(self.width * 4, 1, self.stride, padding="VALID", bias=False)(x)
            x = batchnorm(train)(x)
        return nn.relu(y + x)


class ResNet50(nn.Module):
    classes: int = CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv(64, 7, 2, padding=((3, 3), (3, 3)), bias=False)(x)
        x = nn.relu(batchnorm(train)(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for i, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            for b in range(blocks):
                x = Bottleneck(width, 2 if i > 0 and b == 0 else 1)(x, train)
        return dense(self.classes)(jnp.mean(x, axis=(1, 2)))


class Inception(nn.Module):
    c1: int
    c3r: int
    c3: int
    c5r: int
    c5: int
    pool_proj: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        a = nn.relu(conv(self.c1, 1)(x))
        b = nn.relu(conv(self.c3, 3)(nn.relu(conv(self.c3r, 1)(x))))
        c = nn.relu(conv(self.c5, 5)(nn.relu(conv(self.c5r, 1)(x))))
        d = nn.max_pool(x, (3, 3), (1, 1), padding="SAME")
        d = nn.relu(conv(self.pool_proj, 1)(d))
        return jnp.concatenate([a, b, c, d], axis=-1)


class AuxHead(nn.Module):
    classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.avg_pool(x, (5, 5), (3, 3))
        x = nn.relu(conv(128, 1)(x)).reshape((x.shape[0], -1))
        x = nn.Dropout(0.7, deterministic=not train)(nn.relu(dense(1024)(x)))
        return nn.softmax(dense(self.classes)(x))


class GoogLeNet(nn.Module):
    classes: int = CLASSES

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> Any:
        x = nn.relu(conv(64, 7, 2, padding=((3, 3), (3, 3)))(x))
        x = lrn(max_pool_ceil(x, 3, 2))
        x = nn.relu(conv(64, 1)(x))
        x = lrn(nn.relu(conv(192, 3, padding=((1, 1), (1, 1)))(x)))
        x = max_pool_ceil(x, 3, 2)
        x = Inception(64, 96, 128, 16, 32, 32)(x)
        x = Inception(128, 128, 192, 32, 96, 64)(x)
        x = max_pool_ceil(x, 3, 2)
        x = Inception(192, 96, 208, 16, 48, 64)(x)
        aux1 = AuxHead(self.classes)(x, train) if train else None
        x = Inception(160, 112, 224, 24, 64, 64)(x)
        x = Inception(128, 128, 256, 24, 64, 64)(x)
        x = Inception(112, 144, 288, 32, 64, 64)(x)
        aux2 = AuxHead(self.classes)(x, train) if train else None
        x = Inception(256, 160, 320, 32, 128, 128)(x)
        x = max_pool_ceil(x, 3, 2)
        x = Inception(256, 160, 320, 32, 128, 128)(x)
        x = Inception(384, 192, 384, 48, 128, 128)(x)
        x = nn.avg_pool(x, (7, 7), (1, 1)).reshape((x.shape[0], -1))
        x = nn.Dropout(0.4, deterministic=not train)(x)
        out = nn.softmax(dense(self.classes)(x))
        return (out, aux1, aux2) if train else out


FLAX = {"lenet5": LeNet5, "resnet50": ResNet50, "vgg16": VGG16, "googlenet": GoogLeNet}


# ----------------------------------------------------------------------------- both sides


def archdsl_model(name: str, size: int, dtype: str) -> CompiledModel:
    """`compile_file` on the spec; at another resolution, the same graph re-inferred."""
    path = SPECS / f"{name}.arch"
    if size == NATIVE[name]:
        return compile_file(path, dtype=dtype, classes=CLASSES)
    from archdsl.graph.lower import lower
    from archdsl.graph.passes import infer_shapes, insert_projections, run_pipeline
    from archdsl.lang.loader import load_file

    graph = lower(load_file(path), None, {"classes": CLASSES})
    (entry,) = graph.inputs
    node = graph.node(entry)
    graph.replace(entry, dataclasses.replace(node, op=Input((size, size, CHANNELS[name]))))
    graph = run_pipeline(graph, (infer_shapes, insert_projections, infer_shapes))
    return compile_graph(graph, dtype=dtype)


def nll(probs: jax.Array, labels: jax.Array) -> jax.Array:
    picked = jnp.take_along_axis(probs, labels[:, None], axis=1)
    return -jnp.mean(jnp.log(jnp.maximum(picked, 1e-12)))


OPTIMISER = optax.sgd(0.01, momentum=0.9)


@dataclasses.dataclass
class Side:
    """One framework's compiled inference and train step, and their arguments."""

    infer: Callable[..., Any]
    step: Callable[..., Any]
    infer_args: tuple[Any, ...]
    step_args: tuple[Any, ...]
    compile_s: tuple[float, float]


def _compile(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def _side(
    infer: Callable[..., Any],
    loss: Callable[..., Any],
    params: Any,
    state: Any,
    opt_state: Any,
    x: jax.Array,
    labels: jax.Array,
) -> Side:
    """Compile inference and one SGD train step around `loss`, the same for both sides."""

    def step(params, state, opt_state, x, labels, key):
        (value, state), grads = jax.value_and_grad(loss, has_aux=True)(
            params, state, x, labels, key
        )
        updates, opt_state = OPTIMISER.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, value

    infer_args = (params, state, x)
    step_args = (params, state, opt_state, x, labels, jax.random.key(1))
    infer_c, infer_s = _compile(infer, *infer_args)
    step_c, step_s = _compile(step, *step_args)
    return Side(infer_c, step_c, infer_args, step_args, (infer_s, step_s))


def archdsl_side(name: str, x: jax.Array, labels: jax.Array, model: CompiledModel) -> Side:
    params, state = model.init(jax.random.key(0))
    opt_state = OPTIMISER.init(params)
    aux = {k: h.weight for k, h in model.graph.aux.items()}

    def infer(params, state, x):
        return model.apply(params, state, x)[0]

    def loss(params, state, x, labels, key):
        out, state = model.apply(params, state, x, train=True, key=key)
        total = nll(out["output"], labels)
        for head, weight in aux.items():
            total = total + weight * nll(out[head], labels)
        return total, state

    return _side(infer, loss, params, state, opt_state, x, labels)


def flax_side(name: str, x: jax.Array, labels: jax.Array, dtype: str) -> Side:
    module = FLAX[name](CLASSES)
    # Initialised in training mode so that the auxiliary heads get parameters too.
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(0)}
    variables = module.init(keys, x, train=True)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    opt_state = OPTIMISER.init(params)
    compute = jnp.dtype(dtype)

    def cast(tree):
        return jax.tree.map(lambda a: a.astype(compute), tree)

    def infer(params, state, x):
        out = module.apply({"params": cast(params), **state}, x.astype(compute), train=False)
        return out.astype(jnp.float32)

    def loss(params, state, x, labels, key):
        out, updates = module.apply(
            {"params": cast(params), **state},
            x.astype(compute),
            train=True,
            rngs={"dropout": key},
            mutable=list(state),
        )
        outs = out if isinstance(out, tuple) else (out,)
        total = nll(outs[0].astype(jnp.float32), labels)
        for aux in outs[1:]:
            total = total + 0.3 * nll(aux.astype(jnp.float32), labels)
        return total, updates

    return _side(infer, loss, params, state, opt_state, x, labels)


def _time(fn: Callable[..., Any], args: tuple[Any, ...]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def param_total(tree: Any) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def bench(name: str, batch: int, size: int, repeat: int, dtype: str) -> dict[str, Any]:
    size = size if name in RESIZABLE else NATIVE[name]
    shape = (batch, size, size, CHANNELS[name])
    x = jax.random.normal(jax.random.key(2), shape)
    labels = jnp.arange(batch) % CLASSES
    model = archdsl_model(name, size, dtype)
    sides = {
        "archdsl": archdsl_side(name, x, labels, model),
        "flax": flax_side(name, x, labels, dtype),
    }
    counts = {k: param_total(s.infer_args[0]) for k, s in sides.items()}
    assert counts["archdsl"] == counts["flax"], f"{name}: parameter counts differ: {counts}"
    times: dict[str, dict[str, list[float]]] = {k: {"infer": [], "step": []} for k in sides}
    for side in sides.values():  # warm-up
        _time(side.infer, side.infer_args)
        _time(side.step, side.step_args)
    for _ in range(repeat):
        for key, side in sides.items():
            times[key]["infer"].append(_time(side.infer, side.infer_args))
            times[key]["step"].append(_time(side.step, side.step_args))
    med = {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}
    return {
        "name": name,
        "shape": shape,
        "params": counts["archdsl"],
        "median": med,
        "compile": {k: s.compile_s for k, s in sides.items()},
    }


HEADER = (
    f"{'model':<10} {'input':>14} {'params':>11} | {'infer ms':>17} {'ratio':>5} | "
    f"{'train step ms':>17} {'ratio':>5} | {'compile s (infer+train)':>23}\n"
    f"{'':<10} {'':>14} {'':>11} | {'archdsl':>8} {'flax':>8} {'':>5} | "
    f"{'archdsl':>8} {'flax':>8} {'':>5} | {'archdsl':>11} {'flax':>11}"
)


def row(r: dict[str, Any]) -> str:
    """One model's line: medians in ms, archdsl/flax ratios, compile seconds."""
    a, f = r["median"]["archdsl"], r["median"]["flax"]
    ca, cf = r["compile"]["archdsl"], r["compile"]["flax"]
    return (
        f"{r['name']:<10} {'x'.join(map(str, r['shape'])):>14} {r['params']:>11,} | "
        f"{a['infer'] * 1e3:>8.2f} {f['infer'] * 1e3:>8.2f} {a['infer'] / f['infer']:>5.2f} | "
        f"{a['step'] * 1e3:>8.2f} {f['step'] * 1e3:>8.2f} {a['step'] / f['step']:>5.2f} | "
        f"{ca[0]:>5.1f}+{ca[1]:<5.1f} {cf[0]:>5.1f}+{cf[1]:<5.1f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(FLAX), choices=list(FLAX))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="ResNet/VGG input size")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per side")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, batch {args.batch}, "
          f"{args.dtype}, median of {args.repeat}", file=sys.stderr)  # fmt: skip
    print("ratio = archdsl / flax (below 1: archdsl faster)")
    print(HEADER)
    print("-" * len(HEADER.splitlines()[0]), flush=True)
    for name in args.models:
        print(row(bench(name, args.batch, args.size, args.repeat, args.dtype)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
