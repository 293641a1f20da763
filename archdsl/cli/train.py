"""`archdsl train spec.arch --data digits|PATH.npz`: train, evaluate, checkpoint, resume."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import jax
from rich.console import Console

from archdsl.backend.memory import keep_freed_memory
from archdsl.backend.weights import save_weights
from archdsl.cli._common import add_network_options, console, network_arguments
from archdsl.errors import ArchValueError
from archdsl.frontend import build_graph
from archdsl.graph.ir import Graph
from archdsl.graph.report import build_report
from archdsl.graph.shapes import format_shape
from archdsl.io import check_output_dir
from archdsl.lang.numbers import format_count
from archdsl.train.cache import loads_any
from archdsl.train.checkpoint import CHECKPOINT_NAME, Checkpoint, load_any_weights, load_checkpoint
from archdsl.train.config import OPTIMIZERS, RESUME_KEYS, SCHEDULES, ArchTrainError, TrainConfig
from archdsl.train.data import DIGITS, Split, load_data
from archdsl.train.distributed import DEFAULT_TIMEOUT, Cluster, initialize, is_main
from archdsl.train.loop import train
from archdsl.train.parallel import check_batch, make_mesh
from archdsl.train.steps import classes_of
from archdsl.train.transfer import settle_init

_AUTO = "<checkpoint-dir>"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    parser = sub.add_parser(
        "train",
        help="train a network on digits or an .npz",
        description="Train a network (cross-entropy, aux heads at their weights), "
        "evaluating on a held-out split after every epoch. Checkpoints go to "
        "--checkpoint-dir after every epoch and on Ctrl-C; --resume continues one. "
        "See docs/training.md.",
    )
    parser.add_argument("spec", help="the .arch file")
    add_network_options(parser)
    parser.add_argument(
        "--data",
        required=True,
        metavar="digits|PATH.npz|FOLDER",
        help="`digits` (scikit-learn's 8x8 digits, resized to the input), "
        "an .npz with `x` (N,H,W,C) and `y` (N,) [and `x_test`, `y_test`], "
        "or a folder with one subfolder of JPEG/PNG images per class",
    )
    parser.add_argument(
        "--augment",
        action="store_true",
        help="image folders: random crops and left-right flips of the training images",
    )
    parser.add_argument(
        "--normalize",
        choices=("imagenet",),
        help="image folders: normalise as torchvision's ImageNet weights expect",
    )
    parser.add_argument(
        "--cache-frozen",
        action="store_true",
        help="compute the frozen layers' output once, keep it on disk (DIR/features), "
        "and train the rest on it",
    )
    parser.add_argument("--epochs", type=int, help="epochs to train in all (default 10)")
    parser.add_argument("--batch-size", type=int, help="examples per step (default 64)")
    parser.add_argument(
        "--lr", type=float, help="peak learning rate (default 0.001 for adam, 0.05 for sgd)"
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="default adam")
    parser.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    parser.add_argument(
        "--schedule", choices=SCHEDULES, help="learning-rate schedule (default cosine)"
    )
    parser.add_argument(
        "--weight-decay", type=float, help="on kernels: L2 for sgd, decoupled for adam (default 0)"
    )
    parser.add_argument("--seed", type=int, help="initialisation, shuffling, dropout (default 0)")
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="split each batch over this many devices (default 1)",
    )
    parser.add_argument(
        "--shard-params",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="shard parameters and optimizer state over the mesh's `model` axis "
        "(FSDP-style; see docs/scale.md)",
    )
    parser.add_argument(
        "--model-axis",
        type=int,
        metavar="M",
        help="with --shard-params: split each large tensor M ways; the mesh is "
        "devices/M x M (default: all the devices)",
    )
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16"), help="compute dtype (default float32)"
    )
    parser.add_argument(
        "--scan",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="loop runs of identical blocks with lax.scan (the default: compiles fast); "
        "--no-scan unrolls every layer (slower to compile; see docs/training.md)",
    )
    group = parser.add_argument_group(
        "several processes", "one run over many processes or machines (docs/scale.md)"
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run; alone, the cluster comes from the environment "
        "(SLURM, Kubernetes, TPU pods) as `jax.distributed.initialize()` detects it",
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    group.add_argument("--num-processes", type=int, metavar="N", help="processes in the run")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    group.add_argument(
        "--coordinator-timeout",
        type=int,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"wait this long for the other processes (default {DEFAULT_TIMEOUT})",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share held out for evaluation when the data has no test split (default 0.2)",
    )
    parser.add_argument(
        "--keep-best",
        type=int,
        metavar="K",
        help="also keep the checkpoints of the best K epochs by held-out accuracy "
        "(best-epochNNN.safetensors, listed in best.json)",
    )
    parser.add_argument(
        "--early-stop",
        type=int,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better held-out accuracy",
    )
    parser.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="where checkpoints and weights go (default checkpoints/<network>)",
    )
    parser.add_argument(
        "--no-checkpoints", action="store_true", help="write no checkpoint or weights file"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=_AUTO,
        metavar="CHECKPOINT",
        help="continue from a checkpoint (default: the one in --checkpoint-dir)",
    )
    parser.add_argument(
        "--init",
        metavar="BASE.safetensors",
        help="start from another network's weights, matched by name",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="with --init: let batch norms whose running statistics the file lacks "
        "start at mean 0, variance 1",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; exit 0 when all epochs ran, 130 when stopped by Ctrl-C (checkpoint saved)."""
    # This command owns the process: keep freed step buffers for the next step (before
    # JAX starts XLA's threads), or a scanned step re-faults its stacked outputs each time.
    keep_freed_memory()
    if args.allow_missing and not args.init:
        raise ArchValueError("`--allow-missing` goes with `--init FILE`")
    cluster = _cluster(args)
    if cluster is not None:
        initialize(cluster)  # before anything touches JAX
    graph = build_graph(
        args.spec,
        network=args.network,
        import_path=args.import_path,
        **network_arguments(args.arg),
    )
    classes = classes_of(graph)
    folder = (
        None
        if args.no_checkpoints
        else Path(args.checkpoint_dir or Path("checkpoints") / graph.name)
    )
    if folder is not None:
        check_output_dir(folder, "checkpoint folder")  # before data, compile or training
    resume = None
    if args.resume is not None:
        if args.resume == _AUTO:
            if folder is None:
                raise ArchTrainError(
                    "`--resume` needs a checkpoint: give its path, or drop `--no-checkpoints`"
                )
            path = folder / CHECKPOINT_NAME
        else:
            path = Path(args.resume)
            if path.is_dir():
                path = path / CHECKPOINT_NAME
        resume = load_checkpoint(path)
        if resume.network and resume.network != graph.name:
            raise ArchTrainError(
                f"`{path}` is a checkpoint of `{resume.network}`, not `{graph.name}`"
            )
    if cluster is not None and args.devices is None:
        args.devices = jax.device_count()  # every process's devices
    if cluster is not None and args.cache_frozen:
        raise ArchTrainError(
            "`--cache-frozen` runs in one process: it writes the cached features as it goes",
            help="cache in a one-process run first, or drop `--cache-frozen`",
        )
    config = resolve_config(args, resume)
    # before anything is printed
    check_batch(config.batch_size, make_mesh(config.devices, config.model_parts))
    out = console() if is_main() else Console(quiet=True)
    (input_name,) = graph.inputs
    input_shape = graph.node(input_name).shape
    assert input_shape is not None
    data = load_data(
        args.data,
        input_shape,
        classes,
        test_fraction=args.test_fraction,
        augment=args.augment,
        normalize=args.normalize,
    )
    init = None
    if args.init and resume is not None:
        out.print(f"resuming: `--init {args.init}` is not used (the checkpoint has the weights)")
    elif args.init:
        init = settle_init(
            graph, load_any_weights(args.init), args.init, allow_missing=args.allow_missing
        )

    whole = graph
    cached = None
    if args.cache_frozen:
        graph, data, cached = _cache_frozen(graph, data, init, args, config, folder, out)
        if init is not None and not loads_any(graph, init):
            init = None  # the base took all the file's layers; the head starts afresh

    report = build_report(whole)
    frozen = report.params - report.trainable
    out.print(
        f"network  {graph.name}: {format_count(report.params)} parameters"
        + (f" ({format_count(frozen)} frozen)" if frozen else "")
        + f", input {format_shape(input_shape)}, {classes} classes"
        + (
            f", aux heads {', '.join(f'{k} x{h.weight:g}' for k, h in graph.aux.items())}"
            if graph.aux
            else ""
        )
    )
    source = DIGITS if args.data == DIGITS else Path(args.data).name
    out.print(f"data     {source}: {len(data.train)} training, {len(data.test)} held-out examples")
    out.print(
        f"training {config.optimizer} lr {config.learning_rate:g} ({config.schedule})"
        + (f", weight decay {config.weight_decay:g}" if config.weight_decay else "")
        + f", batch {config.batch_size}, {config.epochs} epochs, seed {config.seed}, "
        f"{config.devices} device{'s' if config.devices != 1 else ''}"
        + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else "")
        + (f", params sharded {config.model_parts} ways" if config.shard_params else "")
        + (f", {config.dtype}" if config.dtype != "float32" else "")
        + ("" if config.scan else ", unrolled (--no-scan)")
    )
    if resume is not None:
        out.print(
            f"resuming from {path} at step {resume.step} (epoch {resume.epoch + 1}"
            + (f", batch {resume.position}" if resume.position else "")
            + ")"
        )
        saved_epochs = resume.config.get("epochs", config.epochs)
        if saved_epochs != config.epochs and config.schedule != "constant":
            out.print(
                f"note: the {config.schedule} schedule now spans {config.epochs} "
                f"epochs instead of {saved_epochs}: the run will not match one "
                f"trained for {config.epochs} epochs from the start"
            )

    result = train(
        graph,
        data,
        config,
        checkpoint_dir=folder,
        resume=resume,
        init=init,
        init_name=str(args.init),
        console=out,
    )
    if result.history:
        last = result.history[-1]
        out.print(
            f"held-out accuracy {last.test_accuracy:.2%} after {last.epoch} epoch"
            f"{'s' if last.epoch != 1 else ''}"
        )
    if cached is not None and result.weights is not None and is_main():
        # The run trained the head alone: the weights file gets the whole network.
        save_weights(result.weights, {**cached[0], **result.params}, {**cached[1], **result.state})
    if result.checkpoint is not None:
        out.print(f"checkpoint {result.checkpoint}")
    if result.metrics is not None:
        out.print(f"metrics    {result.metrics} (draw with `archdsl plot {result.metrics.parent}`)")
    if result.weights is not None:
        out.print(f"weights    {result.weights}")
    return 130 if result.interrupted else 0


def _cluster(args: argparse.Namespace) -> Cluster | None:
    """The multi-process flags as a `Cluster`, or None for a plain one-process run."""
    flags = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(flag is None for flag in flags):
        return None
    return Cluster(
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        auto=args.distributed,
        timeout=args.coordinator_timeout,
    )


def _cache_frozen(
    graph: Graph,
    data: Split,
    init: tuple[dict, dict] | None,
    args: argparse.Namespace,
    config: TrainConfig,
    folder: Path | None,
    out: Console,
) -> tuple[Graph, Split, tuple[dict, dict]]:
    """The head graph, its cached inputs and the frozen base's weights."""
    from archdsl.train.cache import prepare

    if args.augment:
        raise ArchTrainError(
            "`--cache-frozen` computes the frozen layers' outputs once; `--augment` changes "
            "their input every epoch",
            help="drop one of the two",
        )
    cache_dir = (folder if folder is not None else Path(".archdsl-cache") / graph.name) / "features"
    head, features, params, state, line = prepare(
        graph, data, init, args.init, cache_dir, batch_size=config.batch_size, seed=config.seed
    )
    out.print(line)
    return head, features, (params, state)


def resolve_config(args: argparse.Namespace, resume: Checkpoint | None) -> TrainConfig:
    """Options given on the command line, else the checkpoint's, else the defaults.

    Raises:
        ArchTrainError: resuming with a setting that differs from the checkpoint's.
    """
    saved: dict[str, Any] = resume.config if resume is not None else {}
    values: dict[str, Any] = {}
    for field in dataclasses.fields(TrainConfig):
        given = getattr(args, field.name, None)
        if field.name in RESUME_KEYS and field.name in saved:
            if given is not None and given != saved[field.name]:
                option = "--" + field.name.replace("_", "-")
                raise ArchTrainError(
                    f"the checkpoint was trained with `{option} {saved[field.name]}`; "
                    f"resuming with `{option} {given}` would not continue the same run",
                    help=f"drop `{option}` to use the checkpoint's value",
                )
            values[field.name] = saved[field.name]
        elif given is not None:
            values[field.name] = given
        elif field.name in saved:
            values[field.name] = saved[field.name]
    if not values.get("shard_params") and args.model_axis is None:
        values.pop("model_axis", None)  # a checkpoint's, for sharding this run turns off
    config = TrainConfig(**values)
    config.check()
    return config
