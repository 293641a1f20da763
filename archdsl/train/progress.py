"""What a run shows while it trains: the live progress bar, throughput, the epoch line.

Presentation only: the loop hands in figures, nothing here changes the run.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from archdsl.lang.numbers import format_count


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


class Timing:
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


def progress_bar(console: Console, show: bool) -> Progress:
    """A transient bar (epoch, batches, running loss and accuracy, rate); off when not a terminal."""
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
