"""Held-out accuracy decides: which checkpoints to keep (`--keep-best`), when to stop early.

Both read only the run's per-epoch history, which checkpoints carry, so a resumed run
keeps the same best set and counts its patience from the same epoch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from archdsl.backend.weights import write_atomic
from archdsl.train.progress import EpochStats

BEST_INDEX: Final = "best.json"
"""Lists the kept checkpoints, best first, with their epoch and held-out accuracy."""


def best_name(epoch: int) -> str:
    """`best-epoch007.safetensors`."""
    return f"best-epoch{epoch:03d}.safetensors"


def ranked(history: Sequence[EpochStats]) -> list[EpochStats]:
    """Epochs by held-out accuracy, best first; a tie goes to the earlier epoch."""
    return sorted(history, key=lambda h: (-h.test_accuracy, h.epoch))


def epochs_since_best(history: Sequence[EpochStats]) -> int:
    """How many epochs have passed without beating the best held-out accuracy."""
    if not history:
        return 0
    return history[-1].epoch - ranked(history)[0].epoch


def should_stop(history: Sequence[EpochStats], patience: int) -> bool:
    """True once `patience` epochs in a row have not improved on the best (0: never)."""
    return patience > 0 and epochs_since_best(history) >= patience


def keep_best(folder: Path, checkpoint: Path, history: Sequence[EpochStats], k: int) -> list[Path]:
    """After an epoch's checkpoint is written: copy it if it ranks in the best `k`, and
    delete the copies that no longer do. Returns the kept files, best first."""
    best = ranked(history)[:k]
    keep = {folder / best_name(h.epoch) for h in best}
    latest = history[-1]
    target = folder / best_name(latest.epoch)
    if target in keep:
        write_atomic(target, checkpoint.read_bytes())
    for old in folder.glob("best-epoch*.safetensors"):
        if old not in keep:
            old.unlink(missing_ok=True)
    index = [
        {"epoch": h.epoch, "test_accuracy": h.test_accuracy, "file": best_name(h.epoch)}
        for h in best
        if (folder / best_name(h.epoch)).exists()
    ]
    write_atomic(folder / BEST_INDEX, (json.dumps(index, indent=2) + "\n").encode("utf-8"))
    return [folder / entry["file"] for entry in index]  # type: ignore[operator]
