"""Memory and FLOPs of a checked graph for a batch, for training or inference (no JAX).

The figures are estimates from shapes alone, made to be checked against XLA's own
(`bench/memory.py` compares them with `compiled.memory_analysis()`):

- parameters, batch-norm statistics, gradients (trainable parameters only) and optimizer
  state (Adam: two moments; SGD with momentum: one) are exact counts times the bytes of
  float32;
- activations kept for the backward pass: each op saves what its gradient needs (a conv,
  dense or batch norm its input, an activation its output, max pooling its input and
  output; adds, concats, flatten and average pooling nothing), each tensor counted once;
- the inference peak is the largest set of activations alive at once in topological order
  (a tensor lives from its producer to its last consumer);
- the training peak adds to the kept activations the weights, gradients, optimizer state,
  the input batch, and the largest gradient of one activation in flight.

FLOPs count a multiply-accumulate as two operations, conv and dense only (as the MACs
column); the backward pass costs one such product for the weight gradient of each
trainable layer and one for the input gradient of each layer that has a trainable layer
upstream: about twice the forward pass, less for a frozen backbone or the first layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.graph.passes.training import training_graph
from archdsl.graph.report import LayerRow

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZER_SLOTS = {"adam": 2, "sgd": 1}
"""Optimizer state per trainable parameter (SGD with momentum keeps one slot)."""

# What each op's gradient reads. JAX differentiates `relu` from its input, but XLA keeps
# the output (or a mask of it) where the input is a fused conv or batch-norm result; the
# output is what the next layer keeps anyway. Checked against XLA in bench/memory.py.
_SAVES_OUTPUT = frozenset({"relu", "relu6", "tanh", "sigmoid", "softmax", "log_softmax", "elu"})
_SAVES_INPUT = frozenset(
    {"conv", "dense", "project", "batchnorm", "gelu", "silu", "leaky_relu", "globalmaxpool"}
)
_SAVES_BOTH = frozenset({"maxpool", "lrn"})


@dataclass(frozen=True)
class NodeCost:
    """One node's share: its output, what it keeps for backward, its FLOPs (per example)."""

    name: str
    output_elements: int
    saved: tuple[str, ...]
    """The tensors (node names) its backward pass reads."""
    forward_flops: int
    backward_flops: int
    params: int
    trainable: int
    state: int
    aux: bool


@dataclass(frozen=True)
class Cost:
    """The figures for one batch size, mode and optimizer, in bytes and FLOPs."""

    batch: int
    train: bool
    optimizer: str
    dtype: str
    params_bytes: int
    state_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    input_bytes: int
    activation_bytes: int
    """Training: activations kept for the backward pass. Inference: the live peak."""
    transient_bytes: int
    forward_flops: int
    backward_flops: int

    @property
    def peak_bytes(self) -> int:
        """Everything that must be resident at the worst moment (an estimate)."""
        return (
            self.params_bytes
            + self.state_bytes
            + self.gradient_bytes
            + self.optimizer_bytes
            + self.input_bytes
            + self.activation_bytes
            + self.transient_bytes
        )

    @property
    def flops(self) -> int:
        """The FLOPs of one step on the batch: forward, plus backward when training."""
        return self.forward_flops + (self.backward_flops if self.train else 0)

    def to_json(self) -> dict[str, object]:
        """The `--json` form."""
        return {
            "batch": self.batch,
            "mode": "train" if self.train else "inference",
            "optimizer": self.optimizer if self.train else None,
            "dtype": self.dtype,
            "bytes": {
                "parameters": self.params_bytes,
                "batchnorm_statistics": self.state_bytes,
                "gradients": self.gradient_bytes,
                "optimizer_state": self.optimizer_bytes,
                "input": self.input_bytes,
                "activations": self.activation_bytes,
                "transient": self.transient_bytes,
                "peak": self.peak_bytes,
            },
            "flops": {
                "forward": self.forward_flops,
                "backward": self.backward_flops if self.train else 0,
                "total": self.flops,
            },
        }


def node_costs(graph: Graph) -> list[NodeCost]:
    """Per-node, per-example figures, in topological order."""
    out = []
    upstream_trainable: dict[str, bool] = {}
    for name, node in graph.items():
        in_shapes = [graph.node(i).shape for i in node.inputs]
        assert node.shape is not None and all(s is not None for s in in_shapes)
        params = sum(math.prod(p) for p in node.op.param_shapes(*in_shapes).values())
        state = sum(math.prod(p) for p in node.op.state_shapes(*in_shapes).values())
        trainable = 0 if node.frozen else params
        macs = node.op.macs(node.shape, *in_shapes)
        needs_dx = any(upstream_trainable[i] for i in node.inputs)
        upstream_trainable[name] = needs_dx or trainable > 0
        backward = 2 * macs * (int(trainable > 0) + int(needs_dx))
        out.append(
            NodeCost(
                name=name,
                output_elements=math.prod(node.shape),
                saved=_saved(name, node.op, node.inputs),
                forward_flops=2 * macs,
                backward_flops=backward,
                params=params,
                trainable=trainable,
                state=state,
                aux=node.aux is not None,
            )
        )
    return out


def _saved(name: str, op: ops.Op, inputs: tuple[str, ...]) -> tuple[str, ...]:
    if op.name in _SAVES_BOTH:
        return (*inputs, name)
    if op.name in _SAVES_INPUT:
        return inputs
    if op.name in _SAVES_OUTPUT:
        return (name,)
    if isinstance(op, ops.Dropout):
        return (name,)  # its mask: one value per element
    if isinstance(op, ops.Project) and op.batchnorm:
        return (*inputs, f"{name}#conv")
    return ()


def estimate(
    graph: Graph,
    batch: int,
    *,
    train: bool = False,
    optimizer: str = "adam",
    dtype: str = "float32",
) -> Cost:
    """Memory and FLOPs of one step on a batch of `batch` examples.

    Training uses the graph that is trained (aux heads on, softmax heads at their logits);
    inference the graph without aux heads.
    """
    nbytes = BYTES[dtype]
    param_bytes = 4  # parameters stay float32 under a bfloat16 compute dtype
    trained = training_graph(graph) if train else graph
    costs = node_costs(trained)
    if not train:
        costs = [c for c in costs if not c.aux]
    by_name = {c.name: c for c in costs}
    inputs = set(trained.inputs)
    params = sum(c.params for c in costs)
    trainable = sum(c.trainable for c in costs)
    state = sum(c.state for c in costs)
    input_elements = sum(by_name[i].output_elements for i in inputs if i in by_name)
    if train:
        kept = _unique(t for c in costs for t in c.saved)
        activations = sum(_elements(t, by_name) for t in kept if t not in inputs)
        transient = 2 * max((c.output_elements for c in costs), default=0)
    else:
        activations = _live_peak(trained, {c.name for c in costs}, by_name, inputs)
        transient = 0
    slots = OPTIMIZER_SLOTS[optimizer] if train else 0
    return Cost(
        batch=batch,
        train=train,
        optimizer=optimizer,
        dtype=dtype,
        params_bytes=params * param_bytes,
        state_bytes=state * 4,
        gradient_bytes=trainable * param_bytes if train else 0,
        optimizer_bytes=trainable * param_bytes * slots,
        input_bytes=input_elements * batch * nbytes,
        activation_bytes=activations * batch * nbytes,
        transient_bytes=transient * batch * nbytes,
        forward_flops=sum(c.forward_flops for c in costs) * batch,
        backward_flops=sum(c.backward_flops for c in costs) * batch if train else 0,
    )


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _elements(tensor: str, by_name: dict[str, NodeCost]) -> int:
    base, _, _ = tensor.partition("#")
    return by_name[base].output_elements


def _live_peak(graph: Graph, kept: set[str], by_name: dict[str, NodeCost], inputs: set[str]) -> int:
    """The most activation elements alive at once while running the nodes in order."""
    order = [n for n in graph.order() if n in kept]
    last_use = {n: i for i, n in enumerate(order)}
    for i, name in enumerate(order):
        for source in graph.node(name).inputs:
            last_use[source] = max(last_use.get(source, i), i)
    for output in graph.outputs:
        last_use[output] = len(order)
    live = peak = 0
    ending: dict[int, list[str]] = {}
    for i, name in enumerate(order):
        if name not in inputs:
            live += by_name[name].output_elements
        peak = max(peak, live)
        ending.setdefault(last_use[name], []).append(name)
        for done in ending.pop(i, []):
            if done not in inputs:
                live -= by_name[done].output_elements
    return peak


def fold_rows(rows: Sequence[LayerRow], depth: int) -> list[LayerRow]:
    """The report's rows folded to blocks at `depth`, as torchinfo's `depth`.

    Consecutive rows whose names share their first `depth` dotted parts become one row:
    named by those parts, shaped as the group's last row, with summed figures. At depth 1
    `layer2.0.conv1` belongs to `layer2`; at depth 2 to `layer2.0`.
    """
    groups: list[list[LayerRow]] = []
    keys: list[str] = []
    for row in rows:
        key = ".".join(row.name.split(".")[:depth])
        if keys and keys[-1] == key:
            groups[-1].append(row)
        else:
            keys.append(key)
            groups.append([row])
    out = []
    for key, group in zip(keys, groups, strict=True):
        if len(group) == 1 and group[0].name == key:
            out.append(group[0])
            continue
        out.append(
            LayerRow(
                name=key,
                op="block",
                attrs=f"{len(group)} layers",
                shape=group[-1].shape,
                params=sum(r.params for r in group),
                trainable=sum(r.trainable for r in group),
                state=sum(r.state for r in group),
                macs=sum(r.macs for r in group),
                inserted=all(r.inserted for r in group),
                frozen=all(r.frozen for r in group),
                aux=group[0].aux if all(r.aux == group[0].aux for r in group) else None,
            )
        )
    return out


def format_bytes(n: int) -> str:
    """`97.5 MiB`."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def format_flops(n: int) -> str:
    """`7.77 TFLOPs`, `261.7 GFLOPs`."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}FLOPs"
    return f"{n} FLOPs"
