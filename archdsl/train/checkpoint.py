"""Training checkpoints: params, running state, optimizer state, step, epoch and PRNG key
in one safetensors file, replaced atomically so a crash mid-write keeps the previous one.

Tensor names:

- `params/<node>.<leaf>` and `state/<node>.<leaf>`: as in a weights file (`weights.py`);
- `optimizer/<i>`: the leaves of the optax state in `jax.tree.flatten` order, with their
  key paths listed in the metadata so a restore can check them against the optimizer;
  per layer, as the parameters are, even when the run carried them packed (`packed`);
- `rng`: the raw data of the run's PRNG key (`jax.random.key_data`).

The metadata key `archdsl.train.checkpoint` holds JSON: the step, the epoch being trained and
how many of its batches are done (0 at an epoch boundary), the network, the training
settings and the per-epoch history.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jax
import numpy as np
from safetensors.numpy import save

from archdsl.backend.weights import (
    ArchWeightsError,
    flatten,
    read_safetensors,
    state_names_of,
    unflatten,
)
from archdsl.graph.repeats import Run
from archdsl.graph.shapes import format_shape
from archdsl.io import make_output_dir, write_bytes
from archdsl.train.distributed import to_host
from archdsl.train.packed import optimizer_to_layers, to_layers

FORMAT_KEY: Final = "archdsl.format"
FORMAT: Final = "checkpoint-1"
META_KEY: Final = "archdsl.train.checkpoint"
CHECKPOINT_NAME: Final = "checkpoint.safetensors"
"""The file name of the latest checkpoint in a checkpoint folder."""


class ArchCheckpointError(ArchWeightsError):
    """A checkpoint that cannot be read or does not fit this run."""


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly where it stopped."""

    params: dict[str, dict[str, Any]]
    state: dict[str, dict[str, Any]]
    optimizer: list[np.ndarray]
    """The optimizer state's leaves, in `jax.tree.flatten` order."""
    optimizer_paths: list[str]
    """`jax.tree_util.keystr` of each optimizer leaf, to check a restore."""
    rng: np.ndarray
    step: int
    epoch: int
    """The epoch being trained (0-based); equal to the epochs done when `position` is 0."""
    position: int = 0
    """Batches of `epoch` already trained."""
    network: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    partial: dict[str, float] = field(default_factory=dict)
    """Running sums of the interrupted epoch's training metrics."""

    @classmethod
    def capture(
        cls,
        params: Any,
        state: Any,
        opt_state: Any,
        rng: jax.Array,
        runs: Sequence[Run] = (),
        **info: Any,
    ) -> Checkpoint:
        """Copy the live training state to host memory, whole: sharded arrays are
        gathered, from every process in a multi-process run (all of them must call this).

        Trees packed for a scanned run (`runs`) are stored per layer, optimizer state
        included, so the checkpoint resumes with or without scan.
        """
        params, state, opt_state = to_host((params, state, opt_state))
        params, state = to_layers(params, runs), to_layers(state, runs)
        opt_state = optimizer_to_layers(opt_state, runs)
        leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(opt_state)
        return cls(
            params=params,
            state=state,
            optimizer=[np.asarray(leaf) for _, leaf in leaves_with_paths],
            optimizer_paths=[jax.tree_util.keystr(path) for path, _ in leaves_with_paths],
            rng=np.asarray(jax.device_get(jax.random.key_data(rng))),
            **info,
        )

    def restore_optimizer(self, template: Any) -> Any:
        """The optimizer state, rebuilt in the structure of `template` (`optimizer.init`).

        Raises:
            ArchCheckpointError: the saved state was made by another optimizer or for
                other parameters.
        """
        leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(template)
        paths = [jax.tree_util.keystr(p) for p, _ in leaves_with_paths]
        if paths != self.optimizer_paths:
            raise ArchCheckpointError(
                "the checkpoint's optimizer state does not fit this optimizer "
                f"({len(self.optimizer_paths)} tensors saved, {len(paths)} expected)",
                help="resume with the optimizer, weight decay and frozen layers "
                "it was trained with",
            )
        leaves = []
        for path, (_, want), got in zip(paths, leaves_with_paths, self.optimizer, strict=True):
            if tuple(np.shape(want)) != tuple(got.shape):
                raise ArchCheckpointError(
                    f"optimizer tensor {path} is {format_shape(got.shape) or 'scalar'} "
                    f"in the checkpoint, expected {format_shape(np.shape(want)) or 'scalar'}"
                )
            dtype = want.dtype if hasattr(want, "dtype") else np.asarray(want).dtype
            leaves.append(np.asarray(got, dtype=dtype))
        return jax.tree_util.tree_unflatten(treedef, leaves)

    def info(self) -> dict[str, Any]:
        """The JSON part."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "network": self.network,
            "config": self.config,
            "history": self.history,
            "partial": self.partial,
            "optimizer_paths": self.optimizer_paths,
        }


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write `checkpoint` to `path` atomically; Ctrl-C waits until the file is whole.

    Raises:
        ArchIOError: the folder cannot be made or the file written (one line).
    """
    path = Path(path)
    make_output_dir(path.parent, "checkpoint folder")
    tensors: dict[str, np.ndarray] = {}
    for prefix, tree in (("params", checkpoint.params), ("state", checkpoint.state)):
        for name, x in flatten(tree).items():
            tensors[f"{prefix}/{name}"] = np.asarray(x, order="C")
    for i, leaf in enumerate(checkpoint.optimizer):
        tensors[f"optimizer/{i}"] = np.asarray(leaf, order="C")
    tensors["rng"] = np.asarray(checkpoint.rng, order="C")
    metadata = {FORMAT_KEY: FORMAT, META_KEY: json.dumps(checkpoint.info())}
    data = save(tensors, metadata=metadata)
    with deferred_interrupt():
        write_bytes(path, data, "checkpoint")
    return path


MAX_COUNT: Final = 2**53
"""Steps, epochs and batches beyond this are not from a real run (nor exact in JSON)."""


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`, checking every field.

    Raises:
        ArchCheckpointError: missing, unreadable, not a checkpoint, or with a field
            that is missing or out of range (a forged or damaged file).
    """
    path = Path(path)
    tensors, metadata = _read(path)
    if metadata.get(FORMAT_KEY) != FORMAT or META_KEY not in metadata:
        raise ArchCheckpointError(
            f"`{path}` is not a training checkpoint",
            help="`--resume` takes a checkpoint.safetensors written by `archdsl train`; "
            "start from plain weights with `--init`",
        )

    def bad(what: str) -> ArchCheckpointError:
        return ArchCheckpointError(
            f"`{path}` is a damaged checkpoint: {what}",
            help="resume from an intact checkpoint, or start again without `--resume`",
        )

    try:
        info = json.loads(metadata[META_KEY])
    except ValueError as error:
        raise bad(f"its `{META_KEY}` metadata is not JSON ({str(error)[:80]})") from None
    if not isinstance(info, dict):
        raise bad(f"its `{META_KEY}` metadata is not a JSON object")
    counts = {}
    for key in ("step", "epoch", "position"):
        value = info.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad(f"`{key}` is {_show(value)}, expected a whole number")
        if not 0 <= value <= MAX_COUNT:
            raise bad(f"`{key}` is {value}, expected 0..{MAX_COUNT}")
        counts[key] = value
    paths = info.get("optimizer_paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise bad(f"`optimizer_paths` is {_show(paths)}, expected a list of names")
    missing = [f"optimizer/{i}" for i in range(len(paths)) if f"optimizer/{i}" not in tensors]
    if "rng" not in tensors:
        missing.append("rng")
    if missing:
        raise bad(f"tensor{'s' if len(missing) > 1 else ''} {', '.join(missing[:3])} missing")
    for key, kind, default in (
        ("network", str, ""),
        ("config", dict, {}),
        ("history", list, []),
        ("partial", dict, {}),
    ):
        if not isinstance(info.get(key, default), kind):
            raise bad(f"`{key}` is {_show(info.get(key))}, expected a {kind.__name__}")
    partial = info.get("partial", {})
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in partial.values()
    ):
        raise bad("`partial` holds a value that is not a finite number >= 0")
    if not all(
        isinstance(h, dict)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in h.values())
        for h in info.get("history", [])
    ):
        raise bad("`history` holds an entry that is not an object of numbers")
    return Checkpoint(
        params=unflatten(_strip(tensors, "params/")),
        state=unflatten(_strip(tensors, "state/")),
        optimizer=[tensors[f"optimizer/{i}"] for i in range(len(paths))],
        optimizer_paths=list(paths),
        rng=tensors["rng"],
        step=counts["step"],
        epoch=counts["epoch"],
        position=counts["position"],
        network=info.get("network", ""),
        config=info.get("config", {}),
        history=info.get("history", []),
        partial=partial,
    )


def _show(value: Any) -> str:
    return "missing" if value is None else repr(value)[:40]


def load_any_weights(path: str | Path) -> tuple[dict, dict]:
    """`(params, state)` from a weights file or from a training checkpoint.

    Raises:
        ArchWeightsError: the file cannot be read.
    """
    path = Path(path)
    tensors, metadata = read_safetensors(path, "weights")
    if metadata.get(FORMAT_KEY) == FORMAT:
        return unflatten(_strip(tensors, "params/")), unflatten(_strip(tensors, "state/"))
    state_names = state_names_of(metadata, path)
    params = unflatten({n: x for n, x in tensors.items() if n not in state_names})
    state = unflatten({n: x for n, x in tensors.items() if n in state_names})
    return params, state


def _strip(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    return read_safetensors(path, "checkpoint", ArchCheckpointError)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C) until the block ends, then raise it.

    Outside the main thread signal handlers cannot be set; the block runs unprotected
    (the write is atomic anyway: an interrupted write leaves the previous file).
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda sig, frame: received.append(sig))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
