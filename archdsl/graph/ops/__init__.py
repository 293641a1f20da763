"""The op table: one frozen dataclass per layer, one module per family, all in `OPS`.

`base` holds `Op`, `attr`, `register` and the shared shape helpers; each family module
(`input`, `conv`, `pool`, `reshape`, `dense`, `norm`, `activation`, `merge`, `shortcut`)
registers its ops when imported, in this order, so `OPS` lists them as the docs do.
Everything is re-exported here: `from archdsl.graph import ops; ops.Conv(...)`.
"""

from __future__ import annotations

from archdsl.graph.ops.base import (
    OPS,
    AttributeRuleError,
    Op,
    ShapeRuleError,
    attr,
    register,
)

# Import order is registration order, hence the order of `OPS` (and of the docs table).
# isort: off
from archdsl.graph.ops.input import Input
from archdsl.graph.ops.conv import Conv
from archdsl.graph.ops.pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from archdsl.graph.ops.reshape import Flatten
from archdsl.graph.ops.dense import Dense, Dropout
from archdsl.graph.ops.norm import LRN, BatchNorm
from archdsl.graph.ops.activation import (
    Activation,
    Elu,
    Gelu,
    Hardsigmoid,
    Hardswish,
    Identity,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Relu6,
    Sigmoid,
    Silu,
    Softmax,
    Tanh,
)
from archdsl.graph.ops.merge import Add, Concat, Merge, Multiply
from archdsl.graph.ops.shortcut import SHORTCUTS, Project, Residual, ZeroPad
# isort: on

__all__ = [
    "LRN",
    "OPS",
    "SHORTCUTS",
    "Activation",
    "Add",
    "AttributeRuleError",
    "AvgPool",
    "BatchNorm",
    "Concat",
    "Conv",
    "Dense",
    "Dropout",
    "Elu",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "Hardsigmoid",
    "Hardswish",
    "Identity",
    "Input",
    "LeakyRelu",
    "LogSoftmax",
    "MaxPool",
    "Merge",
    "Multiply",
    "Op",
    "Project",
    "Relu",
    "Relu6",
    "Residual",
    "ShapeRuleError",
    "Sigmoid",
    "Silu",
    "Softmax",
    "Tanh",
    "ZeroPad",
    "attr",
    "register",
]
