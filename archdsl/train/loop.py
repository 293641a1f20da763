"""Training: optimiser and schedule, the loss (aux heads at their weights), jitted
data-parallel steps, the epoch loop with evaluation, checkpoints, Ctrl-C and resume.

The loss is the mean cross-entropy of the main output plus, for each `aux` head, its
cross-entropy times the head's declared weight. A head (main or aux) that ends in
`softmax` is trained from the logits before it: `training_graph` re-points the head at
the softmax's input, so the loss is `log_softmax` of logits (stable) rather than the log
of a probability that may round to 0. Its argmax, hence the accuracy, is unchanged. Any
other last layer is taken to give logits already (`log_softmax` works as it is).

Frozen nodes take no gradient and have no optimizer state: parameters are split
into a trainable and a frozen tree, gradients are taken with respect to the first only,
and the optimizer sees only the first. (The backend keeps frozen batch norm in inference
mode.) The same seed gives the same run: the initial weights, the shuffle of each epoch
(`data.epoch_order`) and the dropout key of each step all derive from it, so a run
stopped and resumed from its checkpoint ends where an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from archdsl.backend.model import CompiledModel, compile_graph
from archdsl.errors import ArchValueError
from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.graph.report import format_count
from archdsl.graph.shapes import format_shape
from archdsl.train.checkpoint import CHECKPOINT_NAME, Checkpoint, save_checkpoint
from archdsl.train.data import Dataset, Split, epoch_order
from archdsl.train.parallel import check_batch, make_mesh, replicate, replicated, shard_batch
from archdsl.train.transfer import MatchReport, check_match, match_weights

Tree = dict[str, dict[str, Any]]

OPTIMIZERS: Final = ("adam", "sgd")
SCHEDULES: Final = ("constant", "cosine", "step", "warmup-cosine")
DEFAULT_LR: Final = {"adam": 1e-3, "sgd": 0.05}
RESUME_KEYS: Final = (
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "weight_decay",
    "momentum",
    "seed",
    "dtype",
)
"""Settings a resumed run takes from its checkpoint: to continue exactly, they must not change."""
WEIGHTS_NAME: Final = "weights.safetensors"
"""The file name of the latest weights (`save_weights`) in a checkpoint folder."""


class ArchTrainError(ArchValueError):
    """Training settings that cannot work: a bad option, a network that cannot classify."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, as the `train` command's options."""

    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None
    """The peak learning rate; None for the optimizer's default (`DEFAULT_LR`)."""
    optimizer: str = "adam"
    schedule: str = "cosine"
    weight_decay: float = 0.0
    """L2 added to the gradient for `sgd`, decoupled (AdamW) for `adam`; kernels only."""
    momentum: float = 0.9
    """SGD's momentum (0 for plain SGD)."""
    seed: int = 0
    devices: int = 1
    dtype: str = "float32"

    @property
    def learning_rate(self) -> float:
        """The peak learning rate in force."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def check(self) -> None:
        """Raises `ArchTrainError` for a value out of range."""
        if self.optimizer not in OPTIMIZERS:
            raise ArchTrainError(
                f"unknown optimizer `{self.optimizer}`", help=f"use one of {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ArchTrainError(
                f"unknown schedule `{self.schedule}`", help=f"use one of {', '.join(SCHEDULES)}"
            )
        for name, value, low in (
            ("--epochs", self.epochs, 1),
            ("--batch-size", self.batch_size, 1),
            ("--devices", self.devices, 1),
        ):
            if value < low:
                raise ArchTrainError(f"`{name}` must be at least {low}, got {value}")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ArchTrainError(f"`--lr` must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ArchTrainError(f"`--weight-decay` must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ArchTrainError(f"`--momentum` must be in [0, 1), got {self.momentum}")

    def to_json(self) -> dict[str, Any]:
        """The settings as saved in checkpoints, with the learning rate in force."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "lr": self.learning_rate}


@dataclass(frozen=True)
class EpochStats:
    """One epoch's figures: training means, held-out loss and accuracy, throughput."""

    epoch: int
    """1-based."""
    loss: float
    """Mean training objective (main plus weighted aux losses)."""
    main_loss: float
    accuracy: float
    test_loss: float
    test_accuracy: float
    examples_per_second: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """For checkpoints."""
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What a run ends with."""

    params: Tree
    state: Tree
    history: list[EpochStats]
    step: int
    epochs_done: int
    interrupted: bool = False
    checkpoint: Path | None = None
    weights: Path | None = None
    match: MatchReport | None = None

    @property
    def test_accuracy(self) -> float:
        """The last evaluated epoch's held-out accuracy."""
        return self.history[-1].test_accuracy if self.history else float("nan")


class _Live(NamedTuple):
    """The training state, assigned as one value so an interrupt never splits it."""

    trainable: Tree
    state: Tree
    opt_state: Any
    step: int
    position: int
    sums: tuple[float, float, float, int]
    """Running (loss, main loss, correct, examples) of the current epoch."""


StepHook = Callable[[int], bool | None]
"""Called after every step with the step count; returning True stops as Ctrl-C does."""


# the graph and the loss ---------------------------------------------------------------------
def training_graph(graph: Graph) -> Graph:
    """The graph that is trained: each head ending in `softmax` ends at its logits instead.

    Parameter names do not change (softmax has none), so weights move freely between
    this graph and the original.
    """
    out = graph.copy()
    dropped = []

    def logits(name: str) -> str:
        node = out.node(name)
        if isinstance(node.op, ops.Softmax):
            dropped.append(name)
            return node.inputs[0]
        return name

    out.outputs = (logits(out.output), *out.outputs[1:])
    out.aux = {
        key: dataclasses.replace(head, output=logits(head.output)) for key, head in out.aux.items()
    }
    ends = {out.output, *(h.output for h in out.aux.values())}
    for name in dropped:
        if name not in ends and not out.users(name):
            out.remove(name)
    return out


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


def make_optimizer(config: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The optax optimizer for the trainable parameters.

    Weight decay applies to kernels (arrays of rank 2 and more), not to biases or batch
    norm's scale and shift.
    """
    schedule = make_schedule(config, total_steps)

    def kernels(tree: Any) -> Any:
        return jax.tree.map(lambda x: x.ndim >= 2, tree)

    if config.optimizer == "sgd":
        parts = []
        if config.weight_decay:
            parts.append(optax.add_decayed_weights(config.weight_decay, mask=kernels))
        parts.append(optax.sgd(schedule, momentum=config.momentum or None))
        return optax.chain(*parts)
    if config.weight_decay:
        return optax.adamw(schedule, weight_decay=config.weight_decay, mask=kernels)
    return optax.adam(schedule)


def partition(params: Tree, trainable: Mapping[str, Mapping[str, bool]]) -> tuple[Tree, Tree]:
    """Split params into `(trainable, frozen)` trees by a mask like `model.trainable`."""
    train: Tree = {}
    frozen: Tree = {}
    for node, leaves in params.items():
        for leaf, x in leaves.items():
            (train if trainable[node][leaf] else frozen).setdefault(node, {})[leaf] = x
    return train, frozen


def merge(a: Tree, b: Tree) -> Tree:
    """Join two trees split by `partition`."""
    out: Tree = {node: dict(leaves) for node, leaves in a.items()}
    for node, leaves in b.items():
        out.setdefault(node, {}).update(leaves)
    return out


# jitted steps -------------------------------------------------------------------------------
def make_train_step(
    model: CompiledModel,
    optimizer: optax.GradientTransformation,
    aux_weights: Mapping[str, float],
    sharding: Any = None,
) -> Callable[..., tuple[Tree, Tree, Any, dict[str, jax.Array]]]:
    """`step(trainable, frozen, state, opt_state, x, y, key) -> (trainable, state,
    opt_state, metrics)`, jitted; with `sharding`, every output is placed by it."""

    def loss_fn(
        trainable: Tree, frozen: Tree, state: Tree, x: jax.Array, y: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, tuple[Tree, dict[str, jax.Array]]]:
        outputs, new_state = model.apply(merge(trainable, frozen), state, x, train=True, key=key)
        main = jnp.mean(cross_entropy(outputs["output"], y))
        total = main
        for name, weight in aux_weights.items():
            total = total + weight * jnp.mean(cross_entropy(outputs[name], y))
        correct = jnp.sum(jnp.argmax(outputs["output"], axis=-1) == y)
        return total, (new_state, {"loss": total, "main": main, "correct": correct})

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
    """Mean loss and accuracy over a dataset, in padded batches."""
    loss = correct = 0.0
    for start in range(0, len(data), batch_size):
        x = data.x[start : start + batch_size]
        y = data.y[start : start + batch_size]
        pad = batch_size - len(y)
        weight = np.ones(len(y), np.float32)
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
            weight = np.concatenate([weight, np.zeros(pad, np.float32)])
        out = eval_step(params, state, *shard_batch((x, y, weight), mesh))
        loss += float(out["loss"])
        correct += float(out["correct"])
    return loss / len(data), correct / len(data)


# the loop -----------------------------------------------------------------------------------
def train(
    graph: Graph,
    data: Split,
    config: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: Checkpoint | None = None,
    init: tuple[Tree, Tree] | None = None,
    init_name: str = "the base weights",
    console: Console | None = None,
    progress: bool = True,
    on_step: StepHook | None = None,
) -> TrainResult:
    """Train a checked graph on `data.train`, evaluating on `data.test` after each epoch.

    Args:
        graph: the front end's output; heads ending in softmax train from their logits.
        data: examples already fitted to the network (`data.load_data`).
        config: the settings.
        checkpoint_dir: where `checkpoint.safetensors` is written after every epoch and
            on Ctrl-C, and `weights.safetensors` at the end; None writes nothing.
        resume: a checkpoint to continue from (`checkpoint.load_checkpoint`).
        init: `(params, state)` of a base network (`checkpoint.load_any_weights`):
            tensors are loaded by name where they fit (`transfer.match_weights`), the
            rest keep their seeded initialisation; ignored when resuming.
        init_name: what to call `init` in messages (its file name).
        console: where progress and per-epoch lines go; None prints nothing.
        progress: show a live progress bar on the console.
        on_step: called after each step; returning True stops the run as Ctrl-C does.

    Returns:
        The final weights and the history. On Ctrl-C (or `on_step` asking to stop) the
        run saves a checkpoint at the current step and returns with `interrupted`.

    Raises:
        ArchError: settings or checkpoint that do not fit.
    """
    config.check()
    classes_of(graph)
    run = _Run(graph, data, config, checkpoint_dir, console or Console(quiet=True))
    if resume is not None:
        run.restore(resume)
    elif init is not None:
        run.load(init, init_name)
    return run.loop(progress, on_step)


class _Run:
    """One training run: the compiled steps, the live state, checkpoints."""

    def __init__(
        self,
        graph: Graph,
        data: Split,
        config: TrainConfig,
        checkpoint_dir: str | Path | None,
        out: Console,
    ) -> None:
        self.graph, self.data, self.config, self.out = graph, data, config, out
        self.mesh = make_mesh(config.devices)
        check_batch(config.batch_size, self.mesh)
        self.steps_per_epoch = len(data.train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ArchTrainError(
                f"`--batch-size {config.batch_size}` is larger than the {len(data.train)} "
                "training examples",
                help=f"use at most {len(data.train)}",
            )
        self.model = compile_graph(training_graph(graph), dtype=config.dtype)
        self.aux_weights = {name: head.weight for name, head in graph.aux.items()}
        key = jax.random.key(config.seed)
        self.dropout_key = jax.random.fold_in(key, 1)
        self.params, self.state = self.model.init(jax.random.fold_in(key, 0))
        self.optimizer = make_optimizer(config, self.steps_per_epoch * config.epochs)
        trainable, _ = partition(self.params, self.model.trainable(self.params))
        self.opt_state = self.optimizer.init(trainable)
        self.start = _Live(trainable, self.state, self.opt_state, 0, 0, _NO_SUMS)
        self.start_epoch = 0
        self.history: list[EpochStats] = []
        self.match: MatchReport | None = None
        self.folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint = self.folder / CHECKPOINT_NAME if self.folder is not None else None
        self.saved: Path | None = None

    # starting points ------------------------------------------------------------------------
    def load(self, init: tuple[Tree, Tree], name: str) -> None:
        """Start from a base network's weights, matched by name."""
        frozen = {n for n, node in self.graph.items() if node.frozen}
        self.params, self.state, self.match = match_weights(
            self.params, self.state, *init, frozen=frozen
        )
        check_match(self.match, name, self.graph.name)
        self.out.print(f"weights  {name}: " + "\n".join(self.match.lines()))
        trainable, _ = partition(self.params, self.model.trainable(self.params))
        self.start = self.start._replace(trainable=trainable, state=self.state)

    def restore(self, resume: Checkpoint) -> None:
        """Continue where a checkpoint stopped."""
        from archdsl.backend.weights import check_weights

        _check_resume_data(resume, self.data)
        check_weights(resume.params, resume.state, self.params, self.state)
        self.params = _like(resume.params, self.params)
        self.state = _like(resume.state, self.state)
        trainable, _ = partition(self.params, self.model.trainable(self.params))
        p = resume.partial
        sums = (
            p.get("loss", 0.0),
            p.get("main", 0.0),
            p.get("correct", 0.0),
            int(p.get("examples", 0)),
        )
        self.start = _Live(
            trainable,
            self.state,
            resume.restore_optimizer(self.opt_state),
            resume.step,
            resume.position,
            sums,
        )
        self.dropout_key = jax.random.wrap_key_data(jnp.asarray(resume.rng))
        self.start_epoch = resume.epoch
        self.history = [EpochStats(**h) for h in resume.history]

    # the loop -------------------------------------------------------------------------------
    def loop(self, progress: bool, on_step: StepHook | None) -> TrainResult:
        """Train the remaining epochs; stop cleanly on Ctrl-C."""
        config, mesh = self.config, self.mesh
        _, frozen = partition(self.params, self.model.trainable(self.params))
        self.frozen = replicate(frozen, mesh)
        self.train_step = make_train_step(
            self.model, self.optimizer, self.aux_weights, replicated(mesh)
        )
        self.eval_step = make_eval_step(self.model, replicated(mesh))
        live = self.start._replace(
            trainable=replicate(self.start.trainable, mesh),
            state=replicate(self.start.state, mesh),
            opt_state=replicate(self.start.opt_state, mesh),
        )
        if self.start_epoch >= config.epochs:
            self.out.print(
                f"nothing to do: the checkpoint has {self.start_epoch} epochs, "
                f"`--epochs {config.epochs}` asks for no more"
            )
            return self.finish(live, self.start_epoch, False)
        self.timing = _Timing()
        self.live = live
        epoch = self.start_epoch
        with _StopOnInterrupt() as stop, _progress_bar(self.out, progress) as bar:
            try:
                for epoch in range(self.start_epoch, config.epochs):
                    self.epoch(
                        epoch,
                        bar,
                        lambda step: (
                            (on_step is not None and bool(on_step(step))) or stop.requested
                        ),
                    )
                    if stop.requested:
                        raise _Stop
            except (_Stop, KeyboardInterrupt):
                return self.stopped(epoch)
        return self.finish(self.live, config.epochs, False)

    def epoch(self, epoch: int, bar: Progress, should_stop: Callable[[int], bool]) -> None:
        """Train the rest of one epoch, evaluate, print its line and save a checkpoint."""
        config, data = self.config, self.data
        task = bar.add_task(
            "",
            total=self.steps_per_epoch,
            completed=self.live.position,
            epoch=f"{epoch + 1}/{config.epochs}",
            loss=0.0,
            acc=0.0,
            rate=0.0,
        )
        order = epoch_order(len(data.train), config.seed, epoch)
        self.timing.start_epoch()
        while self.live.position < self.steps_per_epoch:
            b = self.live.position
            index = order[b * config.batch_size : (b + 1) * config.batch_size]
            self.step(index)
            sums = self.live.sums
            bar.update(
                task,
                completed=self.live.position,
                loss=sums[0] / sums[3],
                acc=sums[2] / sums[3],
                rate=self.timing.rate,
            )
            if should_stop(self.live.step):
                raise _Stop
        test_loss, test_accuracy = evaluate(
            self.eval_step,
            merge(self.live.trainable, self.frozen),
            self.live.state,
            data.test,
            config.batch_size,
            self.mesh,
        )
        total, main, correct, examples = self.live.sums
        stats = EpochStats(
            epoch=epoch + 1,
            loss=total / examples,
            main_loss=main / examples,
            accuracy=correct / examples,
            test_loss=test_loss,
            test_accuracy=test_accuracy,
            examples_per_second=self.timing.rate,
            seconds=self.timing.epoch_seconds(),
        )
        self.history.append(stats)
        bar.remove_task(task)
        self.out.print(format_epoch(stats, config.epochs, bool(self.aux_weights)))
        self.live = self.live._replace(position=0, sums=_NO_SUMS)
        self.save(epoch + 1, self.live)

    def step(self, index: np.ndarray) -> None:
        """One optimizer step on the examples at `index`."""
        live = self.live
        x, y = shard_batch((self.data.train.x[index], self.data.train.y[index]), self.mesh)
        tick = time.perf_counter()
        trainable, state, opt_state, metrics = self.train_step(
            live.trainable,
            self.frozen,
            live.state,
            live.opt_state,
            x,
            y,
            jax.random.fold_in(self.dropout_key, live.step),
        )
        metrics = jax.device_get(metrics)  # one transfer; waits for the step
        self.timing.add(len(index), time.perf_counter() - tick)
        loss = float(metrics["loss"])
        n = len(index)
        s = live.sums
        sums = (
            s[0] + loss * n,
            s[1] + float(metrics["main"]) * n,
            s[2] + float(metrics["correct"]),
            s[3] + n,
        )
        # One assignment: an interrupt sees the state before the step or after it.
        self.live = _Live(trainable, state, opt_state, live.step + 1, live.position + 1, sums)
        _check_finite(loss, self.live.step)

    # ends -------------------------------------------------------------------------------------
    def stopped(self, epoch: int) -> TrainResult:
        """Save where the run stands (mid-epoch if need be) and say how to go on."""
        live = self.live
        if self.history and self.history[-1].epoch == epoch + 1:  # stopped after the epoch
            done, live = epoch + 1, live._replace(position=0, sums=_NO_SUMS)
            where = f"after epoch {done}"
        else:
            done = epoch
            where = f"in epoch {epoch + 1}, batch {live.position}/{self.steps_per_epoch}"
        self.save(done, live)
        self.out.print(
            f"stopped at step {live.step} ({where})"
            + (f"; continue with `--resume` ({self.checkpoint})" if self.checkpoint else "")
        )
        return self.finish(live, done, True)

    def save(self, epoch: int, live: _Live) -> None:
        """Write the checkpoint: `epoch` is being trained, `live.position` batches done."""
        if self.checkpoint is None:
            return
        loss, main, correct, examples = live.sums
        save_checkpoint(
            self.checkpoint,
            Checkpoint.capture(
                merge(live.trainable, self.frozen),
                live.state,
                live.opt_state,
                self.dropout_key,
                step=live.step,
                epoch=epoch,
                position=live.position,
                network=self.graph.name,
                config={**self.config.to_json(), "data": _data_info(self.data)},
                history=[h.to_json() for h in self.history],
                partial={"loss": loss, "main": main, "correct": correct, "examples": examples},
            ),
        )
        self.saved = self.checkpoint

    def finish(self, live: _Live, epochs_done: int, interrupted: bool) -> TrainResult:
        """The result; the weights file when there is a checkpoint folder."""
        params = jax.device_get(merge(live.trainable, self.frozen))
        state = jax.device_get(live.state)
        weights = None
        if self.folder is not None:
            from archdsl.backend.weights import save_weights

            weights = self.folder / WEIGHTS_NAME
            save_weights(weights, params, state)
        return TrainResult(
            params,
            state,
            self.history,
            live.step,
            epochs_done,
            interrupted,
            self.saved,
            weights,
            self.match,
        )


_NO_SUMS: Final = (0.0, 0.0, 0.0, 0)


def _like(tree: Tree, reference: Tree) -> Tree:
    """`tree`'s arrays with the dtypes of `reference`'s."""
    return jax.tree.map(lambda x, like: jnp.asarray(x, like.dtype), tree, reference)


class _Timing:
    """Examples per second of training steps, leaving out the run's first (it compiles)."""

    def __init__(self) -> None:
        self.first = True
        self.examples = 0
        self.seconds = 0.0
        self.started = time.perf_counter()

    def start_epoch(self) -> None:
        self.examples, self.seconds = 0, 0.0
        self.started = time.perf_counter()

    def add(self, examples: int, seconds: float) -> None:
        if not self.first:
            self.examples += examples
            self.seconds += seconds
        self.first = False

    @property
    def rate(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0

    def epoch_seconds(self) -> float:
        return time.perf_counter() - self.started


class _Stop(Exception):
    """Leave the loop as Ctrl-C does."""


class _StopOnInterrupt:
    """The first Ctrl-C asks the loop to stop after the current step; the second one
    interrupts at once (the loop still saves its last consistent state)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            if self._previous is not None:
                signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _data_info(data: Split) -> dict[str, Any]:
    return {"name": data.train.name, "train": len(data.train), "test": len(data.test)}


def _check_resume_data(resume: Checkpoint, data: Split) -> None:
    saved = resume.config.get("data")
    if saved and (saved["train"], saved["test"]) != (len(data.train), len(data.test)):
        raise ArchTrainError(
            f"the checkpoint was trained on {saved['name'] or 'other data'} "
            f"({saved['train']} training, {saved['test']} held-out examples); this run "
            f"has {len(data.train)} and {len(data.test)}",
            help="resume with the data it was trained on",
        )


def _check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise ArchTrainError(
            f"the loss became {loss} at step {step}", help="lower `--lr`, or check the data's scale"
        )


def format_epoch(stats: EpochStats, epochs: int, aux: bool) -> str:
    """`epoch  3/5  loss 0.2134  acc 94.1%  test loss 0.1502  acc 96.4%  5,210 ex/s  1.2s`."""
    width = len(str(epochs))
    main = f" (main {stats.main_loss:.4f})" if aux else ""
    return (
        f"epoch {stats.epoch:>{width}}/{epochs}  loss {stats.loss:.4f}{main}  "
        f"acc {stats.accuracy:6.1%}  │  test loss {stats.test_loss:.4f}  "
        f"acc {stats.test_accuracy:6.1%}  │  "
        f"{format_count(round(stats.examples_per_second))} ex/s  {stats.seconds:.1f}s"
    )


def _progress_bar(console: Console, show: bool) -> Progress:
    return Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:6.1%}"),
        TextColumn("{task.fields[rate]:,.0f} ex/s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not show or console.quiet or not console.is_terminal,
    )
