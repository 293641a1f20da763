"""The run's metrics log: one JSON object per line in `metrics.jsonl` beside the checkpoints.

A `step` record per optimizer step (loss, main loss, each aux loss, batch accuracy,
learning rate, examples per second) and an `epoch` record per evaluation (training means,
held-out loss and accuracy). Lines are appended and flushed as the run goes, so a crash
loses at most the line being written, and `tail -f` or `archdsl plot` can read a live
run. A resumed run drops the records after its checkpoint's step (they are trained
again) and appends to the same file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Final

from archdsl.backend.weights import write_atomic
from archdsl.train.config import ArchTrainError

METRICS_NAME: Final = "metrics.jsonl"
"""The file name of the metrics log in a checkpoint folder."""


class MetricsLog:
    """Appends records to a run's `metrics.jsonl`."""

    def __init__(self, path: str | Path, *, resume_step: int | None = None) -> None:
        """Start a new log at `path`, or continue one from `resume_step` (dropping later lines)."""
        self.path = Path(path)
        if resume_step is None:
            write_atomic(self.path, b"")
        elif self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            write_atomic(self.path, "".join(_line(r) for r in kept).encode("utf-8"))
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record and flush it to the file."""
        if self._file is None:
            return
        self._file.write(_line(record))
        self._file.flush()

    def close(self) -> None:
        """Close the file (records written so far stay)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _line(record: Mapping[str, Any]) -> str:
    clean = {k: _finite(v) for k, v in record.items()}
    return json.dumps(clean, separators=(",", ":")) + "\n"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics log (a run folder or the file itself).

    A last line cut short by a crash is skipped; any other bad line is an error.

    Raises:
        ArchTrainError: no log there, or a line that is not JSON.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ArchTrainError(
            f"no metrics log at {path}",
            help="give a checkpoint folder written by `archdsl train` (it holds metrics.jsonl)",
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ArchTrainError(f"cannot read {path}: {error}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # the line being written when the run stopped
            raise ArchTrainError(f"{path}:{number}: not a JSON metrics record") from None
        if isinstance(record, dict):
            records.append(record)
    return records
