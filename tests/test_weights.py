"""Weights files: round trip, names, the mismatch report, atomic replacement."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from archdsl.backend.weights import (
    STATE_KEY,
    ArchWeightsError,
    check_weights,
    flatten,
    load_weights,
    save_weights,
    unflatten,
)
from archdsl.io import ArchIOError


def tree(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {
        "stem.conv1": {"kernel": rng.normal(size=(3, 3, 1, 4)).astype(np.float32)},
        "layer2.0.bn1": {"scale": np.ones(4, np.float32), "bias": np.zeros(4, np.float32)},
        "layer2.0.residual.shortcut": {"kernel": rng.normal(size=(1, 1, 4, 8)).astype(np.float32)},
        "fc": {
            "kernel": rng.normal(size=(8, 10)).astype(np.float32),
            "bias": rng.normal(size=10).astype(np.float32),
        },
    }
    state = {
        "layer2.0.bn1": {
            "mean": rng.normal(size=4).astype(np.float32),
            "var": np.ones(4, np.float32),
        }
    }
    return params, state


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_flat_names_split_at_the_last_dot():
    params, _ = tree()
    flat = flatten(params)
    assert "layer2.0.residual.shortcut.kernel" in flat
    assert unflatten(flat).keys() == params.keys()


def test_round_trip(tmp_path):
    params, state = tree()
    path = tmp_path / "w.safetensors"
    save_weights(path, params, state)
    loaded_params, loaded_state = load_weights(path)
    assert_trees_equal(loaded_params, params)
    assert_trees_equal(loaded_state, state)


def test_round_trip_of_jax_arrays_keeps_float32(tmp_path):
    params = {"fc": {"kernel": jax.numpy.ones((2, 3))}}
    save_weights(tmp_path / "w.safetensors", params, {})
    loaded, state = load_weights(tmp_path / "w.safetensors")
    assert loaded["fc"]["kernel"].dtype == np.float32 and state == {}


def test_the_file_is_plain_safetensors_with_dotted_names(tmp_path):
    params, state = tree()
    path = tmp_path / "w.safetensors"
    save_weights(path, params, state)
    tensors = load_file(path)
    assert "stem.conv1.kernel" in tensors and "layer2.0.bn1.mean" in tensors
    size = int.from_bytes(path.read_bytes()[:8], "little")
    metadata = json.loads(path.read_bytes()[8 : 8 + size])["__metadata__"]
    assert json.loads(metadata[STATE_KEY]) == ["layer2.0.bn1.mean", "layer2.0.bn1.var"]


def test_check_passes_on_a_match_and_lists_every_mismatch():
    params, state = tree()
    check_weights(params, state, params, state)
    got = {k: dict(v) for k, v in params.items()}
    del got["fc"]["bias"]
    got["extra"] = {"kernel": np.zeros(3)}
    got["stem.conv1"]["kernel"] = np.zeros((5, 5, 1, 4))
    with pytest.raises(ArchWeightsError) as info:
        check_weights(got, {}, params, state)
    error = info.value
    assert error.message == (
        "the weights do not fit the network: 3 missing, 1 unexpected, 1 of the wrong shape"
    )
    assert error.notes == (
        "missing `fc.bias` 10",
        "missing `layer2.0.bn1.mean` 4 (running state)",
        "missing `layer2.0.bn1.var` 4 (running state)",
        "unexpected `extra.kernel` 3",
        "`stem.conv1.kernel` is 5x5x1x4, expected 3x3x1x4",
    )
    assert "= note: unexpected `extra.kernel` 3" in str(error)


def test_check_accepts_shape_structs_as_the_expectation():
    params, state = tree()
    expected = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (params, state))
    check_weights(params, state, *expected)


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_weights(path, *tree(0))
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(
        ArchIOError, match=r"cannot write `.*w\.safetensors`: No space left on device \(ENOSPC\)"
    ):
        save_weights(path, *tree(1))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    assert_trees_equal(load_weights(path), tree(0))


def test_a_failed_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"

    def broken_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ArchIOError, match=r"Permission denied \(EACCES\)"):
        save_weights(path, *tree())
    assert list(tmp_path.iterdir()) == []


def test_unreadable_files_are_weights_errors(tmp_path):
    with pytest.raises(ArchWeightsError, match=r"weights `.*missing.safetensors` does not exist"):
        load_weights(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all")
    with pytest.raises(ArchWeightsError, match="is not a safetensors file"):
        load_weights(junk)
