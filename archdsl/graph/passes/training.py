"""Point each head that ends in `softmax` at its logits: the graph that training optimises.

A head (main or aux) that ends in `softmax` is trained from the logits before it, so the loss
is `log_softmax` of logits (stable) rather than the log of a probability that may round to 0.
Its argmax, hence the accuracy, is unchanged. Parameter names do not change (softmax has
none), so weights move freely between this graph and the original.
"""

from __future__ import annotations

import dataclasses

from archdsl.graph import ops
from archdsl.graph.ir import Graph


def training_graph(graph: Graph) -> Graph:
    """The graph that is trained: each head ending in `softmax` ends at its logits instead.

    Parameter names do not change (softmax has none), so weights move freely between
    this graph and the original.
    """
    out = graph.copy()
    dropped = []

    def logits(name: str) -> str:
        node = out.node(name)
        if isinstance(node.op, ops.Softmax):
            dropped.append(name)
            return node.inputs[0]
        return name

    out.outputs = (logits(out.output), *out.outputs[1:])
    out.aux = {
        key: dataclasses.replace(head, output=logits(head.output)) for key, head in out.aux.items()
    }
    ends = {out.output, *(h.output for h in out.aux.values())}
    for name in dropped:
        if name not in ends and not out.users(name):
            out.remove(name)
    return out
