"""Stochastic depth (drop-path): drop a whole residual branch per example in training."""

from __future__ import annotations

from dataclasses import dataclass

from archdsl.graph.ops.base import AttributeRuleError, Op, attr, register
from archdsl.graph.shapes import Shape


@register
@dataclass(frozen=True)
class DropPath(Op):
    """Zero the whole input of an example with probability `rate` in training: shape unchanged.

    Huang et al., 2016 ("Deep Networks with Stochastic Depth"), as torchvision's
    `StochasticDepth(p, "row")`: survivors are scaled by `1 / (1 - rate)`, and at
    inference it is the identity. Put it last in a residual body, so a dropped branch
    leaves the shortcut alone (EfficientNet).
    """

    name = "droppath"
    positional = ("rate",)
    rate: float = attr("float", doc="the probability an example's branch is dropped, in [0, 1)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate < 1.0:
            raise AttributeRuleError(f"`droppath` rate must be in [0, 1), got {self.rate}")

    def infer(self, x: Shape) -> Shape:
        return x

    def describe(self) -> str:
        return f"{self.rate:g}"
