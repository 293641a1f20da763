"""Weights on disk: params and running state in one safetensors file, written atomically.

Tensor names are flat and dotted, node name then leaf, as PyTorch's `state_dict`
(`layer2.0.conv1.kernel`, `layer2.0.bn1.mean`). Running statistics share that
namespace, as PyTorch's buffers do; the file metadata key `archdsl.state` lists
which names are state (a JSON list), so reading back needs no naming convention.
Node names may contain dots; leaf names never do, so a name splits at its last dot.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import jax
import ml_dtypes
import numpy as np
from safetensors.numpy import save

from archdsl.errors import ArchError
from archdsl.graph.ir import Graph
from archdsl.graph.shapes import Shape, format_shape
from archdsl.io import write_bytes

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
    """Kept for callers of the old name: `archdsl.io.write_bytes` is the one writer."""
    write_bytes(path, data, "weights" if str(path).endswith(".safetensors") else "output")


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
    write_bytes(path, save(tensors, metadata=metadata), "weights")


def load_weights(
    path: str | Path, network: Graph | None = None, *, allow_missing: bool = False
) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """Read `(params, state)` from a file written by `save_weights`, as NumPy arrays.

    Given the `network` the weights are for, every batch norm of it that the file
    has parameters for must have its running statistics in the file too (a file
    without them would normalise with mean 0 and variance 1: silently wrong at
    inference), unless `allow_missing`, which gives them their initial values. A
    tensor the network names as state is read as state even where the file's
    metadata does not list it (a file not written by archdsl).

    Raises:
        ArchWeightsError: the file is missing, not a safetensors file, or its metadata
            is malformed; with `network`, batch-norm statistics are missing.
    """
    tensors, metadata = read_safetensors(path)
    state_names = state_names_of(metadata, path)
    params = unflatten({n: x for n, x in tensors.items() if n not in state_names})
    state = unflatten({n: x for n, x in tensors.items() if n in state_names})
    if network is not None:
        params, state = settle_state(
            params, state, state_of(network), str(path), allow_missing=allow_missing
        )
    return params, state


_INITIAL_STATE: Final = {"mean": 0.0, "var": 1.0}
"""What a batch norm's running statistics start at (`--allow-missing` fills these in)."""
MISSING_STATE_HELP: Final = (
    "without them these layers normalise with mean 0 and variance 1, which is silently "
    "wrong at inference: save weights with `archdsl.save_weights(path, params, state)` "
    "(or `archdsl train`), bring PyTorch files in with `archdsl import-weights`, or pass "
    "`--allow-missing` (`allow_missing=True`) to start them at mean 0, variance 1"
)


def state_of(network: Graph) -> dict[str, dict[str, Shape]]:
    """The running state each layer of `network` needs: `{node: {leaf: shape}}`."""
    needed: dict[str, dict[str, Shape]] = {}
    for name, node in network.items():
        shapes = node.op.state_shapes(*(network.node(i).shape for i in node.inputs))
        if shapes:
            needed[name] = dict(shapes)
    return needed


def settle_state(
    params: Tree,
    state: Tree,
    needed: Mapping[str, Mapping[str, Shape]],
    source: str,
    *,
    allow_missing: bool = False,
) -> tuple[dict, dict]:
    """Check that every layer the file has parameters for has its running state.

    A tensor under `params` whose name the network gives to state (a file without
    archdsl's `archdsl.state` metadata) moves to state. Layers the file has no
    parameters for are left to the caller (a new head, or `check_weights`).

    Args:
        params: the file's parameters, `{node: {leaf: array}}`.
        state: the file's running state.
        needed: the network's running state, `{node: {leaf: shape}}` (`state_of`).
        source: the file, for the message.
        allow_missing: fill missing statistics with their initial values instead.

    Returns:
        `(params, state)`, new dicts.

    Raises:
        ArchWeightsError: naming each layer and the statistics it lacks.
    """
    params = {node: dict(leaves) for node, leaves in params.items()}
    state = {node: dict(leaves) for node, leaves in state.items()}
    lacking: dict[str, list[str]] = {}
    for node, leaves in needed.items():
        if node not in params:
            continue
        for leaf, shape in leaves.items():
            if leaf in state.get(node, {}):
                continue
            if leaf in params[node]:
                state.setdefault(node, {})[leaf] = params[node].pop(leaf)
                continue
            if allow_missing:
                fill = np.full(shape, _INITIAL_STATE.get(leaf, 0.0), np.float32)
                state.setdefault(node, {})[leaf] = fill
                continue
            lacking.setdefault(node, []).append(f"{node}.{leaf}")
    if lacking:
        layers = len(lacking)
        raise ArchWeightsError(
            f"`{source}` has no running statistics for {layers} batch norm"
            f"{'s' if layers != 1 else ''} of the network",
            notes=[
                f"`{node}` lacks {', '.join(f'`{n}`' for n in names)}"
                for node, names in list(lacking.items())[:8]
            ]
            + ([f"and {layers - 8} more layers"] if layers > 8 else []),
            help=MISSING_STATE_HELP,
        )
    return params, state


def state_names_of(metadata: Mapping[str, str], path: str | Path) -> set[str]:
    """The names `archdsl.state` lists as running state.

    Raises:
        ArchWeightsError: the metadata is not a JSON list of names.
    """
    try:
        names = json.loads(metadata.get(STATE_KEY, "[]"))
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ArchWeightsError(
            f"`{path}`: the metadata `{STATE_KEY}` is not a JSON list of tensor names",
            notes=[f"it is {metadata.get(STATE_KEY, '')[:80]!r}"],
        )
    return set(names)


DTYPES: Final[dict[str, Any]] = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
"""safetensors dtype codes read, bfloat16 and float8 included (through `ml_dtypes`)."""
CAST_HELP: Final = (
    "archdsl never casts weights: convert the file first, e.g. "
    "`{k: v.astype(np.float32) for k, v in tensors.items()}` with safetensors.numpy"
)
_HEADER_LIMIT: Final = 100 * 1024 * 1024
"""The safetensors format's own limit on the JSON header."""


def read_safetensors(
    path: str | Path, what: str = "weights", error: type[ArchError] = ArchWeightsError
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor of a safetensors file (read-only arrays) and its `__metadata__`.

    The file must be a regular file that fits in memory; every header entry is checked
    (dtype, shape, offsets inside the file, size agreeing with the shape) before an
    array is made.

    Raises:
        error: naming the file and what is wrong with it.
    """
    from archdsl.io import ArchIOError, check_input_file, os_error

    path = Path(path)
    try:
        check_input_file(path, what)
        try:
            data = path.read_bytes()
        except OSError as failure:
            raise os_error(path, failure, "read") from None
    except ArchIOError as failure:
        raise error(failure.message, notes=failure.notes, help=failure.help) from None

    def bad(reason: str) -> ArchError:
        return error(
            f"`{path}` is not a safetensors file: {reason}",
            help="weights files are written by `archdsl train` or `archdsl.save_weights`",
        )

    if len(data) < 8:
        raise bad(f"{len(data)} bytes, too short for a header")
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, _HEADER_LIMIT):
        raise bad(f"the header claims {size:,} bytes, the file has {len(data) - 8:,} after it")
    try:
        header = json.loads(data[8 : 8 + size])
    except (ValueError, UnicodeDecodeError) as failure:
        raise bad(f"the header is not JSON ({str(failure)[:80]})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise bad("`__metadata__` is not an object of strings")
    body = memoryview(data)[8 + size :]
    tensors: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        tensors[name] = _tensor(name, entry, body, bad)
    used = sum(x.nbytes for x in tensors.values())
    if used != len(body):  # the format has no holes and no trailing data
        raise bad(f"the tensors cover {used:,} bytes of the {len(body):,} after the header")
    return tensors, metadata


def _tensor(name: str, entry: Any, body: memoryview, bad: Callable[[str], ArchError]) -> np.ndarray:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise bad(f"tensor `{name}` lacks `dtype`, `shape` or `data_offsets`")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code not in DTYPES:
        raise bad(f"tensor `{name}` has dtype {code!r}; known: {', '.join(DTYPES)}")
    if not (
        isinstance(shape, list)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise bad(f"tensor `{name}` has shape {shape!r}; expected a list of sizes")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        and 0 <= offsets[0] <= offsets[1] <= len(body)
    ):
        raise bad(f"tensor `{name}` has data offsets {offsets!r} outside the file")
    dtype = np.dtype(DTYPES[code])
    count = math.prod(shape)
    if count * dtype.itemsize != offsets[1] - offsets[0]:
        raise bad(
            f"tensor `{name}` is {code} {tuple(shape)} ({count * dtype.itemsize:,} bytes) "
            f"but spans {offsets[1] - offsets[0]:,} bytes"
        )
    return np.frombuffer(body, dtype, count, offsets[0]).reshape(shape)


def check_weights(params: Tree, state: Tree, expected_params: Tree, expected_state: Tree) -> None:
    """Check names, shapes and dtypes against what the network expects (`eval_shape(init)`).

    Tensors are never cast silently: a float16 or bfloat16 tensor for a float32
    parameter is an error, as a wrong shape is (`CAST_HELP` says how to convert).

    Raises:
        ArchWeightsError: listing every missing, unexpected, wrong-shape and wrong-dtype name.
    """
    missing: list[str] = []
    unexpected: list[str] = []
    wrong: list[str] = []
    cast: list[str] = []
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
        cast += [
            f"`{n}` is {_dtype(got[n])}, expected {_dtype(want[n])}{kind}"
            for n in sorted(got.keys() & want.keys())
            if tuple(got[n].shape) == tuple(want[n].shape) and _dtype(got[n]) != _dtype(want[n])
        ]
    if missing or unexpected or wrong or cast:
        counts = [
            f"{len(items)} {what}"
            for items, what in (
                (missing, "missing"),
                (unexpected, "unexpected"),
                (wrong, "of the wrong shape"),
                (cast, "of another dtype"),
            )
            if items
        ]
        raise ArchWeightsError(
            f"the weights do not fit the network: {', '.join(counts)}",
            notes=missing + unexpected + wrong + cast,
            help=CAST_HELP
            if cast and not (missing or unexpected or wrong)
            else "were they saved from this network, built with the same arguments?",
        )


def check_dtypes(got: Tree, expected: Tree) -> None:
    """Raise if a tensor present on both sides with the same shape has another dtype.

    Raises:
        ArchWeightsError: listing each such tensor; nothing is cast.
    """
    flat_got, flat_want = flatten(got), flatten(expected)
    cast = [
        f"`{n}` is {_dtype(flat_got[n])}, expected {_dtype(flat_want[n])}"
        for n in sorted(flat_got.keys() & flat_want.keys())
        if tuple(np.shape(flat_got[n])) == tuple(np.shape(flat_want[n]))
        and _dtype(flat_got[n]) != _dtype(flat_want[n])
    ]
    if cast:
        raise ArchWeightsError(
            f"{len(cast)} tensor{'s' if len(cast) != 1 else ''} of the file "
            f"{'have' if len(cast) != 1 else 'has'} another dtype than the network's",
            notes=cast,
            help=CAST_HELP,
        )


def _dtype(x: Any) -> str:
    return str(np.dtype(x.dtype))


def _shape(x: Any) -> str:
    return format_shape(tuple(x.shape)) or "scalar"
