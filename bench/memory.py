"""Check `archdsl.graph.cost`'s activation estimate against XLA's buffer assignment.

    python bench/memory.py [--batch 32] [--specs lenet5 resnet50 googlenet]

For each spec, compiles (without running) the real train step of `archdsl train` (Adam)
and the inference function at the batch size, and prints XLA's `memory_analysis()`
beside the estimate: the temporary buffers XLA allocates (activations kept for the
backward pass, gradients, workspace) against the estimated activations kept plus
gradients and transient; for inference, XLA's temporaries against the live peak.
Arguments (weights, optimizer state, batch) are reported by both and agree by construction.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp

from archdsl.backend.model import compile_graph
from archdsl.frontend import build_graph
from archdsl.graph.cost import estimate
from archdsl.graph.passes.training import training_graph
from archdsl.train.config import TrainConfig
from archdsl.train.steps import make_optimizer, make_train_step, partition

SPECS = Path(__file__).resolve().parents[1] / "specs"
MIB = 2**20


def xla_train(spec: str, batch: int) -> tuple[int, int, int]:
    """(temp, argument, output) bytes of the compiled train step."""
    graph = build_graph(SPECS / f"{spec}.arch")
    model = compile_graph(training_graph(graph))
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    trainable, frozen = partition(params, model.trainable(params))
    optimizer = make_optimizer(TrainConfig(), 100)
    opt_state = jax.eval_shape(optimizer.init, trainable)
    step = make_train_step(model, optimizer, {k: h.weight for k, h in graph.aux.items()})
    x = jax.ShapeDtypeStruct((batch, *model.input_shape), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)
    key = jax.eval_shape(lambda: jax.random.key(0))
    compiled = step.lower(trainable, frozen, state, opt_state, x, y, key).compile()
    m = compiled.memory_analysis()
    return m.temp_size_in_bytes, m.argument_size_in_bytes, m.output_size_in_bytes


def xla_inference(spec: str, batch: int) -> int:
    """Temp bytes of the compiled inference function."""
    graph = build_graph(SPECS / f"{spec}.arch")
    model = compile_graph(graph)
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((batch, *model.input_shape), jnp.float32)
    fn = jax.jit(lambda p, s, x: model.apply(p, s, x)[0])
    return fn.lower(params, state, x).compile().memory_analysis().temp_size_in_bytes


def main() -> None:
    """Print the comparison table (MiB)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--specs", nargs="+", default=["lenet5", "resnet50", "googlenet"])
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}, batch {args.batch}, float32, Adam; MiB")
    head = (
        f"{'spec':<10}{'kept (est)':>11}{'+grads+tr':>11}{'XLA temp':>10}{'ratio':>7}"
        f"{'args est':>10}{'XLA args':>10}{'infer est':>11}{'XLA temp':>10}{'ratio':>7}"
    )
    print(head)
    for spec in args.specs:
        graph = build_graph(SPECS / f"{spec}.arch")
        train = estimate(graph, args.batch, train=True, optimizer="adam")
        infer = estimate(graph, args.batch, train=False)
        temp, arguments, _ = xla_train(spec, args.batch)
        infer_temp = xla_inference(spec, args.batch)
        kept = train.activation_bytes
        with_grads = kept + train.gradient_bytes + train.transient_bytes
        est_args = (
            train.params_bytes + train.state_bytes + train.optimizer_bytes + train.input_bytes
        )
        print(
            f"{spec:<10}{kept / MIB:>11.1f}{with_grads / MIB:>11.1f}{temp / MIB:>10.1f}"
            f"{with_grads / temp:>7.2f}{est_args / MIB:>10.1f}{arguments / MIB:>10.1f}"
            f"{infer.activation_bytes / MIB:>11.1f}{infer_temp / MIB:>10.1f}"
            f"{infer.activation_bytes / max(infer_temp, 1):>7.2f}"
        )


if __name__ == "__main__":
    main()
