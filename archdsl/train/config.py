"""Training settings: the `train` command's options as one frozen value, checked once.

`TrainConfig` decides a run; `RESUME_KEYS` are the settings a resumed run must keep so it
ends where an uninterrupted one does. `ArchTrainError` is the error for settings (or a
network) that cannot be trained.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final

from archdsl.errors import ArchValueError

Tree = dict[str, dict[str, Any]]
"""Parameters or state: node name -> leaf name -> array."""

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


MAX_SEED: Final = 2**63 - 1
"""The largest seed both `jax.random.key` and NumPy's generators take."""


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
    shard_params: bool = False
    """Shard parameters and optimizer state over the mesh's `model` axis (`train.sharding`)."""
    model_axis: int | None = None
    """The size of the `model` axis; None: all the devices with `shard_params`, else 1."""
    dtype: str = "float32"
    scan: bool = True
    """Loop runs of identical blocks with `lax.scan` (`compile_graph(scan=True)`), the
    step carrying packed trees; False unrolls every layer (`--no-scan`). Same results to
    float rounding, same files: only compile time and step time differ."""
    keep_best: int = 0
    """Keep copies of the checkpoints of the best K epochs by held-out accuracy (0: none)."""
    early_stop: int = 0
    """Stop after this many epochs without a better held-out accuracy (0: never)."""

    @property
    def model_parts(self) -> int:
        """The size of the mesh's `model` axis in force."""
        if self.model_axis is not None:
            return self.model_axis
        return self.devices if self.shard_params else 1

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
            ("--keep-best", self.keep_best, 0),
            ("--early-stop", self.early_stop, 0),
        ):
            if value < low:
                raise ArchTrainError(f"`{name}` must be at least {low}, got {value}")
        if self.model_axis is not None:
            if not self.shard_params:
                raise ArchTrainError(
                    f"`--model-axis {self.model_axis}` does nothing without `--shard-params`",
                    help="add `--shard-params`, or drop `--model-axis`",
                )
            if self.model_axis < 1:
                raise ArchTrainError(f"`--model-axis` must be at least 1, got {self.model_axis}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ArchTrainError(f"`--seed` must be in 0..{MAX_SEED} (2**63 - 1), got {self.seed}")
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
