"""Per-layer trees <-> packed trees, where each run of identical blocks is stacked.

`compile_graph` loops a run (`graph.repeats.Run`) with `jax.lax.scan`, which wants
each body node's leaves stacked on a leading axis. A *packed* tree keeps every other
node as it is and holds a run under one key (`Run.key`, `"layer3.1..layer3.35"`) as
`{relative name: {leaf: stacked array}}`. Packing is what a training step should
carry (its gradients and optimizer state then come stacked too, so XLA compiles one
update per stacked leaf instead of one per layer); the per-layer form is what users,
weights files and reports see.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from archdsl.graph.repeats import Run

Tree = dict[str, Any]
"""Params, state, gradients or anything keyed by node name at the top."""


def run_key(run: Run) -> str:
    """The packed tree's key for a run: its first and last instance."""
    return f"{run.instances[0]}..{run.instances[-1]}"


def is_packed(tree: Tree, runs: Sequence[Run]) -> bool:
    """Whether `tree` is in packed form (True for any tree when there are no runs)."""
    if not runs:
        return True
    if any(run_key(run) in tree for run in runs):
        return True
    return not any(run.node(0, rel) in tree for run in runs for rel, _ in run.body)


def pack(
    tree: Tree, runs: Sequence[Run], stack: Callable[[Sequence[Any]], Any] = jnp.stack
) -> Tree:
    """Stack each run's per-layer entries under its key; other entries pass through.

    Leaves may be any pytree (optax's `MaskedNode` placeholders included); `stack` makes
    one stacked array of the blocks' arrays (`jnp.stack`, or a host `np.stack`).
    """
    if is_packed(tree, runs):
        return tree
    covered = set().union(*(run.nodes for run in runs))
    out = {name: leaves for name, leaves in tree.items() if name not in covered}
    for run in runs:
        group = {}
        for rel, _ in run.body:
            per = [tree.get(run.node(i, rel)) for i in range(len(run.instances))]
            if per[0] is None:
                continue
            group[rel] = jax.tree.map(lambda *xs: stack(xs), *per)
        if group:
            out[run_key(run)] = group
    return out


def unpack(tree: Tree, runs: Sequence[Run]) -> Tree:
    """The per-layer form of a packed tree, entries in graph order within each run
    (per-layer trees pass unchanged). Slices: on host arrays these are views."""
    keys = {run_key(run): run for run in runs}
    if not keys.keys() & tree.keys():
        return tree
    out: Tree = {}
    for name, value in tree.items():
        run = keys.get(name)
        if run is None:
            out[name] = value
            continue
        for i in range(len(run.instances)):
            take = operator.itemgetter(i)
            for rel, leaves in value.items():
                out[run.node(i, rel)] = jax.tree.map(take, leaves)
    return out
