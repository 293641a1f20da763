"""Per-layer figures of a checked graph: shape, parameters, multiply-accumulates, savings."""

from __future__ import annotations

import math
from dataclasses import dataclass

from archdsl.graph.ir import Graph
from archdsl.graph.ops import Conv
from archdsl.graph.shapes import Shape, format_shape
from archdsl.lang.numbers import format_count as format_count  # still importable from here


@dataclass(frozen=True)
class LayerRow:
    """One node's line of the report."""

    name: str
    op: str
    attrs: str
    shape: Shape
    params: int
    trainable: int
    state: int
    macs: int
    inserted: bool
    frozen: bool
    aux: str | None


@dataclass(frozen=True)
class Saving:
    """A 1x1 bottleneck before a kxk conv, and what it saves against the direct conv."""

    reduce: str
    conv: str
    direct_macs: int
    bottleneck_macs: int

    @property
    def ratio(self) -> float:
        """How many times fewer multiplications the bottleneck needs."""
        return self.direct_macs / self.bottleneck_macs


@dataclass(frozen=True)
class Report:
    """What `archdsl compile` prints: rows, totals and bottleneck savings."""

    network: str
    rows: tuple[LayerRow, ...]
    savings: tuple[Saving, ...]

    @property
    def params(self) -> int:
        """All learned parameters, as torchvision counts them (running stats excluded)."""
        return sum(r.params for r in self.rows)

    @property
    def trainable(self) -> int:
        """Parameters not frozen."""
        return sum(r.trainable for r in self.rows)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per example on the inference path (aux heads excluded)."""
        return sum(r.macs for r in self.rows if r.aux is None)

    @property
    def inference_params(self) -> int:
        """Parameters without the auxiliary heads (absent at inference)."""
        return sum(r.params for r in self.rows if r.aux is None)

    def to_json(self) -> dict[str, object]:
        """The `--json` form."""
        return {
            "network": self.network,
            "layers": [
                {
                    "name": r.name,
                    "op": r.op,
                    "attrs": r.attrs,
                    "shape": list(r.shape),
                    "params": r.params,
                    "trainable": r.trainable,
                    "state": r.state,
                    "macs": r.macs,
                    "inserted": r.inserted,
                    "frozen": r.frozen,
                    "aux": r.aux,
                }
                for r in self.rows
            ],
            "totals": {
                "params": self.params,
                "trainable": self.trainable,
                "macs": self.macs,
                "inference_params": self.inference_params,
            },
            "savings": [
                {
                    "reduce": s.reduce,
                    "conv": s.conv,
                    "direct_macs": s.direct_macs,
                    "bottleneck_macs": s.bottleneck_macs,
                }
                for s in self.savings
            ],
        }


def layer_row(graph: Graph, name: str) -> LayerRow | None:
    """One node's figures; None while it or an input is unshaped (the language server)."""
    node = graph.node(name)
    in_shapes = [graph.node(i).shape for i in node.inputs]
    if node.shape is None or any(shape is None for shape in in_shapes):
        return None
    params = sum(math.prod(s) for s in node.op.param_shapes(*in_shapes).values())
    state = sum(math.prod(s) for s in node.op.state_shapes(*in_shapes).values())
    return LayerRow(
        name=name,
        op=node.op.name,
        attrs=node.op.describe(),
        shape=node.shape,
        params=params,
        trainable=0 if node.frozen else params,
        state=state,
        macs=node.op.macs(node.shape, *in_shapes),
        inserted=node.synthetic,
        frozen=node.frozen,
        aux=node.aux,
    )


def build_report(graph: Graph) -> Report:
    """Figures for every node of a checked graph, in topological order."""
    rows = []
    for name, _ in graph.items():
        row = layer_row(graph, name)
        assert row is not None, name
        rows.append(row)
    return Report(graph.name, tuple(rows), tuple(find_savings(graph)))


def find_savings(graph: Graph) -> list[Saving]:
    """Each 1x1 conv that shrinks channels and feeds a single kxk conv (k > 1).

    The direct cost is the kxk conv applied to the 1x1's input, as the lecture's
    28x28x192 -> 28x28x32 example: 120.4M multiplications, against 12.4M through 16 channels.
    """
    savings = []
    for name, node in graph.items():
        op = node.op
        if not (isinstance(op, Conv) and op.kernel == (1, 1) and op.groups == 1):
            continue
        source = graph.node(node.inputs[0]).shape
        assert source is not None and node.shape is not None
        if op.filters >= source[-1]:
            continue
        follower = _next_conv(graph, name)
        if follower is None:
            continue
        conv_name, conv = follower
        conv_op = conv.op
        assert isinstance(conv_op, Conv) and conv.shape is not None
        direct = conv_op.macs(conv.shape, source)  # the kxk conv on the 1x1's input
        bottleneck = op.macs(node.shape, source) + conv_op.macs(conv.shape, node.shape)
        savings.append(Saving(name, conv_name, direct, bottleneck))
    return savings


def _next_conv(graph: Graph, name: str) -> tuple[str, object] | None:
    """Follow single-user elementwise nodes from `name` to a kxk conv."""
    current = name
    for _ in range(4):
        users = graph.users(current)
        if len(users) != 1:
            return None
        current = users[0]
        node = graph.node(current)
        if isinstance(node.op, Conv):
            return (current, node) if node.op.kernel != (1, 1) else None
        if node.shape != graph.node(name).shape:
            return None
    return None


def format_macs(n: int) -> str:
    """`4.09G`, `120.4M`."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}" if unit == "G" else f"{n / size:.1f}{unit}"
    return str(n)


def shape_text(shape: Shape) -> str:
    """The shape column."""
    return format_shape(shape)
