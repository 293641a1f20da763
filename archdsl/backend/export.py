"""Serialise a compiled model's inference function (StableHLO via `jax.export`) and run it.

A `.jaxexport` file is exactly the bytes of `jax.export.Exported.serialize()`, so
any JAX program can `jax.export.deserialize` it without archdsl. The function takes
`(params, state, x)`: params and state are `{node: {leaf: array}}` dicts, whose tree
structure and shapes the file carries (`in_tree`, `in_avals`); `x` is `(b, *input)`
with a symbolic batch dimension `b`. Weights travel separately, in safetensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export

from archdsl.backend.model import CompiledModel
from archdsl.backend.weights import check_weights, load_weights, settle_state
from archdsl.errors import ArchError
from archdsl.graph.shapes import format_shape
from archdsl.io import ArchIOError, atomic_open, check_input_file, check_output, os_error

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
    check_output(path, "exported model")
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    (batch,) = export.symbolic_shape("b")
    x = jax.ShapeDtypeStruct((batch, *model.input_shape), np.float32)

    def infer(params: Any, state: Any, x: jax.Array) -> jax.Array:
        return model.apply(params, state, x)[0]

    exported = export.export(jax.jit(infer), platforms=tuple(platforms))(params, state, x)
    with atomic_open(path, what="exported model") as f:
        f.write(exported.serialize())
    return exported


def load_exported(path: str | Path) -> export.Exported:
    """Read a `.jaxexport` file.

    Raises:
        ArchExportError: the file is missing or not a serialised `jax.export` function.
    """
    path = Path(path)
    try:
        check_input_file(path, "model")
        data = path.read_bytes()
    except ArchIOError as error:
        raise ArchExportError(error.message, help=error.help) from None
    except OSError as error:
        raise ArchExportError(str(os_error(path, error, "read")).removeprefix("error: ")) from None
    try:
        return export.deserialize(bytearray(data))
    except Exception as error:  # flatbuffers raises assorted errors on foreign bytes
        raise ArchExportError(
            f"`{path}` is not an exported model ({type(error).__name__})",
            help="make one with `archdsl compile spec.arch -o model.jaxexport`",
        ) from None


def _load_input(path: str | Path) -> np.ndarray:
    from archdsl.io.arrays import load_npy

    try:
        x = load_npy(path, "input")
    except ArchIOError as error:
        raise ArchExportError(error.message, notes=error.notes, help=error.help) from None
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ArchExportError(f"input `{path}` holds {x.dtype} values, expected real numbers")
    if x.ndim >= 1 and x.shape[0] == 0:
        raise ArchExportError(f"input `{path}` is an empty batch (shape {x.shape})")
    return x.astype(np.float32)


def run_exported(
    path: str | Path,
    weights_path: str | Path,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    allow_missing: bool = False,
) -> np.ndarray:
    """Run an exported model on a `.npy` batch; write the result to `output_path` if given.

    Batch-norm statistics the weights lack are an error unless `allow_missing`
    (`weights.settle_state`).

    Raises:
        ArchExportError: unreadable files, or an input of the wrong shape.
        ArchWeightsError: weights that do not fit the exported model.
    """
    if output_path is not None:
        check_output(output_path)
    exported = load_exported(path)
    try:
        (want_params, want_state, want_x), _ = jax.tree.unflatten(
            exported.in_tree, exported.in_avals
        )
        if not (isinstance(want_params, dict) and isinstance(want_state, dict)):
            raise TypeError("parameters are not dicts")
    except (ValueError, TypeError):
        raise ArchExportError(
            f"`{path}` was not exported by archdsl: its function does not take "
            "`(params, state, x)`",
            help="make one with `archdsl compile spec.arch -o model.jaxexport`",
        ) from None
    params, state = load_weights(weights_path)
    needed = {n: {k: tuple(x.shape) for k, x in leaves.items()} for n, leaves in want_state.items()}
    params, state = settle_state(
        params, state, needed, str(weights_path), allow_missing=allow_missing
    )
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
    try:
        out = np.asarray(exported.call(params, state, x))
    except jax.errors.JaxRuntimeError as error:
        raise ArchExportError(
            f"`{path}` is damaged: XLA could not load its function "
            f"({str(error).splitlines()[0][:200]})",
            help="export it again with `archdsl compile spec.arch -o model.jaxexport`",
        ) from None
    except ValueError as error:
        if "platform" not in str(error):
            raise ArchExportError(f"running `{path}` failed: {str(error)[:300]}") from None
        raise ArchExportError(
            f"`{path}` was exported for {', '.join(exported.platforms)}, "
            f"not for this machine's `{jax.default_backend()}`",
            help="export it again here with `archdsl compile spec.arch -o model.jaxexport`",
        ) from None
    if output_path is not None:
        with atomic_open(output_path) as f:
            np.save(f, out, allow_pickle=False)
    return out
