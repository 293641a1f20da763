"""Training you can look at: the metrics log, `archdsl plot`, `--keep-best`, `--early-stop`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archdsl.cli import main
from archdsl.frontend import build_graph_text
from archdsl.train.best import epochs_since_best, keep_best, ranked, should_stop
from archdsl.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from archdsl.train.config import ArchTrainError, TrainConfig
from archdsl.train.data import Split, load_data
from archdsl.train.loop import train
from archdsl.train.metrics import MetricsLog, read_metrics
from archdsl.train.plot import plot_runs
from archdsl.train.progress import EpochStats

TINY = """
network Tiny(classes = 10) {
    input 8x8x1
    conv 4 3x3 same -> relu
    flatten
    dense classes -> softmax
}
"""


def _epoch(epoch: int, accuracy: float) -> EpochStats:
    return EpochStats(epoch, 1.0 / epoch, 1.0 / epoch, 0.5, 1.2 / epoch, accuracy, 100.0, 1.0)


def test_ranking_and_patience() -> None:
    history = [_epoch(1, 0.5), _epoch(2, 0.7), _epoch(3, 0.7), _epoch(4, 0.6)]
    assert [h.epoch for h in ranked(history)] == [2, 3, 4, 1]  # a tie goes to the earlier
    assert epochs_since_best(history) == 2
    assert should_stop(history, 2) and not should_stop(history, 3)
    assert not should_stop(history, 0)
    assert not should_stop([], 1)


def test_keep_best_copies_and_prunes(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.safetensors"
    history: list[EpochStats] = []
    for epoch, accuracy in enumerate([0.5, 0.8, 0.6, 0.9], 1):
        history.append(_epoch(epoch, accuracy))
        checkpoint.write_bytes(f"weights of epoch {epoch}".encode())
        kept = keep_best(tmp_path, checkpoint, history, 2)
    assert [p.name for p in kept] == ["best-epoch004.safetensors", "best-epoch002.safetensors"]
    assert sorted(p.name for p in tmp_path.glob("best-*")) == [
        "best-epoch002.safetensors",
        "best-epoch004.safetensors",
    ]
    assert (tmp_path / "best-epoch002.safetensors").read_bytes() == b"weights of epoch 2"
    index = json.loads((tmp_path / "best.json").read_text())
    assert [(e["epoch"], e["test_accuracy"]) for e in index] == [(4, 0.9), (2, 0.8)]


def test_metrics_log_resumes_and_survives_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in range(1, 6):
        log.write({"kind": "step", "step": step, "loss": 1.0 / step, "lr": float("nan")})
    log.close()
    with path.open("a") as f:
        f.write('{"kind": "step", "st')  # the run died mid-line
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
    assert read_metrics(path)[0]["lr"] is None  # NaN is not JSON
    resumed = MetricsLog(path, resume_step=3)
    resumed.write({"kind": "step", "step": 4, "loss": 0.0})
    resumed.close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ArchTrainError, match=r"metrics\.jsonl:2: not a JSON"):
        read_metrics(path)
    with pytest.raises(ArchTrainError, match="no metrics log"):
        read_metrics(tmp_path / "elsewhere")


@pytest.mark.slow
def test_early_stop_keep_best_and_plot(tmp_path: Path, capsys) -> None:
    """A learning rate too small to change any prediction: no epoch beats the first."""
    data = load_data("digits", (8, 8, 1), 10)
    small = Split(data.train.take(np.arange(128)), data.test.take(np.arange(64)))
    config = TrainConfig(
        epochs=5, batch_size=64, lr=1e-12, schedule="constant", keep_best=1, early_stop=2
    )
    result = train(build_graph_text(TINY, "tiny.arch"), small, config, checkpoint_dir=tmp_path)
    assert result.early_stopped and not result.interrupted
    assert result.epochs_done == 3 and len(result.history) == 3
    assert [p.name for p in tmp_path.glob("best-*")] == ["best-epoch001.safetensors"]
    log = read_metrics(tmp_path)
    assert [r["step"] for r in log if r["kind"] == "step"] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [1, 2, 3]
    assert all(r["lr"] == pytest.approx(1e-12) for r in log)

    # Resuming the finished run does not train on.
    again = train(
        build_graph_text(TINY, "tiny.arch"),
        small,
        config,
        checkpoint_dir=tmp_path,
        resume=load_checkpoint(tmp_path / CHECKPOINT_NAME),
    )
    assert again.early_stopped and again.step == result.step == 6

    out = tmp_path / "curves.png"
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in log[:4]) + "\n")
    assert main(["plot", str(tmp_path), str(other), "-o", str(out), "--title", "t"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 200
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # curves, not a blank page


def test_plot_refuses_a_run_without_a_log(tmp_path: Path, capsys) -> None:
    assert main(["plot", str(tmp_path), "-o", str(tmp_path / "c.png")]) == 1
    assert "no metrics log" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ArchTrainError, match="no records"):
        plot_runs([tmp_path], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()
