"""Serialise a compiled model's inference function (StableHLO via `jax.export`) and run it.

A `.jaxexport` file is exactly the bytes of `jax.export.Exported.serialize()`, so
any JAX program can `jax.export.deserialize` it without archdsl. The function takes
`(params, state, x)`: params and state are `{node: {leaf: array}}` dicts, whose tree
structure and shapes the file carries (`in_tree`, `in_avals`); `x` is `(b, *input)`
with a symbolic batch dimension `b`. Weights travel separately, in safetensors.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export

from archdsl.backend.model import CompiledModel
from archdsl.backend.weights import check_weights, load_weights, write_atomic
from archdsl.errors import ArchError
from archdsl.graph.shapes import format_shape

DEFAULT_PLATFORMS: tuple[str, ...] = ("cpu", "cuda")
"""Lowered for both, so a file made on a laptop runs on a GPU machine and back."""


class ArchExportError(ArchError):
    """An exported model, input or output file that cannot be used."""


def export_model(
    model: CompiledModel,
    path: str | Path,
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
) -> export.Exported:
    """Write the inference function `(params, state, x) -> y` to `path`, atomically.

    Nothing is allocated: parameters are traced as shapes (`jax.eval_shape`).
    """
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    (batch,) = export.symbolic_shape("b")
    x = jax.ShapeDtypeStruct((batch, *model.input_shape), np.float32)

    def infer(params: Any, state: Any, x: jax.Array) -> jax.Array:
        return model.apply(params, state, x)[0]

    exported = export.export(jax.jit(infer), platforms=tuple(platforms))(params, state, x)
    write_atomic(path, bytes(exported.serialize()))
    return exported


def load_exported(path: str | Path) -> export.Exported:
    """Read a `.jaxexport` file.

    Raises:
        ArchExportError: the file is missing or not a serialised `jax.export` function.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ArchExportError(f"cannot read model `{path}`: {error.strerror}") from None
    try:
        return export.deserialize(bytearray(data))
    except Exception as error:  # flatbuffers raises assorted errors on foreign bytes
        raise ArchExportError(
            f"`{path}` is not an exported model ({type(error).__name__})",
            help="make one with `archdsl compile spec.arch -o model.jaxexport`",
        ) from None


def _load_input(path: str | Path) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ArchExportError(f"cannot read input `{path}` as a .npy array: {error}") from None
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.number):
        raise ArchExportError(f"input `{path}` holds {x.dtype} values, expected numbers")
    return x.astype(np.float32)


def run_exported(
    path: str | Path,
    weights_path: str | Path,
    input_path: str | Path,
    output_path: str | Path | None = None,
) -> np.ndarray:
    """Run an exported model on a `.npy` batch; write the result to `output_path` if given.

    Raises:
        ArchExportError: unreadable files, or an input of the wrong shape.
        ArchWeightsError: weights that do not fit the exported model.
    """
    exported = load_exported(path)
    (want_params, want_state, want_x), _ = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    params, state = load_weights(weights_path)
    check_weights(params, state, want_params, want_state)
    x = _load_input(input_path)
    example = tuple(int(d) for d in want_x.shape[1:])
    if x.ndim != len(example) + 1 or x.shape[1:] != example:
        raise ArchExportError(
            f"input `{input_path}` has shape {x.shape}; the model takes a batch "
            f"(N, {', '.join(map(str, example))})",
            help=f"each example is {format_shape(example)}, batch axis first"
            + ("; add one with `x[None]`" if x.shape == example else ""),
        )
    # A foreign file may hold float64 or float16: give the function what it was traced with.
    params, state = jax.tree.map(
        lambda a, want: np.asarray(a, want.dtype), (params, state), (want_params, want_state)
    )
    try:
        out = np.asarray(exported.call(params, state, x))
    except ValueError as error:
        if "platform" not in str(error):
            raise
        raise ArchExportError(
            f"`{path}` was exported for {', '.join(exported.platforms)}, "
            f"not for this machine's `{jax.default_backend()}`",
            help="export it again here with `archdsl compile spec.arch -o model.jaxexport`",
        ) from None
    if output_path is not None:
        write_atomic(output_path, _npy_bytes(out))
    return out


def _npy_bytes(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x, allow_pickle=False)
    return buffer.getvalue()
