"""Transfer learning: start a network from another's weights, matched by tensor name.

A network built with `use Base(...) upto NAME` keeps the base's layer names, so its
tensors (`layer2.0.conv1.kernel`) are found under the same names in the base's weights.
Each tensor of the new network is loaded (same name and shape), newly initialised
(no such name, or another shape) and every tensor of the file that the network has
no place for is ignored. `MatchReport` says which is which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from archdsl.backend.weights import (
    ArchWeightsError,
    check_dtypes,
    flatten,
    settle_state,
    state_of,
    unflatten,
)
from archdsl.graph.ir import Graph
from archdsl.graph.shapes import Shape, format_shape

Tree = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Mismatch:
    """A tensor present on both sides with different shapes: it is newly initialised."""

    name: str
    expected: Shape
    found: Shape

    def __str__(self) -> str:
        return (
            f"{self.name}: {format_shape(self.found) or 'scalar'} in the file, "
            f"the network needs {format_shape(self.expected) or 'scalar'}"
        )


@dataclass(frozen=True)
class MatchReport:
    """How the tensors of a weights file were matched to a network's, by flat name.

    Names are `node.leaf`, running statistics included (`layer1.0.bn1.mean`), sorted.
    """

    loaded: tuple[str, ...]
    """Copied from the file."""
    initialised: tuple[str, ...]
    """The network's tensors the file does not have: kept as initialised."""
    ignored: tuple[str, ...]
    """The file's tensors the network has no place for (a cut-off head)."""
    mismatched: tuple[Mismatch, ...]
    """Same name, other shape: kept as initialised (a resized classifier)."""
    frozen_initialised: tuple[str, ...] = ()
    """Frozen tensors that were not loaded: they will stay at their random values."""

    @property
    def ok(self) -> bool:
        """Something was loaded and no frozen tensor is left random."""
        return bool(self.loaded) and not self.frozen_initialised

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"{len(self.loaded)} loaded, {len(self.initialised)} newly initialised, "
            f"{len(self.ignored)} ignored, {len(self.mismatched)} shape mismatch"
            f"{'es' if len(self.mismatched) != 1 else ''}"
        )

    def lines(self, limit: int = 8) -> list[str]:
        """The report for people: counts, then the names of each kind (first `limit`)."""
        out = [self.summary()]
        for title, names in (
            ("newly initialised", self.initialised),
            ("ignored (not in the network)", self.ignored),
            ("shape mismatch (newly initialised)", tuple(map(str, self.mismatched))),
            ("frozen but not loaded (they stay random)", self.frozen_initialised),
        ):
            if names:
                shown = ", ".join(names[:limit])
                more = f" and {len(names) - limit} more" if len(names) > limit else ""
                out.append(f"  {title}: {shown}{more}")
        if self.loaded:
            out.append(f"  loaded: {_ranges(self.loaded, limit)}")
        return out


def match_weights(
    params: Tree,
    state: Tree,
    base_params: Tree,
    base_state: Tree,
    *,
    frozen: set[str] | frozenset[str] = frozenset(),
) -> tuple[Tree, Tree, MatchReport]:
    """Copy the base's tensors into a network's freshly initialised ones by name.

    Args:
        params: the network's initial parameters, `{node: {leaf: array}}`.
        state: its initial running statistics.
        base_params: the file's parameters (NumPy or JAX arrays).
        base_state: the file's running statistics.
        frozen: names of the network's frozen nodes, to flag any left unloaded.

    Returns:
        New `(params, state)` (inputs are not modified) and the `MatchReport`.

    Raises:
        ArchWeightsError: a same-shape tensor of another dtype (never cast in silence).
    """
    check_dtypes(base_params, params)  # never cast in silence
    check_dtypes(base_state, state)
    loaded: list[str] = []
    initialised: list[str] = []
    mismatched: list[Mismatch] = []
    frozen_initialised: list[str] = []
    trees = []
    found_names: set[str] = set()
    for mine, theirs in ((params, base_params), (state, base_state)):
        flat = flatten(mine)
        other = flatten(theirs)
        found_names |= other.keys()
        out = {}
        for name, x in flat.items():
            source = other.get(name)
            if source is not None and tuple(np.shape(source)) == tuple(x.shape):
                out[name] = jnp.asarray(np.asarray(source), dtype=x.dtype)
                loaded.append(name)
                continue
            if source is not None:
                mismatched.append(Mismatch(name, tuple(x.shape), tuple(np.shape(source))))
            else:
                initialised.append(name)
            if name.rpartition(".")[0] in frozen:
                frozen_initialised.append(name)
            out[name] = x
        trees.append(unflatten(out))
    mine_names = flatten(params).keys() | flatten(state).keys()
    ignored = sorted(found_names - mine_names)
    report = MatchReport(
        tuple(sorted(loaded)),
        tuple(sorted(initialised)),
        tuple(ignored),
        tuple(sorted(mismatched, key=lambda m: m.name)),
        tuple(sorted(frozen_initialised)),
    )
    new_params = {node: trees[0].get(node, {}) for node in params}
    new_state = {node: trees[1].get(node, {}) for node in state}
    return new_params, new_state, report


def settle_init(
    graph: Graph, init: tuple[Tree, Tree], source: str, *, allow_missing: bool = False
) -> tuple[Tree, Tree]:
    """`--init`'s weights, checked: each batch norm they give parameters for has its statistics.

    A layer of `graph` the file has parameters for is loaded from it; if it is a batch
    norm, its running statistics must come too (`weights.settle_state`), unless
    `allow_missing`. Layers the file does not have (a new head) start afresh.

    Raises:
        ArchWeightsError: naming the layers and the statistics they lack.
    """
    return settle_state(*init, state_of(graph), source, allow_missing=allow_missing)


def check_match(report: MatchReport, source: str, network: str) -> None:
    """Refuse a file of which nothing matches: almost certainly the wrong file.

    Raises:
        ArchWeightsError: no tensor was loaded.
    """
    if report.loaded:
        return
    notes = []
    if report.ignored:
        notes.append(
            f"the file has {', '.join(report.ignored[:4])}"
            + (", ..." if len(report.ignored) > 4 else "")
        )
    if report.initialised:
        notes.append(
            f"the network has {', '.join(report.initialised[:4])}"
            + (", ..." if len(report.initialised) > 4 else "")
        )
    raise ArchWeightsError(
        f"no tensor of `{source}` matches a layer of `{network}`"
        + (
            f" ({len(report.mismatched)} names match with other shapes)"
            if report.mismatched
            else ""
        ),
        notes=notes,
        help="build the network with `use Base(...) upto LAYER` so that it keeps the "
        "base's layer names",
    )


def _ranges(names: tuple[str, ...], limit: int) -> str:
    """`stem.conv1.kernel ... layer4.1.bn2.var` for long lists."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{names[0]}, {names[1]}, ..., {names[-1]}"
