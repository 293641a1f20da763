"""Exported models: StableHLO round trip with a symbolic batch, and `archdsl run`."""

from __future__ import annotations

import argparse

import jax
import numpy as np
import pytest

from archdsl.backend.export import ArchExportError, export_model, load_exported, run_exported
from archdsl.backend.weights import ArchWeightsError, save_weights
from archdsl.cli import run as run_command
from archdsl.compiler import compile_spec

SPEC = """
network Small(classes = 4) {
    input 12x12x3
    conv 8 3x3 same bias = false -> batchnorm -> relu
    residual { conv 16 3x3 stride 2 same -> batchnorm -> relu }
    maxpool 3x3 stride 2 ceil
    flatten
    dropout 0.5
    dense classes -> softmax
}
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The model, its saved weights with non-trivial running statistics, and file paths."""
    folder = tmp_path_factory.mktemp("export")
    model = compile_spec(SPEC)
    params, state = model.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(4, 12, 12, 3)).astype(np.float32)
    _, state = model.apply(params, state, x, train=True, key=jax.random.key(1))
    export_model(model, folder / "model.jaxexport")
    save_weights(folder / "w.safetensors", params, state)
    return model, params, state, folder


@pytest.mark.parametrize("batch", [1, 3])
def test_exported_model_matches_apply_for_any_batch(exported, batch):
    model, params, state, folder = exported
    x = np.random.default_rng(batch).normal(size=(batch, 12, 12, 3)).astype(np.float32)
    np.save(folder / "x.npy", x)
    out = run_exported(
        folder / "model.jaxexport", folder / "w.safetensors", folder / "x.npy", folder / "y.npy"
    )
    want, _ = model.apply(params, state, x)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.load(folder / "y.npy"), out)


def test_the_file_is_plain_jax_export_with_the_parameter_tree(exported):
    _, params, state, folder = exported
    plain = jax.export.deserialize(bytearray((folder / "model.jaxexport").read_bytes()))
    (p, s, x), kwargs = jax.tree.unflatten(plain.in_tree, plain.in_avals)
    assert kwargs == {}
    assert jax.tree.structure(p) == jax.tree.structure(params)
    assert jax.tree.structure(s) == jax.tree.structure(state)
    assert str(x.shape[0]) == "b" and x.shape[1:] == (12, 12, 3)
    assert set(plain.platforms) >= {"cpu"}
    assert load_exported(folder / "model.jaxexport").in_tree == plain.in_tree


def test_run_command(exported, capsys):
    _, _, _, folder = exported
    parser = argparse.ArgumentParser()
    run_command.register(parser.add_subparsers())
    x = np.zeros((2, 12, 12, 3), np.float32)
    np.save(folder / "zeros.npy", x)
    model, weights, inputs = (
        str(folder / n) for n in ("model.jaxexport", "w.safetensors", "zeros.npy")
    )
    args = parser.parse_args(["run", model, "--weights", weights, "--input", inputs])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("[[") and printed.count("]") == 3
    out = str(folder / "out.npy")
    args = parser.parse_args(["run", model, "--weights", weights, "--input", inputs, "-o", out])
    assert args.func(args) == 0
    assert np.load(out).shape == (2, 4)
    assert "wrote" in capsys.readouterr().out


def test_input_of_the_wrong_shape(exported):
    _, _, _, folder = exported
    np.save(folder / "one.npy", np.zeros((12, 12, 3), np.float32))
    with pytest.raises(ArchExportError, match=r"the model takes a batch \(N, 12, 12, 3\)") as info:
        run_exported(folder / "model.jaxexport", folder / "w.safetensors", folder / "one.npy")
    assert "x[None]" in info.value.help


def test_weights_of_another_network(exported, tmp_path):
    _, params, state, folder = exported
    other = {k: v for k, v in params.items() if k != next(iter(params))}
    save_weights(tmp_path / "other.safetensors", other, state)
    np.save(tmp_path / "x.npy", np.zeros((1, 12, 12, 3), np.float32))
    with pytest.raises(ArchWeightsError, match=r"the weights do not fit the network: \d+ missing"):
        run_exported(folder / "model.jaxexport", tmp_path / "other.safetensors", tmp_path / "x.npy")


def test_files_that_are_not_models_or_arrays(exported, tmp_path):
    _, _, _, folder = exported
    junk = tmp_path / "junk.jaxexport"
    junk.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(ArchExportError, match="is not an exported model"):
        run_exported(junk, folder / "w.safetensors", folder / "x.npy")
    with pytest.raises(ArchExportError, match=r"model `.*missing\.jaxexport` does not exist"):
        load_exported(tmp_path / "missing.jaxexport")
    (tmp_path / "x.npy").write_text("not numpy")
    with pytest.raises(ArchExportError, match="cannot read input"):
        run_exported(folder / "model.jaxexport", folder / "w.safetensors", tmp_path / "x.npy")


def test_weights_of_another_dtype_are_refused_not_cast(exported, tmp_path):
    _, params, state, folder = exported
    wide = jax.tree.map(lambda a: np.asarray(a, np.float64), (params, state))
    save_weights(tmp_path / "wide.safetensors", *wide)
    with pytest.raises(ArchWeightsError, match="of another dtype") as caught:
        run_exported(folder / "model.jaxexport", tmp_path / "wide.safetensors", folder / "x.npy")
    assert "`dense.kernel` is float64, expected float32" in str(caught.value)
    assert "never casts" in str(caught.value)
