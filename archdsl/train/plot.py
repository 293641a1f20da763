"""Draw training curves from runs' metrics logs: loss and accuracy against steps (matplotlib).

Each run gets one colour: its per-step training loss as a faint line with a moving
average over it, and its per-epoch held-out loss and accuracy as points joined by a line
(training accuracy per epoch dashed). Several runs share the axes, labelled by folder.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archdsl.backend.weights import write_atomic
from archdsl.train.config import ArchTrainError
from archdsl.train.metrics import read_metrics


def _smooth(values: list[float], window: int) -> list[float]:
    """A trailing moving average (the first points average what there is)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _label(run: Path) -> str:
    folder = run if run.is_dir() else run.parent
    return folder.name or str(folder)


def plot_runs(runs: Sequence[str | Path], output: str | Path, *, title: str | None = None) -> Path:
    """Write a PNG of loss and accuracy curves for one or more runs.

    Raises:
        ArchTrainError: a run without a metrics log, or one with no records yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [(Path(run), read_metrics(run)) for run in runs]
    for run, records in logs:
        if not records:
            raise ArchTrainError(f"{run}: the metrics log has no records yet")
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (run, records) in enumerate(logs):
        colour = colours[i % len(colours)]
        _draw(loss_ax, acc_ax, records, _label(run), colour)
    loss_ax.set(xlabel="step", ylabel="loss", title="loss")
    loss_ax.set_yscale("log")
    accuracies = [
        r[key]
        for _, records in logs
        for r in records
        for key in ("accuracy", "test_accuracy")
        if r.get("kind") == "epoch" and isinstance(r.get(key), float | int)
    ]
    low = max(0.0, (min(accuracies, default=0.0) - 0.02) // 0.05 * 0.05)
    acc_ax.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(low, 1.005))
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    output = Path(output)
    write_atomic(output, buffer.getvalue())
    return output


def _draw(
    loss_ax: Any, acc_ax: Any, records: list[dict[str, Any]], label: str, colour: str
) -> None:
    steps = [r for r in records if r.get("kind") == "step" and r.get("loss") is not None]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if steps:
        x = [r["step"] for r in steps]
        loss = [r["loss"] for r in steps]
        loss_ax.plot(x, loss, color=colour, alpha=0.25, linewidth=0.8)
        window = max(1, len(loss) // 50)
        loss_ax.plot(x, _smooth(loss, window), color=colour, label=f"{label} train")
    if epochs:
        x = [r["step"] for r in epochs]
        test_loss = [r.get("test_loss") for r in epochs]
        loss_ax.plot(x, test_loss, "o--", color=colour, markersize=4, label=f"{label} held-out")
        acc_ax.plot(
            x,
            [r.get("accuracy") for r in epochs],
            "s:",
            color=colour,
            markersize=3,
            label=f"{label} train",
        )
        acc_ax.plot(
            x,
            [r.get("test_accuracy") for r in epochs],
            "o-",
            color=colour,
            markersize=4,
            label=f"{label} held-out",
        )
