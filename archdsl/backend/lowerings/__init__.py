"""One lowering per op class, one module per op family (mirroring `graph.ops`).

Importing this package fills `layer.LOWERINGS`; `lower_node` looks a node's op class up
there. A lowering is `(op, input shapes, output shape) -> Layer`.
"""

from __future__ import annotations

from archdsl.backend.layer import LOWERINGS, Layer
from archdsl.backend.lowerings import (  # noqa: F401  (each module registers its lowerings)
    activation,
    conv,
    dense,
    input,
    merge,
    norm,
    pool,
    reshape,
    shortcut,
)
from archdsl.graph.ir import Graph


def lower_node(graph: Graph, name: str) -> Layer:
    """The `Layer` for one node, from its op and the shapes the front end set."""
    node = graph.node(name)
    assert node.shape is not None, f"{name}: no shape; run `infer_shapes` first"
    in_shapes = tuple(graph.node(i).shape for i in node.inputs)
    assert all(s is not None for s in in_shapes), f"{name}: an input has no shape"
    lowering = LOWERINGS.get(type(node.op))
    assert lowering is not None, f"no JAX lowering for `{node.op.name}`"
    return lowering(node.op, in_shapes, node.shape)  # type: ignore[arg-type]


__all__ = ["LOWERINGS", "lower_node"]
