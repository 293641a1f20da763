"""Hostile and damaged files: weights (bfloat16, float8, bad metadata, other dtypes),
forged checkpoints, data that would allocate or hang, inputs of the wrong kind. Each is an
archdsl error with a message that says what is wrong; none is a traceback."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save

from archdsl.backend.weights import ArchWeightsError, check_weights, load_weights, save_weights
from archdsl.cli import main
from archdsl.frontend import build_graph_text
from archdsl.io import ArchIOError
from archdsl.train.checkpoint import (
    FORMAT,
    FORMAT_KEY,
    META_KEY,
    ArchCheckpointError,
    Checkpoint,
    load_any_weights,
    load_checkpoint,
)
from archdsl.train.config import TrainConfig
from archdsl.train.data import ArchDataError, Split, load_data
from archdsl.train.loop import ArchTrainError, train

ROOT = Path(__file__).resolve().parents[1]

TINY = """
network Tiny(classes = 10) {
    input 8x8x1
    conv 4 3x3 same as conv -> relu
    flatten
    dense classes as fc
}
"""


def _raw_safetensors(header: dict, body: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


# weights ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dtype", "code"),
    [(ml_dtypes.bfloat16, "bfloat16"), (ml_dtypes.float8_e4m3fn, "float8_e4m3fn")],
)
def test_low_precision_weights_load_and_are_never_cast(tmp_path: Path, dtype, code) -> None:
    kernel = np.ones((3, 3), np.float32)
    save_weights(tmp_path / "w.safetensors", {"fc": {"kernel": kernel}}, {})
    path = tmp_path / "low.safetensors"
    path.write_bytes(save({"fc.kernel": kernel.astype(dtype)}))
    params, _ = load_weights(path)
    assert params["fc"]["kernel"].dtype == np.dtype(dtype)
    with pytest.raises(ArchWeightsError, match="1 of another dtype") as caught:
        check_weights(params, {}, {"fc": {"kernel": kernel}}, {})
    assert f"`fc.kernel` is {code}, expected float32" in str(caught.value)
    assert "archdsl never casts weights" in str(caught.value)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x05\x00", "2 bytes, too short for a header"),
        (struct.pack("<Q", 2**40) + b"{}", "the header claims 1,099,511,627,776 bytes"),
        (struct.pack("<Q", 4) + b"nope", "the header is not JSON"),
        (_raw_safetensors([1, 2]), "the header is not a JSON object"),  # type: ignore[arg-type]
        (
            _raw_safetensors({"__metadata__": {"a": 5}}),
            "`__metadata__` is not an object of strings",
        ),
        (
            _raw_safetensors({"t": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}),
            "tensor `t` has dtype 'F128'",
        ),
        (
            _raw_safetensors({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}),
            "tensor `t` has shape [-1]",
        ),
        (
            _raw_safetensors(
                {"t": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 4]}}, b"1234"
            ),
            "tensor `t` is F32 (1099511627776,) (4,398,046,511,104 bytes) but spans 4 bytes",
        ),
        (
            _raw_safetensors({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4000]}}),
            "tensor `t` has data offsets [0, 4000] outside the file",
        ),
        (_raw_safetensors({"t": [1]}), "tensor `t` lacks `dtype`, `shape` or `data_offsets`"),
    ],
)
def test_malformed_weights_files(tmp_path: Path, blob: bytes, message: str) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(blob)
    with pytest.raises(ArchWeightsError) as caught:
        load_weights(path)
    assert message in str(caught.value) and "is not a safetensors file" in str(caught.value)


@pytest.mark.parametrize("state", ["notjson", "5", '["a", 3]', '{"a": 1}'])
def test_malformed_state_metadata(tmp_path: Path, state: str) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(save({"fc.kernel": np.ones(2, np.float32)}, metadata={"archdsl.state": state}))
    with pytest.raises(
        ArchWeightsError, match=r"`archdsl\.state` is not a JSON list of tensor names"
    ):
        load_weights(path)


def test_init_from_a_device_or_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ArchWeightsError, match="weights `/dev/zero` is a device"):
        load_any_weights("/dev/zero")
    with pytest.raises(ArchWeightsError, match="is a FIFO; expected a regular file"):
        load_any_weights(tmp_path / "fifo")


# forged checkpoints ------------------------------------------------------------------------
def _checkpoint() -> Checkpoint:
    return Checkpoint(
        params={"conv": {"kernel": np.ones((3, 3, 1, 4), np.float32)}},
        state={},
        optimizer=[np.array(3, np.int32)],
        optimizer_paths=["[0].count"],
        rng=np.array([0, 7], np.uint32),
        step=3,
        epoch=1,
        position=1,
        network="Tiny",
        config={"seed": 7},
        history=[],
        partial={"loss": 1.0},
    )


def _forge(path: Path, change) -> None:
    checkpoint = _checkpoint()
    info = checkpoint.info()
    tensors = {"params/conv.kernel": checkpoint.params["conv"]["kernel"]}
    tensors |= {"optimizer/0": checkpoint.optimizer[0], "rng": checkpoint.rng}
    meta = {FORMAT_KEY: FORMAT, META_KEY: info}
    change(meta, info, tensors)
    if isinstance(meta[META_KEY], dict):
        meta[META_KEY] = json.dumps(meta[META_KEY])
    path.write_bytes(save(tensors, metadata=meta))


FORGERIES = {
    "bad JSON": (lambda m, i, t: m.update({META_KEY: "{not json"}), "metadata is not JSON"),
    "a list": (lambda m, i, t: m.update({META_KEY: "[1]"}), "metadata is not a JSON object"),
    "no step": (lambda m, i, t: i.pop("step"), "`step` is missing, expected a whole number"),
    "no epoch": (lambda m, i, t: i.pop("epoch"), "`epoch` is missing"),
    "no position": (lambda m, i, t: i.pop("position"), "`position` is missing"),
    "negative step": (lambda m, i, t: i.update(step=-5), "`step` is -5, expected 0.."),
    "absurd epoch": (lambda m, i, t: i.update(epoch=10**30), "`epoch` is 10000000000"),
    "float position": (lambda m, i, t: i.update(position=1.5), "`position` is 1.5"),
    "bool step": (lambda m, i, t: i.update(step=True), "`step` is True"),
    "string epoch": (lambda m, i, t: i.update(epoch="1"), "`epoch` is '1'"),
    "no paths": (lambda m, i, t: i.pop("optimizer_paths"), "`optimizer_paths` is missing"),
    "paths not names": (lambda m, i, t: i.update(optimizer_paths=[1]), "`optimizer_paths` is [1]"),
    "missing optimizer tensor": (
        lambda m, i, t: t.pop("optimizer/0"),
        "tensor optimizer/0 missing",
    ),
    "no rng": (lambda m, i, t: t.pop("rng"), "tensor rng missing"),
    "config a list": (lambda m, i, t: i.update(config=[1]), "`config` is [1], expected a dict"),
    "network a number": (lambda m, i, t: i.update(network=3), "`network` is 3, expected a str"),
    "history not a list": (lambda m, i, t: i.update(history=5), "`history` is 5"),
    "history of strings": (lambda m, i, t: i.update(history=["x"]), "`history` holds an entry"),
    "history with text": (
        lambda m, i, t: i.update(history=[{"epoch": "one"}]),
        "`history` holds an entry that is not an object of numbers",
    ),
    "partial NaN": (
        lambda m, i, t: i.update(partial={"loss": float("nan")}),
        "`partial` holds a value that is not a finite number",
    ),
    "partial negative": (lambda m, i, t: i.update(partial={"examples": -1}), "`partial` holds"),
}


@pytest.mark.parametrize("forgery", FORGERIES, ids=list(FORGERIES))
def test_forged_checkpoints_are_refused(tmp_path: Path, forgery: str) -> None:
    change, message = FORGERIES[forgery]
    path = tmp_path / "checkpoint.safetensors"
    _forge(path, change)
    with pytest.raises(ArchCheckpointError) as caught:
        load_checkpoint(path)
    assert message in str(caught.value)
    assert "is a damaged checkpoint" in str(caught.value)


# training: runs that would write where they should not, or continue from forged counters ----
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    graph = build_graph_text(TINY, "tiny.arch")
    data = load_data("digits", (8, 8, 1), 10)
    data = Split(data.train.take(np.arange(64)), data.test.take(np.arange(32)))
    folder = tmp_path_factory.mktemp("run")
    config = TrainConfig(epochs=1, batch_size=32, seed=3)
    train(graph, data, config, checkpoint_dir=folder)
    return graph, data, config, folder


def test_resume_with_nothing_to_do_writes_nowhere(trained, tmp_path: Path) -> None:
    graph, data, config, folder = trained
    resume = load_checkpoint(folder / "checkpoint.safetensors")
    fresh = tmp_path / "never-created"
    result = train(graph, data, config, checkpoint_dir=fresh, resume=resume)
    assert result.epochs_done == 1 and result.weights is None
    assert not fresh.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("position", 7, "it is at batch 7 of an epoch that has 2 batches"),
        ("step", 9, "step 9 is not epoch 1 x 2 batches + batch 0 = 2"),
        ("rng", np.zeros(5, np.float32), "its `rng` is float32 (5,), expected uint32 (2,)"),
        ("history", [], "it records 0 epochs of history at epoch 1"),
    ],
)
def test_forged_counters_do_not_fit_the_run(trained, tmp_path, field, value, message) -> None:
    graph, data, _, folder = trained
    resume = load_checkpoint(folder / "checkpoint.safetensors")
    setattr(resume, field, value)
    with pytest.raises(ArchCheckpointError, match="the checkpoint does not fit this run") as caught:
        train(graph, data, TrainConfig(epochs=2, batch_size=32, seed=3), resume=resume)
    assert message in str(caught.value)


def test_a_checkpoint_folder_that_is_a_file_fails_before_training(trained, tmp_path) -> None:
    graph, data, config, _ = trained
    (tmp_path / "taken").write_text("")
    with pytest.raises(ArchIOError, match=r"checkpoint folder `.*taken` is a file, not a folder"):
        train(graph, data, config, checkpoint_dir=tmp_path / "taken")


def test_temp_files_of_a_killed_run_are_cleaned_by_the_next(trained, tmp_path) -> None:
    graph, data, config, _ = trained
    stale = tmp_path / f".checkpoint.safetensors.{2**22 + 99}.00000000.archdsl-tmp.safetensors"
    stale.write_bytes(b"half a checkpoint")
    train(graph, data, config, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.safetensors",
        "metrics.jsonl",
        "weights.safetensors",
    ]


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64])
def test_seed_out_of_range(seed: int) -> None:
    with pytest.raises(
        ArchTrainError,
        match=rf"`--seed` must be in 0..9223372036854775807 \(2\*\*63 - 1\), got {seed}",
    ):
        TrainConfig(seed=seed).check()


# data ----------------------------------------------------------------------------------------
def test_digits_too_large_for_memory_are_refused_before_resizing() -> None:
    with pytest.raises(ArchDataError) as caught:
        load_data("digits", (8192, 8192, 3), 10)
    message = str(caught.value)
    assert "`--data digits` at 8192x8192x3 needs 2.2 TiB of memory, but only" in message
    grey = 1797 * 8192 * 8192 * 4  # the resize holds the grey images twice, then 3 channels
    assert f"needed {5 * grey:,} bytes, available" in message


def test_a_fifo_as_data_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    with pytest.raises(
        ArchDataError, match=r"data file `.*data\.npz` is a FIFO; expected a regular file"
    ):
        load_data(fifo, (8, 8, 1), 10)


# running exported models ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from archdsl.backend.export import export_model
    from archdsl.compiler import compile_graph_model

    folder = tmp_path_factory.mktemp("exported")
    model = compile_graph_model(build_graph_text(TINY, "tiny.arch"))
    export_model(model, folder / "m.jaxexport")
    params, state = model.init(jax.random.key(0))
    save_weights(folder / "w.safetensors", params, state)
    return folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.savez(p, x=np.zeros((1, 8, 8, 1))), "is an .npz archive; expected one array"),
        (lambda p: np.save(p, np.zeros((0, 8, 8, 1), np.float32)), "is an empty batch"),
        (lambda p: np.save(p, np.zeros((1, 8, 8, 1), np.complex64)), "expected real numbers"),
        (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00"), "not a .npy array"),
    ],
    ids=["npz", "empty", "complex", "truncated"],
)
def test_bad_inputs_to_run(exported, tmp_path, capsys, make, message) -> None:
    x = tmp_path / "x.npy"
    make(x)
    if not x.exists():  # np.savez appended .npz
        (tmp_path / "x.npy.npz").rename(x)
    code = main(
        [
            "run",
            str(exported / "m.jaxexport"),
            "--weights",
            str(exported / "w.safetensors"),
            "--input",
            str(x),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err


def test_run_refuses_weights_of_another_dtype(exported, tmp_path, capsys) -> None:
    params, state = load_weights(exported / "w.safetensors")
    half = jax.tree.map(lambda a: np.asarray(a, ml_dtypes.bfloat16), params)
    save_weights(tmp_path / "bf16.safetensors", half, state)
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 1), np.float32))
    code = main(
        [
            "run",
            str(exported / "m.jaxexport"),
            "--weights",
            str(tmp_path / "bf16.safetensors"),
            "--input",
            str(tmp_path / "x.npy"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "`fc.kernel` is bfloat16, expected float32" in err


def test_trailing_bytes_after_the_tensors_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, {"fc": {"kernel": np.ones((2, 2), np.float32)}}, {})
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(
        ArchWeightsError, match="the tensors cover 16 bytes of the 17 after the header"
    ):
        load_weights(path)


def test_parameters_that_cannot_fit_are_refused_before_xla_allocates() -> None:
    from archdsl.io import ArchIOError
    from archdsl.train.data import Dataset

    graph = build_graph_text("network Big {\n input 100000\n dense 1000000 as fc\n}\n", "big.arch")
    data = Dataset(np.zeros((8, 1), np.float32), np.zeros(8, np.int32))  # never reached
    with pytest.raises(ArchIOError) as caught:
        train(graph, Split(data, data), TrainConfig(epochs=1, batch_size=4))
    message = str(caught.value)
    params = 100_000 * 1_000_000 + 1_000_000
    assert f"training `Big` ({params:,} parameters, with gradients and adam state)" in message
    assert f"needed {params * 16:,} bytes" in message
