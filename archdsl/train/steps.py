"""The pure JAX/optax side of training: loss, optimiser and schedule, jitted steps.

The loss is the mean cross-entropy of the main output plus, for each `aux` head, its
cross-entropy times the head's declared weight. Frozen nodes take no gradient and have no
optimizer state: parameters are split (`partition`) into a trainable and a frozen tree,
gradients are taken with respect to the first only, and the optimizer sees only the first.
Nothing here prints or touches files; `loop` drives these.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from archdsl.backend.model import CompiledModel
from archdsl.graph.ir import Graph
from archdsl.graph.shapes import format_shape
from archdsl.train.config import ArchTrainError, TrainConfig, Tree
from archdsl.train.data import Dataset
from archdsl.train.packed import is_stacked
from archdsl.train.parallel import local_rows, make_batch


# the loss -----------------------------------------------------------------------------------
def classes_of(graph: Graph) -> int:
    """The number of classes: the size of the main output, which must be a vector.

    Raises:
        ArchTrainError: the output is not `(classes,)`, or an aux head's size differs.
    """
    shape = graph.node(graph.output).shape
    assert shape is not None
    if len(shape) != 1:
        raise ArchTrainError(
            f"`{graph.name}` gives {format_shape(shape)} per example; training a classifier "
            "needs a vector of class scores",
            help="end the network with `globalavgpool` or `flatten`, then `dense classes`",
        )
    for name, head in graph.aux.items():
        aux_shape = graph.node(head.output).shape
        if aux_shape != shape:
            raise ArchTrainError(
                f"aux head `{name}` gives {format_shape(aux_shape or ())}, but the main "
                f"output gives {format_shape(shape)}: both are scored against the same labels",
                span=head.span,
            )
    return shape[0]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example cross-entropy of integer labels under softmax(logits)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


# optimizer ----------------------------------------------------------------------------------
def make_schedule(config: TrainConfig, total_steps: int) -> optax.Schedule:
    """The learning rate at each step.

    `constant`; `cosine` decays to 0 over the run; `step` divides by 10 at 50% and 75%
    of the run; `warmup-cosine` rises linearly over the first 5% (at least one step)
    then decays as `cosine`.
    """
    lr = config.learning_rate
    total = max(total_steps, 1)
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=total)
    if config.schedule == "step":
        return optax.piecewise_constant_schedule(
            lr, {max(1, total // 2): 0.1, max(2, total * 3 // 4): 0.1}
        )
    warmup = max(1, total // 20)
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total, warmup + 1))


def make_optimizer(
    config: TrainConfig, total_steps: int, stacked: Collection[str] = ()
) -> optax.GradientTransformation:
    """The optax optimizer for the trainable parameters.

    Weight decay applies to kernels (arrays of rank 2 and more), not to biases or batch
    norm's scale and shift. `stacked` names the runs of packed parameters
    (`packed.run_keys`): their leaves have one more axis, which the rank leaves out.
    """
    schedule = make_schedule(config, total_steps)

    def kernels(tree: Any) -> Any:
        return jax.tree_util.tree_map_with_path(
            lambda path, x: x.ndim - is_stacked(path, stacked) >= 2, tree
        )

    if config.optimizer == "sgd":
        parts = []
        if config.weight_decay:
            parts.append(optax.add_decayed_weights(config.weight_decay, mask=kernels))
        parts.append(optax.sgd(schedule, momentum=config.momentum or None))
        return optax.chain(*parts)
    if config.weight_decay:
        return optax.adamw(schedule, weight_decay=config.weight_decay, mask=kernels)
    return optax.adam(schedule)


def partition(params: Tree, trainable: Mapping[str, Any]) -> tuple[Tree, Tree]:
    """Split params into `(trainable, frozen)` trees by a mask like `model.trainable`.

    Either form of params: a packed run's entry nests one level deeper (`{relative
    name: {leaf: stacked}}`); a key is kept on a side only if something lands there.
    """
    train: Tree = {}
    frozen: Tree = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            a, b = partition(value, trainable[key])
            if a:
                train[key] = a
            if b:
                frozen[key] = b
        else:
            (train if trainable[key] else frozen)[key] = value
    return train, frozen


def merge(a: Tree, b: Tree) -> Tree:
    """Join two trees split by `partition`."""
    out: Tree = dict(a)
    for key, value in b.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# jitted steps -------------------------------------------------------------------------------
def make_train_step(
    model: CompiledModel,
    optimizer: optax.GradientTransformation,
    aux_weights: Mapping[str, float],
    sharding: Any = None,
) -> Callable[..., tuple[Tree, Tree, Any, dict[str, jax.Array]]]:
    """`step(trainable, frozen, state, opt_state, x, y, key) -> (trainable, state,
    opt_state, metrics)`, jitted; with `sharding` (one sharding, or a tree of them that
    is a prefix of the outputs), the outputs are placed by it."""

    def loss_fn(
        trainable: Tree, frozen: Tree, state: Tree, x: jax.Array, y: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, tuple[Tree, dict[str, jax.Array]]]:
        outputs, new_state = model.apply(merge(trainable, frozen), state, x, train=True, key=key)
        main = jnp.mean(cross_entropy(outputs["output"], y))
        total = main
        aux = {}
        for name, weight in aux_weights.items():
            aux[name] = jnp.mean(cross_entropy(outputs[name], y))
            total = total + weight * aux[name]
        correct = jnp.sum(jnp.argmax(outputs["output"], axis=-1) == y)
        metrics = {"loss": total, "main": main, "correct": correct, "aux": aux}
        return total, (new_state, metrics)

    def step(
        trainable: Tree,
        frozen: Tree,
        state: Tree,
        opt_state: Any,
        x: jax.Array,
        y: jax.Array,
        key: jax.Array,
    ) -> tuple[Tree, Tree, Any, dict[str, jax.Array]]:
        grads, (new_state, metrics) = jax.grad(loss_fn, has_aux=True)(
            trainable, frozen, state, x, y, key
        )
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), new_state, opt_state, metrics

    return jax.jit(step, out_shardings=sharding) if sharding is not None else jax.jit(step)


def make_eval_step(model: CompiledModel, sharding: Any = None) -> Callable[..., dict]:
    """`evaluate(params, state, x, y, weight) -> {"loss", "correct"}` sums over a batch;
    `weight` is 0 for the padding that fills the last batch."""

    def evaluate(
        params: Tree, state: Tree, x: jax.Array, y: jax.Array, weight: jax.Array
    ) -> dict[str, jax.Array]:
        logits, _ = model.apply(params, state, x, train=False)
        hit = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
        return {
            "loss": jnp.sum(cross_entropy(logits, y) * weight),
            "correct": jnp.sum(hit * weight),
        }

    return jax.jit(evaluate, out_shardings=sharding) if sharding is not None else jax.jit(evaluate)


def evaluate(
    eval_step: Callable[..., dict],
    params: Tree,
    state: Tree,
    data: Dataset,
    batch_size: int,
    mesh: Any,
) -> tuple[float, float]:
    """Mean loss and accuracy over a dataset, in padded batches; each process reads only
    its own rows of each batch (`parallel.local_rows`)."""
    loss = correct = 0.0
    rows = local_rows(mesh, batch_size)
    for start in range(0, len(data), batch_size):
        index = np.arange(start, start + batch_size)[rows]
        real = index[index < len(data)]
        pad = len(index) - len(real)
        x, y = data.x[real], data.y[real]
        weight = np.ones(len(real), np.float32)
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
            weight = np.concatenate([weight, np.zeros(pad, np.float32)])
        out = eval_step(params, state, *make_batch((x, y, weight), mesh, batch_size))
        loss += float(out["loss"])
        correct += float(out["correct"])
    return loss / len(data), correct / len(data)
