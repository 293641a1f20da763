"""Weights without batch-norm statistics are an error wherever they are loaded.

`load_weights(path, network)`, `archdsl compile -o model.onnx --weights`, `archdsl run
--weights` and `archdsl train --init` all refuse a file that gives a batch norm its
scale and shift but not its running mean and variance, naming the layers, unless told
`--allow-missing` / `allow_missing=True`.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from archdsl.backend.model import compile_graph
from archdsl.backend.weights import (
    ArchWeightsError,
    flatten,
    load_weights,
    save_weights,
    settle_state,
    state_of,
)
from archdsl.cli.main import main
from archdsl.frontend import build_graph

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "specs" / "tiny_resnet.arch"
TRANSFER = ROOT / "specs" / "transfer_tiny_resnet.arch"
PICTURES = ROOT / "tests" / "fixtures" / "pictures"
BATCH_NORMS = (
    "bn1",
    "layer1.0.bn1",
    "layer1.0.bn2",
    "layer2.0.bn1",
    "layer2.0.bn2",
    "layer2.0.residual.shortcut",
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """TinyResNet's weights three ways: complete, without state, without archdsl's metadata."""
    folder = tmp_path_factory.mktemp("weights")
    graph = build_graph(TINY)
    params, state = compile_graph(graph).init(jax.random.key(0))
    rng = np.random.default_rng(0)
    state = {n: {k: rng.uniform(0.5, 1.5, v.shape).astype(np.float32) for k, v in leaves.items()}
             for n, leaves in state.items()}  # fmt: skip
    files = {name: folder / f"{name}.safetensors" for name in ("full", "nostate", "nometa")}
    save_weights(files["full"], params, state)
    save_weights(files["nostate"], params, {})
    flat = {k: np.asarray(v) for k, v in {**flatten(params), **flatten(state)}.items()}
    save_file(flat, str(files["nometa"]))  # plain safetensors: no `archdsl.state`
    return files


def assert_names_every_layer(message: str) -> None:
    assert "no running statistics for 6 batch norms" in message
    for node in BATCH_NORMS:
        assert f"`{node}` lacks `{node}.mean`, `{node}.var`" in message
    assert "--allow-missing" in message


def test_state_of_lists_every_batch_norm_and_the_projection() -> None:
    needed = state_of(build_graph(TINY))
    assert set(needed) == set(BATCH_NORMS)
    assert needed["layer2.0.residual.shortcut"] == {"mean": (16,), "var": (16,)}


def test_load_weights_refuses_a_file_without_statistics(weights) -> None:
    graph = build_graph(TINY)
    with pytest.raises(ArchWeightsError) as info:
        load_weights(weights["nostate"], graph)
    assert_names_every_layer(str(info.value))
    # Without the network there is nothing to check against: the file reads as it is.
    params, state = load_weights(weights["nostate"])
    assert state == {} and "bn1" in params


def test_load_weights_allow_missing_starts_statistics_at_mean_0_var_1(weights) -> None:
    _, state = load_weights(weights["nostate"], build_graph(TINY), allow_missing=True)
    assert set(state) == set(BATCH_NORMS)
    np.testing.assert_array_equal(state["bn1"]["mean"], np.zeros(8, np.float32))
    np.testing.assert_array_equal(state["layer2.0.bn2"]["var"], np.ones(16, np.float32))


def test_load_weights_reads_state_the_metadata_does_not_list(weights) -> None:
    graph = build_graph(TINY)
    want_params, want_state = load_weights(weights["full"], graph)
    params, state = load_weights(weights["nometa"], graph)
    assert flatten(params).keys() == flatten(want_params).keys()
    for name, x in flatten(want_state).items():
        np.testing.assert_array_equal(flatten(state)[name], x)


def test_a_layer_absent_from_the_file_is_not_asked_for_statistics() -> None:
    needed = {"bn1": {"mean": (2,), "var": (2,)}, "head_bn": {"mean": (2,), "var": (2,)}}
    params = {"bn1": {"scale": np.ones(2), "bias": np.zeros(2)}}
    state = {"bn1": {"mean": np.zeros(2), "var": np.ones(2)}}
    assert settle_state(params, state, needed, "f") == (params, state)
    with pytest.raises(ArchWeightsError, match="1 batch norm of the network") as info:
        settle_state(params, {"bn1": {"mean": np.zeros(2)}}, needed, "f")
    assert list(info.value.notes) == ["`bn1` lacks `bn1.var`"]


def test_compile_onnx_refuses_then_allows(weights, tmp_path, capsys) -> None:
    out = tmp_path / "tiny.onnx"
    command = ["compile", str(TINY), "-o", str(out), "--weights", str(weights["nostate"])]
    assert main(command) == 1
    assert_names_every_layer(capsys.readouterr().err)
    assert not out.exists()
    assert main([*command, "--allow-missing"]) == 0
    assert out.exists()


def test_run_refuses_then_allows(weights, tmp_path, capsys) -> None:
    model = tmp_path / "tiny.jaxexport"
    assert main(["compile", str(TINY), "-o", str(model)]) == 0
    batch = tmp_path / "x.npy"
    np.save(batch, np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32))
    capsys.readouterr()
    command = ["run", str(model), "--weights", str(weights["nostate"]), "--input", str(batch)]
    assert main(command) == 1
    assert_names_every_layer(capsys.readouterr().err)
    assert main([*command, "--allow-missing", "-o", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (2, 10)
    # A file without archdsl's metadata gives the same outputs as archdsl's own file.
    for name in ("full", "nometa"):
        command = ["run", str(model), "--weights", str(weights[name]), "--input", str(batch)]
        assert main([*command, "-o", str(tmp_path / f"{name}.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "full.npy"), np.load(tmp_path / "nometa.npy"))


def test_train_init_refuses_then_allows(weights, tmp_path, capsys) -> None:
    command = ["train", str(TRANSFER), "--data", str(PICTURES), "--init", str(weights["nostate"]),
               "--epochs", "1", "--batch-size", "16", "--no-checkpoints"]  # fmt: skip
    assert main(command) == 1
    assert_names_every_layer(capsys.readouterr().err)
    assert main([*command, "--allow-missing"]) == 0
    out = capsys.readouterr().out
    # bn statistics of the base start at their initial values; the head is new
    assert "loaded" in out and "held-out accuracy" in out


def test_compile_allow_missing_needs_weights(capsys) -> None:
    assert main(["compile", str(TINY), "--allow-missing"]) == 1
    assert "`--allow-missing` goes with `--weights" in capsys.readouterr().err
