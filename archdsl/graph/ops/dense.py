"""Fully connected layers and dropout: the classifier head's ops."""

from __future__ import annotations

import math
from dataclasses import dataclass

from archdsl.graph.ops.base import AttributeRuleError, Op, attr, positive, register
from archdsl.graph.shapes import Shape


@register
@dataclass(frozen=True)
class Dense(Op):
    """Affine map over the last axis: `(..., d) -> (..., units)`."""

    name = "dense"
    signature = "`(..., d) -> (..., units)`"
    positional = ("units",)
    units: int = attr("int", doc="output features")
    bias: bool = attr("bool", True)

    def __post_init__(self) -> None:
        positive("dense", units=self.units)

    def infer(self, x: Shape) -> Shape:
        return (*x[:-1], self.units)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        kernel = (x[-1], self.units)
        return {"kernel": kernel, "bias": (self.units,)} if self.bias else {"kernel": kernel}

    def macs(self, output: Shape, x: Shape) -> int:
        return math.prod(output) * x[-1]

    def describe(self) -> str:
        return str(self.units) + ("" if self.bias else " no bias")


@register
@dataclass(frozen=True)
class Dropout(Op):
    """Zero a fraction `rate` of activations in training: shape unchanged."""

    name = "dropout"
    positional = ("rate",)
    rate: float = attr("float", 0.5, "the fraction dropped, in [0, 1)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate < 1.0:
            raise AttributeRuleError(f"`dropout` rate must be in [0, 1), got {self.rate}")

    def infer(self, x: Shape) -> Shape:
        return x

    def describe(self) -> str:
        return str(self.rate)
