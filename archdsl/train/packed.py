"""The names-facing boundary of a scanned run: packed trees inside, per-layer ones outside.

A run compiled with scan carries its parameters, running state and optimizer state
*packed* (`backend.packing`: each run of identical blocks stacked under one key such as
`"layer3.1..layer3.35"`), so the jitted step never stacks or splits them. Everything a
person or a file sees is per layer (`layer3.5.conv1`): weights files, checkpoints,
`--init`, reports. This module converts between the two at those boundaries, on the
host, including the optimizer state, whose moments are trees shaped like the
parameters inside optax's own containers. It also says which leaves are stacked: their
axis 0 is the scan axis, which weight decay and `--shard-params` must look past.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import jax
import numpy as np

from archdsl.backend import packing
from archdsl.graph.repeats import Run

__all__ = [
    "is_stacked",
    "layer_shapes",
    "optimizer_to_layers",
    "optimizer_to_packed",
    "run_keys",
    "to_layers",
    "to_packed",
]

Tree = dict[str, Any]


def run_keys(runs: Sequence[Run]) -> frozenset[str]:
    """The top-level keys that stacked runs have in packed trees."""
    return frozenset(packing.run_key(run) for run in runs)


def is_stacked(path: Sequence[Any], stacked: Collection[str]) -> bool:
    """Whether the leaf at `path` (a `jax.tree_util` key path into the parameters or the
    optimizer state) lies under a run's key, so that its axis 0 counts blocks."""
    return any(isinstance(k, jax.tree_util.DictKey) and k.key in stacked for k in path)


def to_layers(tree: Tree, runs: Sequence[Run]) -> Tree:
    """The per-layer form of a packed tree (per-layer trees pass unchanged).

    Slices, not a compiled program: on host arrays these are views, so a checkpoint of
    a big network is not copied twice.
    """
    return packing.unpack(tree, runs)


def to_packed(tree: Tree, runs: Sequence[Run]) -> Tree:
    """The packed form of a per-layer tree, stacked on the host (packed trees pass).

    On the host so that a network bigger than one device is never whole on one: the
    loop places the result where `--shard-params` says.
    """
    return packing.pack(tree, runs, stack=_host_stack)


def _host_stack(xs: Sequence[Any]) -> np.ndarray:
    return np.stack([np.asarray(x) for x in xs])


def _params_like(runs: Sequence[Run]) -> Callable[[Any], bool]:
    """`is_leaf` for the subtrees of an optimizer state shaped like the parameters: the
    dicts that hold a run (by its key, or by its first block's nodes)."""
    names = run_keys(runs) | {run.node(0, rel) for run in runs for rel, _ in run.body}

    def test(x: Any) -> bool:
        return isinstance(x, dict) and not names.isdisjoint(x)

    return test


def _convert(opt_state: Any, runs: Sequence[Run], convert: Callable[[Tree, Any], Tree]) -> Any:
    if not runs:
        return opt_state
    like = _params_like(runs)
    return jax.tree.map(lambda x: convert(x, runs) if like(x) else x, opt_state, is_leaf=like)


def optimizer_to_layers(opt_state: Any, runs: Sequence[Run]) -> Any:
    """The optimizer state with each parameter-shaped subtree (Adam's moments, SGD's
    momentum) per layer: what a checkpoint stores, whichever lowering trained it."""
    return _convert(opt_state, runs, to_layers)


def optimizer_to_packed(opt_state: Any, runs: Sequence[Run]) -> Any:
    """The inverse of `optimizer_to_layers`."""
    return _convert(opt_state, runs, to_packed)


def layer_shapes(tree: Any, runs: Sequence[Run], *, optimizer: bool = False) -> Any:
    """The per-layer `ShapeDtypeStruct`s of a packed tree (or optimizer state), computing
    nothing: what a checkpoint or a weights file is checked against."""
    convert = optimizer_to_layers if optimizer else to_layers
    return jax.eval_shape(lambda t: convert(t, runs), tree)
