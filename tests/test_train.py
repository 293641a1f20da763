"""Training: LeNet-5 learns the digits, aux losses, schedules, data checks, checkpoints
and resume (a stopped run continues to the same weights as an uninterrupted one)."""

from __future__ import annotations

import io
import os
import signal
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rich.console import Console

from archdsl.backend.model import compile_graph
from archdsl.cli import main
from archdsl.frontend import build_graph, build_graph_text
from archdsl.io import ArchIOError
from archdsl.train.checkpoint import (
    CHECKPOINT_NAME,
    ArchCheckpointError,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from archdsl.train.data import ArchDataError, Dataset, Split, load_data
from archdsl.train.loop import (
    TrainConfig,
    classes_of,
    cross_entropy,
    make_optimizer,
    make_schedule,
    make_train_step,
    partition,
    train,
    training_graph,
)
from archdsl.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]

# Batch norm (running state), dropout (the per-step key) and an aux head: everything
# that a resumed run must restore. 8x8 digits, so no resize and a fast compile.
TINY = """
network Tiny(classes = 10) {
    input 8x8x1
    conv 4 3x3 same bias = false as conv -> batchnorm as bn -> relu
    aux side weight = 0.3 {
        globalavgpool -> dense classes as fc -> softmax
    }
    maxpool 2x2 as pool
    flatten -> dropout 0.1
    dense classes as fc -> softmax
}
"""


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """Runs of one network compile the same XLA programs: keep them on disk in between,
    so that a resumed run does not compile again (the cache is keyed by the program)."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    before = {name: getattr(jax.config, name) for name in names}
    jax.config.update(names[0], str(tmp_path_factory.mktemp("xla-cache")))
    jax.config.update(names[1], 0.0)
    jax.config.update(names[2], 0)
    cc.reset_cache()
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    cc.reset_cache()


@pytest.fixture(scope="module")
def tiny_graph():
    return build_graph_text(TINY, "tiny.arch")


@pytest.fixture(scope="module")
def small_digits() -> Split:
    data = load_data("digits", (8, 8, 1), 10)
    return Split(data.train.take(np.arange(320)), data.test.take(np.arange(96)))


def _leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# LeNet-5 --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lenet5_learns_the_digits(tmp_path: Path) -> None:
    graph = build_graph(ROOT / "specs" / "lenet5.arch")
    data = load_data("digits", (32, 32, 1), classes_of(graph))
    assert (len(data.train), len(data.test)) == (1437, 360)  # a 20% held-out split
    config = TrainConfig(
        epochs=4, batch_size=32, lr=3e-3, optimizer="adam", schedule="cosine", seed=0
    )
    result = train(graph, data, config, checkpoint_dir=tmp_path)
    assert result.test_accuracy >= 0.95, [h.test_accuracy for h in result.history]
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]
    assert result.history[-1].loss < result.history[0].loss
    assert (tmp_path / CHECKPOINT_NAME).exists()
    assert (tmp_path / "weights.safetensors").exists()


# the loss -------------------------------------------------------------------------------------
def test_training_graph_ends_heads_at_their_logits(tiny_graph) -> None:
    trained = training_graph(tiny_graph)
    assert trained.output == "fc"
    assert trained.aux["side"].output == "side.fc"
    assert "softmax" not in trained and "side.softmax" not in trained
    assert tiny_graph.output == "softmax"  # the original is untouched
    model, original = compile_graph(trained), compile_graph(tiny_graph)
    params = jax.eval_shape(model.init, jax.random.key(0))
    reference = jax.eval_shape(original.init, jax.random.key(0))
    assert jax.tree.structure(params) == jax.tree.structure(reference)  # same names


def test_aux_losses_are_added_at_their_weight(tiny_graph) -> None:
    model = compile_graph(training_graph(tiny_graph))
    params, state = model.init(jax.random.key(0))
    trainable, frozen = partition(params, model.trainable(params))
    optimizer = make_optimizer(TrainConfig(lr=0.01, schedule="constant"), 10)
    opt_state = optimizer.init(trainable)
    data = load_data("digits", (8, 8, 1), 10).train
    x, y = jnp.asarray(data.x[:32]), jnp.asarray(data.y[:32])
    key = jax.random.key(3)

    step = make_train_step(model, optimizer, {"side": 0.3})
    new_trainable, _, _, metrics = step(trainable, frozen, state, opt_state, x, y, key)
    outputs, _ = model.apply(params, state, x, train=True, key=key)
    main_loss = jnp.mean(cross_entropy(outputs["output"], y))
    aux_loss = jnp.mean(cross_entropy(outputs["side"], y))
    np.testing.assert_allclose(metrics["main"], main_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], main_loss + 0.3 * aux_loss, rtol=1e-5)
    # The aux head is trained through its loss (it has no other way to a gradient).
    assert not np.array_equal(new_trainable["side.fc"]["kernel"], params["side.fc"]["kernel"])


def test_softmax_output_trains_from_logits_without_overflow() -> None:
    # Logits this large make softmax exactly 0 for the true class: log(0) would be -inf.
    logits = jnp.array([[1000.0, -1000.0]])
    loss = cross_entropy(logits, jnp.array([1]))
    assert np.isfinite(loss).all() and float(loss[0]) == pytest.approx(2000.0)


def test_classes_must_be_a_vector() -> None:
    graph = build_graph_text("network N {\n input 8x8x1\n conv 2 3x3\n}\n", "n.arch")
    with pytest.raises(Exception, match="vector of class scores"):
        classes_of(graph)


def test_schedules() -> None:
    config = TrainConfig(lr=0.1, schedule="cosine")
    cosine = make_schedule(config, 100)
    assert float(cosine(0)) == pytest.approx(0.1)
    assert float(cosine(100)) == pytest.approx(0.0, abs=1e-7)
    step = make_schedule(TrainConfig(lr=0.1, schedule="step"), 100)
    assert [float(step(i)) for i in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    warm = make_schedule(TrainConfig(lr=0.1, schedule="warmup-cosine"), 100)
    assert float(warm(0)) == 0.0 and float(warm(5)) == pytest.approx(0.1)
    assert float(make_schedule(TrainConfig(lr=0.1, schedule="constant"), 100)(99)) == (
        pytest.approx(0.1)
    )


def test_weight_decay_spares_biases_and_batchnorm() -> None:
    params = {
        "conv": {"kernel": jnp.ones((3, 3, 1, 4))},
        "bn": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
        "fc": {"kernel": jnp.ones((16, 10)), "bias": jnp.ones(10)},
    }
    zero = jax.tree.map(jnp.zeros_like, params)
    for optimizer in ("sgd", "adam"):
        opt = make_optimizer(
            TrainConfig(optimizer=optimizer, lr=0.1, weight_decay=0.5, schedule="constant"), 10
        )
        updates, _ = opt.update(zero, opt.init(params), params)
        assert np.abs(updates["conv"]["kernel"]).sum() > 0, optimizer
        assert np.abs(updates["fc"]["bias"]).sum() == 0, optimizer
        assert np.abs(updates["bn"]["scale"]).sum() == 0, optimizer


def test_bad_settings_are_arch_errors(tiny_graph, small_digits) -> None:
    with pytest.raises(Exception, match="unknown optimizer"):
        train(tiny_graph, small_digits, TrainConfig(optimizer="lbfgs"))
    with pytest.raises(Exception, match="larger than the 320"):
        train(tiny_graph, small_digits, TrainConfig(batch_size=1000))
    with pytest.raises(Exception, match="asks for 64 devices"):
        train(tiny_graph, small_digits, TrainConfig(devices=64))


# resume -------------------------------------------------------------------------------------
CONFIG = TrainConfig(epochs=3, batch_size=64, lr=3e-3, schedule="cosine", seed=7)
"""320 examples, 5 steps an epoch, 15 in all."""


@pytest.fixture(scope="module")
def uninterrupted(tiny_graph, small_digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    return train(tiny_graph, small_digits, CONFIG, checkpoint_dir=folder)


@pytest.mark.slow
def test_stopped_and_killed_runs_resume_to_the_same_weights(
    tiny_graph, small_digits, uninterrupted, tmp_path: Path
) -> None:
    main_thread = threading.current_thread() is threading.main_thread()

    def press_ctrl_c(step: int) -> bool:
        if step == 7 and main_thread:  # the first Ctrl-C stops after the current step
            signal.raise_signal(signal.SIGINT)
        return step == 7 and not main_thread

    # 1. Ctrl-C in the middle of epoch 2: a checkpoint at that very step. The handler the
    # run found is put back (SIG_IGN where the suite runs as a background job of a shell).
    handler_before = signal.getsignal(signal.SIGINT)
    stopped = train(tiny_graph, small_digits, CONFIG, checkpoint_dir=tmp_path, on_step=press_ctrl_c)
    assert stopped.interrupted and stopped.step == 7
    assert signal.getsignal(signal.SIGINT) is handler_before
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert (saved.epoch, saved.position, saved.step) == (1, 2, 7)
    assert _leaves_equal(saved.params, stopped.params)

    # 2. Resumed, then killed in the middle of epoch 3: no chance to save.
    def kill(step: int) -> None:
        if step == 12:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train(tiny_graph, small_digits, CONFIG, checkpoint_dir=tmp_path, resume=saved, on_step=kill)
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert (saved.epoch, saved.position, saved.step) == (2, 0, 10)  # the epoch-2 one

    # 3. Resumed from the last epoch's checkpoint: the same weights, bit for bit.
    resumed = train(tiny_graph, small_digits, CONFIG, checkpoint_dir=tmp_path, resume=saved)
    assert not resumed.interrupted
    assert resumed.step == uninterrupted.step == 15
    assert _leaves_equal(resumed.params, uninterrupted.params)
    assert _leaves_equal(resumed.state, uninterrupted.state)
    assert [
        h.to_json() | {"seconds": 0, "examples_per_second": 0} for h in resumed.history[2:]
    ] == [h.to_json() | {"seconds": 0, "examples_per_second": 0} for h in uninterrupted.history[2:]]
    assert [h.test_accuracy for h in resumed.history] == [
        h.test_accuracy for h in uninterrupted.history
    ]

    # 4. One metrics log across the three runs: the killed run's steps 11-12 were dropped
    # when the run resumed from step 10, and trained again to the same losses.
    log = read_metrics(tmp_path)
    steps = [r for r in log if r["kind"] == "step"]
    whole = [r for r in read_metrics(uninterrupted.metrics) if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 16))
    assert [r["loss"] for r in steps] == [r["loss"] for r in whole]
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [1, 2, 3]
    assert set(steps[0]) >= {"loss", "main_loss", "aux_loss", "accuracy", "lr"}
    assert set(steps[0]["aux_loss"]) == {"side"}


def test_resume_refuses_other_settings(tiny_graph, small_digits, uninterrupted) -> None:
    saved = load_checkpoint(uninterrupted.checkpoint)
    saved.optimizer_paths = saved.optimizer_paths[:-1]
    saved.optimizer = saved.optimizer[:-1]
    with pytest.raises(ArchCheckpointError, match="does not fit this optimizer"):
        train(
            tiny_graph, small_digits, TrainConfig(**{**CONFIG.to_json(), "epochs": 4}), resume=saved
        )
    fewer = Split(small_digits.train.take(np.arange(256)), small_digits.test)
    with pytest.raises(Exception, match="resume with the data"):
        train(tiny_graph, fewer, CONFIG, resume=load_checkpoint(uninterrupted.checkpoint))


def test_resume_of_a_finished_run_does_nothing(tiny_graph, small_digits, uninterrupted):
    saved = load_checkpoint(uninterrupted.checkpoint)
    out = io.StringIO()
    again = train(
        tiny_graph, small_digits, CONFIG, resume=saved, console=Console(file=out, width=200)
    )
    assert "nothing to do" in out.getvalue()
    assert _leaves_equal(again.params, uninterrupted.params)


# checkpoint files ---------------------------------------------------------------------------
def _checkpoint(value: float) -> Checkpoint:
    return Checkpoint(
        params={"conv": {"kernel": np.full((3, 3, 1, 4), value, np.float32)}},
        state={"bn": {"mean": np.zeros(4, np.float32)}},
        optimizer=[np.array(3, np.int32), np.full((3, 3, 1, 4), value, np.float32)],
        optimizer_paths=["[0].count", "[0].mu['conv']['kernel']"],
        rng=np.array([0, 7], np.uint32),
        step=3,
        epoch=1,
        position=1,
        network="Tiny",
        config={"seed": 7},
        history=[],
        partial={"loss": 1.0},
    )


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.safetensors", _checkpoint(1.5))
    back = load_checkpoint(path)
    assert (back.step, back.epoch, back.position, back.network) == (3, 1, 1, "Tiny")
    np.testing.assert_array_equal(back.params["conv"]["kernel"], 1.5)
    assert back.optimizer_paths == _checkpoint(0).optimizer_paths
    assert back.config == {"seed": 7} and back.partial == {"loss": 1.0}


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, _checkpoint(1.0))
    before = path.read_bytes()

    def fail(fd: int) -> None:  # the data is in the temporary file; the disk fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(
        ArchIOError, match=r"checkpoint\.safetensors`: No space left on device \(ENOSPC\)"
    ):
        save_checkpoint(path, _checkpoint(2.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    np.testing.assert_array_equal(load_checkpoint(path).params["conv"]["kernel"], 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]  # no temp left


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers need the main thread",
)
def test_ctrl_c_during_a_write_waits_for_the_whole_file(tmp_path: Path, monkeypatch) -> None:
    import archdsl.io.atomic

    path = tmp_path / CHECKPOINT_NAME
    real = archdsl.io.atomic.os.replace

    def replace_after_ctrl_c(src, dst):
        signal.raise_signal(signal.SIGINT)  # pressed while the file is being written
        real(src, dst)

    monkeypatch.setattr(archdsl.io.atomic.os, "replace", replace_after_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _checkpoint(4.0))
    monkeypatch.undo()
    np.testing.assert_array_equal(load_checkpoint(path).params["conv"]["kernel"], 4.0)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    from archdsl.backend.weights import save_weights

    save_weights(tmp_path / "w.safetensors", {"fc": {"kernel": np.ones((2, 2))}}, {})
    with pytest.raises(ArchCheckpointError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / "w.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArchCheckpointError, match="not a safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(ArchCheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


# data -----------------------------------------------------------------------------------------
def _npz(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_digits_fit_any_input() -> None:
    data = load_data("digits", (16, 12, 3), 10)
    assert data.train.x.shape[1:] == (16, 12, 3) and data.train.x.dtype == np.float32
    assert data.train.x.min() >= 0.0 and data.train.x.max() <= 1.0
    assert sorted(set(data.test.y)) == list(range(10))  # stratified
    flat = load_data("digits", (64,), 10)
    assert flat.train.x.shape[1:] == (64,)


def test_npz_loads_and_scales(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 4, 4), dtype=np.uint8)  # one channel, no channel axis
    y = np.arange(50) % 3
    data = load_data(_npz(tmp_path, x=x, y=y), (4, 4, 1), 3)
    assert data.train.x.shape == (40, 4, 4, 1) and len(data.test) == 10
    assert data.train.x.max() <= 1.0
    given = load_data(_npz(tmp_path, x=x, y=y, x_test=x[:5], y_test=y[:5]), (4, 4, 1), 3)
    assert (len(given.train), len(given.test)) == (50, 5)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"x": np.zeros((10, 5, 5, 1)), "y": np.zeros(10)},
            r"holds 5x5x1 examples; the network "
            r"takes 4x4x1",
        ),
        (
            {"x": np.zeros((10, 4, 4, 1)), "y": np.full(10, 3)},
            r"has label 3, but the network has "
            r"3 outputs",
        ),
        ({"x": np.zeros((10, 4, 4, 1)), "y": np.full(10, -1)}, "has label -1"),
        ({"x": np.zeros((10, 4, 4, 1)), "y": np.full(10, 0.5)}, "not whole numbers"),
        ({"x": np.zeros((10, 4, 4, 1)), "y": np.zeros((10, 3))}, "not one-hot rows"),
        ({"x": np.zeros((10, 4, 4, 1)), "y": np.zeros(9)}, "has 10 examples but `y` has 9"),
        ({"x": np.full((10, 4, 4, 1), np.nan), "y": np.zeros(10)}, "160 NaN values in 10"),
        ({"x": np.zeros((10, 4, 4, 1))}, r"has no array `y`"),
        (
            {"x": np.zeros((10, 4, 4, 1)), "y": np.zeros(10), "x_test": np.zeros((2, 4, 4, 1))},
            "only one of",
        ),
    ],
)
def test_bad_data_is_refused_before_training(tmp_path: Path, arrays, message) -> None:
    with pytest.raises(ArchDataError, match=message):
        load_data(_npz(tmp_path, **arrays), (4, 4, 1), 3)


def test_bad_data_files(tmp_path: Path) -> None:
    with pytest.raises(ArchDataError, match="does not exist"):
        load_data(tmp_path / "nothing.npz", (4, 4, 1), 3)
    with pytest.raises(ArchDataError, match=r"expected `digits`, an \.npz file or an image folder"):
        load_data(tmp_path / "data.csv", (4, 4, 1), 3)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ArchDataError, match="cannot read"):
        load_data(tmp_path / "bad.npz", (4, 4, 1), 3)
    with pytest.raises(ArchDataError, match="8x8 images"):
        load_data("digits", (10,), 10)


def test_dataset_take() -> None:
    data = Dataset(np.arange(6, dtype=np.float32).reshape(3, 2), np.array([0, 1, 2]), "d")
    assert data.take(np.array([2, 0])).y.tolist() == [2, 0]


# the command ----------------------------------------------------------------------------------
@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.arch"
    path.write_text(TINY)
    return path


@pytest.mark.slow
def test_train_command(tiny_spec: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "run"
    args = [
        "train",
        str(tiny_spec),
        "--data",
        "digits",
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--schedule",
        "constant",  # the same program for 1 and 2 epochs: compiled once (see the cache)
        "--checkpoint-dir",
        str(folder),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "network  Tiny" in out and "aux heads side x0.3" in out
    assert "epoch 1/1" in out and "held-out accuracy" in out and "ex/s" in out
    assert (folder / CHECKPOINT_NAME).exists() and (folder / "weights.safetensors").exists()

    # Resuming takes the checkpoint's settings; a conflicting one is refused.
    assert main([*args, "--resume", "--lr", "0.5"]) == 1
    assert "trained with `--lr 0.001`" in capsys.readouterr().err
    assert main([*args[:5], "2", *args[6:], "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and "epoch 2/2" in out and "epoch 1/2" not in out


def test_train_command_bad_data(tiny_spec: Path, tmp_path: Path, capsys) -> None:
    bad = _npz(tmp_path, x=np.zeros((10, 8, 8, 1)), y=np.full(10, 12))
    assert main(["train", str(tiny_spec), "--data", str(bad), "--no-checkpoints"]) == 1
    err = capsys.readouterr().err
    assert "has label 12, but the network has 10 outputs" in err
    assert "--arg classes=13" in err and "Traceback" not in err
