"""Passes over the graph: the pass type, the default pipeline and its runner."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

from archdsl.graph.ir import Graph, verify
from archdsl.graph.passes.checks import check_assertions, check_limits
from archdsl.graph.passes.infer_shapes import infer_shapes
from archdsl.graph.passes.residual import insert_projections
from archdsl.graph.passes.training import training_graph

Pass: TypeAlias = Callable[[Graph], Graph]

DEFAULT_PIPELINE: tuple[Pass, ...] = (
    infer_shapes,
    insert_projections,
    infer_shapes,
    check_assertions,
    check_limits,
)

PASSES: dict[str, Pass] = {
    "infer_shapes": infer_shapes,
    "insert_projections": insert_projections,
    "check_assertions": check_assertions,
    "check_limits": check_limits,
}


def run_pipeline(
    graph: Graph,
    passes: Sequence[Pass] = DEFAULT_PIPELINE,
    *,
    verify_each: bool = True,
    after: Callable[[Pass, Graph], None] | None = None,
) -> Graph:
    """Run passes in order; verify the IR after each (a failure is a compiler bug).

    A pass that returns its argument changed nothing: nothing new to verify. And
    `infer_shapes` on the graph it last returned is skipped, since it would set the
    same shapes again (it is idempotent): the default pipeline infers a second time
    only when `insert_projections` inserted something.
    """
    projected = False
    inferred: Graph | None = None
    for step in passes:
        before = graph
        if not (step is infer_shapes and graph is inferred):
            graph = step(graph)
        if step is infer_shapes:
            inferred = graph
        projected = projected or step is insert_projections
        if verify_each and graph is not before:
            verify(graph, shapes=graph_has_shapes(graph), residuals=projected)
        if after is not None:
            after(step, graph)
    return graph


def graph_has_shapes(graph: Graph) -> bool:
    """Whether every node has a shape (true after the first `infer_shapes`)."""
    return all(node.shape is not None for _, node in graph.items())


__all__ = [
    "DEFAULT_PIPELINE",
    "PASSES",
    "Pass",
    "check_assertions",
    "check_limits",
    "infer_shapes",
    "insert_projections",
    "run_pipeline",
    "training_graph",
]
