"""Residual connections: the residual sum and the shortcuts a pass inserts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from archdsl.graph.ops.base import Op, attr, rank3, register, windowed
from archdsl.graph.shapes import Shape

SHORTCUTS = ("auto", "projection", "zeropad", "identity")


@register
@dataclass(frozen=True)
class Residual(Op):
    """`out = body + shortcut`: inputs are (body output, shortcut), output has the body's shape.

    Operand shapes may differ until `insert_projections` has run; `verify` then
    requires them equal.
    """

    name = "residual"
    arity = 2
    user_visible = False
    shortcut: str = attr("enum:auto|projection|zeropad|identity", "auto")

    def infer(self, body: Shape, shortcut: Shape) -> Shape:
        return body

    def describe(self) -> str:
        return f"shortcut {self.shortcut}"


@register
@dataclass(frozen=True)
class Project(Op):
    """The Ws projection of a residual shortcut: 1x1 conv with stride, then batch norm.

    `(H, W, C) -> (H / stride, W / stride, filters)`.
    """

    name = "project"
    user_visible = False
    filters: int = attr("int")
    stride: tuple[int, int] = attr("pair", (1, 1))
    batchnorm: bool = attr("bool", True)

    def infer(self, x: Shape) -> Shape:
        if len(x) == 1:
            return (self.filters,)
        h, w = windowed("project", x, (1, 1), self.stride, "valid")
        return (h, w, self.filters)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        kernel = (x[-1], self.filters) if len(x) == 1 else (1, 1, x[-1], self.filters)
        if self.batchnorm:
            return {"kernel": kernel, "scale": (self.filters,), "bias": (self.filters,)}
        return {"kernel": kernel, "bias": (self.filters,)}

    def state_shapes(self, x: Shape) -> dict[str, Shape]:
        return {"mean": (self.filters,), "var": (self.filters,)} if self.batchnorm else {}

    def macs(self, output: Shape, x: Shape) -> int:
        return math.prod(output) * x[-1]

    def describe(self) -> str:
        return f"{self.filters} 1x1 /{self.stride[0]}" + (" +bn" if self.batchnorm else "")


@register
@dataclass(frozen=True)
class ZeroPad(Op):
    """The parameter-free shortcut: subsample by `stride`, pad channels with zeros."""

    name = "zeropad"
    user_visible = False
    filters: int = attr("int")
    stride: tuple[int, int] = attr("pair", (1, 1))

    def infer(self, x: Shape) -> Shape:
        if len(x) == 1:
            return (self.filters,)
        h, w, _ = rank3("zeropad", x)
        return (-(-h // self.stride[0]), -(-w // self.stride[1]), self.filters)

    def describe(self) -> str:
        return f"{self.filters} /{self.stride[0]}"
