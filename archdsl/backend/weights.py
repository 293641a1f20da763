"""Weights on disk: params and running state in one safetensors file, written atomically.

Tensor names are flat and dotted, node name then leaf, as PyTorch's `state_dict`
(`layer2.0.conv1.kernel`, `layer2.0.bn1.mean`). Running statistics share that
namespace, as PyTorch's buffers do; the file metadata key `archdsl.state` lists
which names are state (a JSON list), so reading back needs no naming convention.
Node names may contain dots; leaf names never do, so a name splits at its last dot.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from archdsl.errors import ArchError
from archdsl.graph.shapes import format_shape

STATE_KEY = "archdsl.state"
"""Metadata key: JSON list of the tensor names that are running state, not params."""
FORMAT_KEY = "archdsl.format"
FORMAT = "1"

Tree = Mapping[str, Mapping[str, Any]]
"""`{node: {leaf: array}}`: params or state, arrays or anything with a `.shape`."""


class ArchWeightsError(ArchError):
    """A weights file that cannot be read, or that does not fit the network."""


def flatten(tree: Tree) -> dict[str, Any]:
    """`{node: {leaf: x}}` to `{"node.leaf": x}`."""
    return {f"{node}.{leaf}": x for node, leaves in tree.items() for leaf, x in leaves.items()}


def unflatten(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`{"node.leaf": x}` to `{node: {leaf: x}}`, splitting at the last dot."""
    tree: dict[str, dict[str, Any]] = {}
    for name, x in flat.items():
        node, dot, leaf = name.rpartition(".")
        if not dot:
            raise ArchWeightsError(f"tensor `{name}` is not named `node.leaf`")
        tree.setdefault(node, {})[leaf] = x
    return tree


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never half.

    A temporary file in the same folder (so `os.replace` is a rename on one file
    system), fsynced, then renamed over the target; on any failure it is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode `open()` would (0666 less the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_weights(path: str | Path, params: Tree, state: Tree) -> None:
    """Write params and running state to a safetensors file, atomically."""
    flat_params = flatten(params)
    flat_state = flatten(state)
    clash = sorted(flat_params.keys() & flat_state.keys())
    assert not clash, f"names both params and state: {clash}"
    tensors = {
        name: np.asarray(jax.device_get(x)) for name, x in {**flat_params, **flat_state}.items()
    }
    metadata = {FORMAT_KEY: FORMAT, STATE_KEY: json.dumps(sorted(flat_state))}
    write_atomic(path, save(tensors, metadata=metadata))


def load_weights(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Read `(params, state)` from a file written by `save_weights`, as NumPy arrays.

    Raises:
        ArchWeightsError: the file is missing or not a safetensors file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ArchWeightsError(f"cannot read weights `{path}`: {error.strerror}") from None
    try:
        tensors = load(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError) as error:
        raise ArchWeightsError(f"`{path}` is not a safetensors file: {error}") from None
    state_names = set(json.loads(metadata.get(STATE_KEY, "[]")))
    params = unflatten({n: x for n, x in tensors.items() if n not in state_names})
    state = unflatten({n: x for n, x in tensors.items() if n in state_names})
    return params, state


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors blob (its JSON header)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    return header.get("__metadata__") or {}


def check_weights(params: Tree, state: Tree, expected_params: Tree, expected_state: Tree) -> None:
    """Check names and shapes against what the network expects (e.g. `eval_shape(init)`).

    Raises:
        ArchWeightsError: listing every missing, unexpected and wrong-shape name.
    """
    missing: list[str] = []
    unexpected: list[str] = []
    wrong: list[str] = []
    for kind, got, want in (
        ("", flatten(params), flatten(expected_params)),
        (" (running state)", flatten(state), flatten(expected_state)),
    ):
        missing += [f"missing `{n}` {_shape(want[n])}{kind}" for n in sorted(want.keys() - got)]
        unexpected += [
            f"unexpected `{n}` {_shape(got[n])}{kind}" for n in sorted(got.keys() - want)
        ]
        wrong += [
            f"`{n}` is {_shape(got[n])}, expected {_shape(want[n])}{kind}"
            for n in sorted(got.keys() & want.keys())
            if tuple(got[n].shape) != tuple(want[n].shape)
        ]
    if missing or unexpected or wrong:
        counts = [
            f"{len(items)} {what}"
            for items, what in (
                (missing, "missing"),
                (unexpected, "unexpected"),
                (wrong, "of the wrong shape"),
            )
            if items
        ]
        raise ArchWeightsError(
            f"the weights do not fit the network: {', '.join(counts)}",
            notes=missing + unexpected + wrong,
            help="were they saved from this network, built with the same arguments?",
        )


def _shape(x: Any) -> str:
    return format_shape(tuple(x.shape)) or "scalar"
