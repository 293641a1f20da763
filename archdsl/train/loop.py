"""The training loop: epochs with evaluation, checkpoints, Ctrl-C and resume.

The same seed gives the same run: the initial weights, the shuffle of each epoch
(`data.epoch_order`) and the dropout key of each step all derive from it, so a run stopped
and resumed from its checkpoint ends where an uninterrupted one does. The first Ctrl-C
stops after the current step and saves a checkpoint there (mid-epoch if need be).

The settings live in `config`, the loss and jitted steps in `steps`, the bar and epoch line
in `progress`; their public names are re-exported here for callers that import them from
the loop.
"""

from __future__ import annotations

import functools
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.progress import Progress

from archdsl.backend.model import compile_graph
from archdsl.graph.ir import Graph
from archdsl.graph.passes.training import training_graph
from archdsl.io import check_memory, check_output_dir, clean_stale_temps, make_output_dir
from archdsl.train.best import keep_best, should_stop
from archdsl.train.checkpoint import (
    CHECKPOINT_NAME,
    ArchCheckpointError,
    Checkpoint,
    save_checkpoint,
)
from archdsl.train.config import (
    DEFAULT_LR,
    OPTIMIZERS,
    RESUME_KEYS,
    SCHEDULES,
    WEIGHTS_NAME,
    ArchTrainError,
    TrainConfig,
    Tree,
)
from archdsl.train.data import Split, epoch_order
from archdsl.train.distributed import any_process, is_main, to_host
from archdsl.train.metrics import METRICS_NAME, MetricsLog
from archdsl.train.packed import (
    layer_shapes,
    optimizer_to_packed,
    run_keys,
    to_layers,
    to_packed,
)
from archdsl.train.parallel import check_batch, local_rows, make_batch, make_mesh
from archdsl.train.progress import EpochStats, Timing, format_epoch, progress_bar
from archdsl.train.sharding import Layout, device_bytes, put
from archdsl.train.steps import (
    classes_of,
    cross_entropy,
    evaluate,
    make_eval_step,
    make_optimizer,
    make_schedule,
    make_train_step,
    merge,
    partition,
)
from archdsl.train.transfer import MatchReport, check_match, match_weights

__all__ = [
    "DEFAULT_LR",
    "OPTIMIZERS",
    "RESUME_KEYS",
    "SCHEDULES",
    "WEIGHTS_NAME",
    "ArchTrainError",
    "EpochStats",
    "StepHook",
    "TrainConfig",
    "TrainResult",
    "Tree",
    "classes_of",
    "cross_entropy",
    "evaluate",
    "format_epoch",
    "make_eval_step",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "merge",
    "partition",
    "train",
    "training_graph",
]


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
    early_stopped: bool = False
    """Stopped by `--early-stop`: held-out accuracy had stopped improving."""
    metrics: Path | None = None
    """The metrics log (`metrics.jsonl`), when there is a checkpoint folder."""
    memory: dict[str, tuple[int, int]] = field(default_factory=dict)
    """`{"params"|"optimizer": (bytes on the first device, bytes in all)}` as placed."""

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
    run.open_log(resume)
    try:
        return run.loop(progress, on_step)
    finally:
        if run.log is not None:
            run.log.close()


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
        self.mesh = make_mesh(config.devices, config.model_parts)
        self.main = is_main()  # the process that logs and writes files
        check_batch(config.batch_size, self.mesh)
        self.rows = local_rows(self.mesh, config.batch_size)
        self.steps_per_epoch = len(data.train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ArchTrainError(
                f"`--batch-size {config.batch_size}` is larger than the {len(data.train)} "
                "training examples",
                help=f"use at most {len(data.train)}",
            )
        self.folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.folder is not None and self.main:  # a file or a read-only folder fails now
            check_output_dir(self.folder, "checkpoint folder")
            clean_stale_temps(self.folder)  # left by a run that was killed mid-write
        _check_parameter_memory(graph, config)
        # With scan, params, state and optimizer state are carried packed (`packed`):
        # per layer only where names show (files, checkpoints, `--init`, the result).
        self.model = compile_graph(training_graph(graph), dtype=config.dtype, scan=config.scan)
        self.runs = self.model.runs
        self.layout = Layout(self.mesh, config.shard_params, run_keys(self.runs))
        self.aux_weights = {name: head.weight for name, head in graph.aux.items()}
        key = jax.random.key(config.seed)
        self.dropout_key = jax.random.fold_in(key, 1)
        self.params, self.state = self._init(jax.random.fold_in(key, 0))
        self.optimizer = make_optimizer(
            config, self.steps_per_epoch * config.epochs, run_keys(self.runs)
        )
        self.schedule = make_schedule(config, self.steps_per_epoch * config.epochs)
        self.log: MetricsLog | None = None
        self.early_stopped = False
        self.current_epoch = 0
        trainable, _ = partition(self.params, self.model.trainable(self.params))
        self.opt_state = self._init_optimizer(trainable)
        self.start = _Live(trainable, self.state, self.opt_state, 0, 0, _NO_SUMS)
        self.start_epoch = 0
        self.history: list[EpochStats] = []
        self.match: MatchReport | None = None
        self.checkpoint = self.folder / CHECKPOINT_NAME if self.folder is not None else None
        self.saved: Path | None = None
        self.memory: dict[str, tuple[int, int]] = {}

    def _init(self, key: jax.Array) -> tuple[Tree, Tree]:
        """The seeded weights, packed; with `--shard-params`, made in place, shard by
        shard, so a network bigger than one device is never whole on one."""
        init = functools.partial(self.model.init, packed=True)
        if not self.config.shard_params:
            return init(key)
        shapes = jax.eval_shape(init, key)
        shardings = (self.layout.of(shapes[0]), self.layout.replicated)
        return jax.jit(init, out_shardings=shardings)(key)

    def _init_optimizer(self, trainable: Tree) -> Any:
        """The optimizer's initial state, sharded like the parameters with `--shard-params`.

        Jitted either way: run eagerly, optax makes each moment with its own small
        compiled `zeros_like`, one per distinct shape (3.4 s of ResNet-101's 23 s to
        its first step).
        """
        if not self.config.shard_params:
            return jax.jit(self.optimizer.init)(trainable)
        shapes = jax.eval_shape(self.optimizer.init, trainable)
        return jax.jit(self.optimizer.init, out_shardings=self.layout.of(shapes))(trainable)

    # starting points ------------------------------------------------------------------------
    def load(self, init: tuple[Tree, Tree], name: str) -> None:
        """Start from a base network's weights, matched by name."""
        frozen = {n for n, node in self.graph.items() if node.frozen}
        params, state = to_host((self.params, self.state))  # every process: a collective
        params, state, self.match = match_weights(
            to_layers(params, self.runs), to_layers(state, self.runs), *init, frozen=frozen
        )
        check_match(self.match, name, self.graph.name)
        self.params, self.state = to_packed(params, self.runs), to_packed(state, self.runs)
        self.out.print(f"weights  {name}: " + "\n".join(self.match.lines()))
        trainable, _ = partition(self.params, self.model.trainable(self.params))
        self.start = self.start._replace(trainable=trainable, state=self.state)

    def restore(self, resume: Checkpoint) -> None:
        """Continue where a checkpoint stopped."""
        from archdsl.backend.weights import check_weights

        _check_resume_data(resume, self.data)
        _check_resume_position(resume, self.steps_per_epoch, self.dropout_key)
        # A checkpoint is per layer whichever lowering wrote it (`Checkpoint.capture`).
        params, state = layer_shapes(self.params, self.runs), layer_shapes(self.state, self.runs)
        check_weights(resume.params, resume.state, params, state)
        self.params = to_packed(_like(resume.params, params), self.runs)
        self.state = to_packed(_like(resume.state, state), self.runs)
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
            optimizer_to_packed(
                resume.restore_optimizer(layer_shapes(self.opt_state, self.runs, optimizer=True)),
                self.runs,
            ),
            resume.step,
            resume.position,
            sums,
        )
        self.dropout_key = jax.random.wrap_key_data(jnp.asarray(resume.rng))
        self.start_epoch = resume.epoch
        try:
            self.history = [EpochStats(**h) for h in resume.history]
        except TypeError:
            raise ArchCheckpointError(
                "the checkpoint's `history` entries are not epoch records",
                help="resume from an intact checkpoint, or start again without `--resume`",
            ) from None

    def open_log(self, resume: Checkpoint | None) -> None:
        """Start the metrics log, or continue it from the checkpoint's step."""
        if self.folder is None or not self.main:
            return
        if resume is not None and resume.epoch >= self.config.epochs and resume.position == 0:
            return  # nothing left to train: write nothing, anywhere
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = MetricsLog(
            self.folder / METRICS_NAME, resume_step=resume.step if resume is not None else None
        )

    def lr(self, step: int) -> float:
        """The learning rate the schedule gives at `step`."""
        return float(self.schedule(step))

    # the loop -------------------------------------------------------------------------------
    def loop(self, progress: bool, on_step: StepHook | None) -> TrainResult:
        """Train the remaining epochs; stop cleanly on Ctrl-C."""
        config, layout = self.config, self.layout
        _, frozen = partition(self.params, self.model.trainable(self.params))
        self.frozen = layout.place(frozen)
        live = self.start._replace(
            trainable=layout.place(self.start.trainable),
            state=put(self.start.state, layout.replicated),
            opt_state=layout.place(self.start.opt_state),
        )
        self.params = self.state = self.opt_state = None  # no second copy on a device
        self.start = live
        shardings = (
            layout.of(live.trainable),
            layout.replicated,
            layout.of(live.opt_state),
            layout.replicated,
        )
        self.train_step = make_train_step(self.model, self.optimizer, self.aux_weights, shardings)
        self.eval_step = make_eval_step(self.model, layout.replicated)
        self.memory = {
            "params": _add(device_bytes(live.trainable), device_bytes(self.frozen)),
            "optimizer": device_bytes(live.opt_state),
        }
        if config.shard_params:
            self.out.print(_memory_line(self.memory, layout.parts))
        if self.start_epoch >= config.epochs:
            self.out.print(
                f"nothing to do: the checkpoint has {self.start_epoch} epochs, "
                f"`--epochs {config.epochs}` asks for no more"
            )
            return self.finish(live, self.start_epoch, False, write=False)
        if self.start.position == 0 and should_stop(self.history, config.early_stop):
            self.out.print(
                f"nothing to do: the checkpoint's run already stopped early "
                f"(`--early-stop {config.early_stop}`)"
            )
            self.early_stopped = True
            return self.finish(live, self.start_epoch, False, write=False)
        self.timing = Timing()
        self.live = live
        epoch = self.start_epoch
        with _StopOnInterrupt() as stop, progress_bar(self.out, progress and self.main) as bar:
            try:
                for epoch in range(self.start_epoch, config.epochs):
                    self.epoch(
                        epoch,
                        bar,
                        lambda step: (
                            (on_step is not None and bool(on_step(step))) or stop.requested
                        ),
                    )
                    if any_process(stop.requested):
                        raise _Stop
                    if should_stop(self.history, config.early_stop):
                        self.early_stopped = True
                        best = max(self.history, key=lambda h: h.test_accuracy)
                        self.out.print(
                            f"early stop: no better held-out accuracy for {config.early_stop} "
                            f"epochs (best {best.test_accuracy:.2%} at epoch {best.epoch})"
                        )
                        return self.finish(self.live, epoch + 1, False)
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
        self.current_epoch = epoch + 1
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
            if any_process(should_stop(self.live.step)):
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
        if self.log is not None:
            self.log.write(
                {
                    "kind": "epoch",
                    "step": self.live.step,
                    **stats.to_json(),
                    "lr": self.lr(max(self.live.step - 1, 0)),
                }
            )
        self.live = self.live._replace(position=0, sums=_NO_SUMS)
        self.save(epoch + 1, self.live)
        if config.keep_best and self.main and self.folder is not None and self.checkpoint:
            keep_best(self.folder, self.checkpoint, self.history, config.keep_best)

    def step(self, index: np.ndarray) -> None:
        """One optimizer step on the examples at `index`."""
        live = self.live
        mine = index[self.rows]  # this process reads only its own rows of the batch
        x, y = make_batch((self.data.train.x[mine], self.data.train.y[mine]), self.mesh, len(index))
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
        seconds = time.perf_counter() - tick
        self.timing.add(len(index), seconds)
        if self.log is not None:
            self.log.write(
                {
                    "kind": "step",
                    "step": live.step + 1,
                    "epoch": self.current_epoch,
                    "loss": float(metrics["loss"]),
                    "main_loss": float(metrics["main"]),
                    "aux_loss": {k: float(v) for k, v in metrics["aux"].items()},
                    "accuracy": float(metrics["correct"]) / len(index),
                    "lr": self.lr(live.step),
                    "examples_per_second": len(index) / seconds if seconds else 0.0,
                }
            )
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
        checkpoint = Checkpoint.capture(  # every process: gathering shards is a collective
            merge(live.trainable, self.frozen),
            live.state,
            live.opt_state,
            self.dropout_key,
            self.runs,
            step=live.step,
            epoch=epoch,
            position=live.position,
            network=self.graph.name,
            config={**self.config.to_json(), "data": _data_info(self.data)},
            history=[h.to_json() for h in self.history],
            partial={"loss": loss, "main": main, "correct": correct, "examples": examples},
        )
        if self.main:
            save_checkpoint(self.checkpoint, checkpoint)
        self.saved = self.checkpoint

    def finish(
        self, live: _Live, epochs_done: int, interrupted: bool, *, write: bool = True
    ) -> TrainResult:
        """The result; the weights file when there is a checkpoint folder and `write`
        (a resumed run with nothing to do writes nothing, anywhere)."""
        params = to_layers(to_host(merge(live.trainable, self.frozen)), self.runs)
        state = to_layers(to_host(live.state), self.runs)
        weights = None
        if self.folder is not None and write and self.main:
            from archdsl.backend.weights import save_weights

            make_output_dir(self.folder, "checkpoint folder")
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
            self.early_stopped,
            self.log.path if self.log is not None else None,
            self.memory,
        )


_NO_SUMS: Final = (0.0, 0.0, 0.0, 0)


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def _memory_line(memory: dict[str, tuple[int, int]], parts: int) -> str:
    """`sharding params 1.2 MiB of 2.4 MiB per device, ...`: what `--shard-params` saved."""
    from archdsl.io import format_bytes

    shown = ", ".join(
        f"{name} {format_bytes(held)} of {format_bytes(total)}"
        for name, (held, total) in memory.items()
    )
    return f"sharding {shown} per device (model axis {parts})"


def _check_parameter_memory(graph: Graph, config: TrainConfig) -> None:
    """Parameters, gradients and optimizer state, float32, must fit before XLA allocates
    them (activations come on top: this is a floor, not an estimate)."""
    from archdsl.graph.report import build_report

    copies = 4 if config.optimizer == "adam" else 3  # params, gradients, 1-2 moments
    params = build_report(graph).params
    check_memory(
        params * 4 * copies,
        f"training `{graph.name}` ({params:,} parameters, with gradients and "
        f"{config.optimizer} state)",
    )


def _check_resume_position(resume: Checkpoint, steps_per_epoch: int, key: jax.Array) -> None:
    """A checkpoint's counters and key must be those of a run of this shape."""

    def bad(what: str) -> ArchCheckpointError:
        return ArchCheckpointError(
            f"the checkpoint does not fit this run: {what}",
            help="resume from an intact checkpoint of this run, or start again without `--resume`",
        )

    if resume.position >= steps_per_epoch:
        raise bad(
            f"it is at batch {resume.position} of an epoch that has {steps_per_epoch} batches"
        )
    expected = resume.epoch * steps_per_epoch + resume.position
    if resume.step != expected:
        raise bad(
            f"step {resume.step} is not epoch {resume.epoch} x {steps_per_epoch} batches "
            f"+ batch {resume.position} = {expected}"
        )
    if len(resume.history) != resume.epoch:
        raise bad(f"it records {len(resume.history)} epochs of history at epoch {resume.epoch}")
    want = jax.random.key_data(key)
    rng = np.asarray(resume.rng)
    if rng.shape != want.shape or rng.dtype != want.dtype:
        raise bad(
            f"its `rng` is {rng.dtype} {rng.shape}, expected {want.dtype} {tuple(want.shape)} "
            "(a raw `jax.random.key`)"
        )


def _like(tree: Tree, reference: Tree) -> Tree:
    """`tree`'s arrays with the dtypes of `reference`'s, on the host (`loop` places them)."""
    return jax.tree.map(lambda x, like: np.asarray(x, like.dtype), tree, reference)


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
